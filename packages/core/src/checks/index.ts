/**
 * The pure envelope checks of @mxguard/core: HELO, addresses, relay control, access tables.
 * `coreFactories` exposes each to config files under its stable name.
 */
import type { CheckFactory } from '../site.js';
import type { TableEnv } from '../tables/file.js';
import { type AccessKey, accessTable } from './access.js';
import { recipientFqdn, recipientSyntax, senderForgedOurs, senderFqdn, senderSyntax } from './address.js';
import { heloBareIp, heloClaimsUs, heloFqdn, heloLiteralMismatch, heloRequired, heloSyntax } from './helo.js';
import { relayCheck, trustedCheck } from './relay.js';

export type { AccessEntries, AccessKey, AccessTableOptions } from './access.js';
export { accessTable } from './access.js';
export type { AddressCheckOptions, AddressLimits, AddressSyntaxOptions, ParsedAddress } from './address.js';
export {
  DEFAULT_MAX_LOCAL_PART_OCTETS,
  hasFqdnDomain,
  isBarePostmaster,
  MAX_ADDRESS_OCTETS,
  MAX_DOMAIN_OCTETS,
  MAX_LOCAL_PART_OCTETS,
  parseAddress,
  recipientFqdn,
  recipientSyntax,
  senderForgedOurs,
  senderFqdn,
  senderSyntax,
} from './address.js';
export type { HeloCheckOptions, HeloFqdnOptions, HeloSyntaxOptions } from './helo.js';
export { heloBareIp, heloClaimsUs, heloFqdn, heloLiteralMismatch, heloRequired, heloSyntax } from './helo.js';
export type { HeloLiteral, HostnameOptions, NetworkList, NetworkRange, ParsedIp } from './names.js';
export {
  compileNetworks,
  inNetworks,
  ipNetwork,
  isValidHostname,
  normaliseIp,
  parseClientIp,
  parseHeloLiteral,
  parseIp,
  parseNetwork,
  v4Mask,
} from './names.js';
export type { ClientTrust, RelayOptions, TrustedOptions } from './relay.js';
export { clientTrust, relayCheck, trustedCheck } from './relay.js';

function accessFactory(key: AccessKey): CheckFactory<TableEnv | undefined> {
  return (options, _site, env) => {
    const { name, entries, table, ...rest } = options as { name?: string; entries?: unknown; table?: string };
    const extra = Object.keys(rest);
    if (extra.length > 0) throw new TypeError(`${key}-access: unknown option "${extra[0]}"`);
    return accessTable(
      {
        key,
        ...(entries !== undefined ? { entries: entries as never } : {}),
        ...(table !== undefined ? { table } : {}),
        ...(name !== undefined ? { name } : {}),
      },
      env,
    );
  };
}

/**
 * Factories of the pure checks, keyed by stable check name, for config files. Options are plain
 * JSON (see each check's options type); a bad option throws TypeError naming the check.
 * `access` takes `{name?, key, entries | table}`; `client-access`, `helo-access`, `sender-access`,
 * `recipient-access` and `rdns-access` take `{name?, entries | table}`. A `table` file needs the
 * {@link TableEnv} the factory is bound to (the CLI binds `node:fs`); without one it is refused.
 */
export const coreFactories: Record<string, CheckFactory<TableEnv | undefined>> = {
  relay: (o, site) => relayCheck(o, site),
  trusted: (o, site) => trustedCheck(o as Record<string, never>, site),
  'helo-required': (o) => heloRequired(o),
  'helo-syntax': (o) => heloSyntax(o),
  'helo-fqdn': (o) => heloFqdn(o),
  'helo-claims-us': (o, site) => heloClaimsUs(o, site),
  'helo-literal-mismatch': (o, site) => heloLiteralMismatch(o, site),
  'helo-bare-ip': (o) => heloBareIp(o),
  'sender-fqdn': (o) => senderFqdn(o),
  'recipient-fqdn': (o) => recipientFqdn(o),
  'sender-syntax': (o) => senderSyntax(o),
  'recipient-syntax': (o) => recipientSyntax(o),
  'sender-forged-ours': (o, site) => senderForgedOurs(o, site),
  access: (o, _s, env) => accessTable(o as never, env),
  'client-access': accessFactory('client'),
  'helo-access': accessFactory('helo'),
  'sender-access': accessFactory('sender'),
  'recipient-access': accessFactory('recipient'),
  'rdns-access': accessFactory('rdns'),
};
