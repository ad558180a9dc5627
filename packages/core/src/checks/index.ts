/**
 * The pure envelope checks of @mxguard/core: HELO, addresses, relay control, access tables.
 * `coreFactories` exposes each to config files under its stable name.
 */
import { checkOptions, withOptions, z } from '../schema.js';
import type { CheckFactory, Site } from '../site.js';
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

const accessEntries = z
  .union([
    z.string().describe('Postfix access-file text: "key value" a line'),
    z.record(z.string(), z.string()).describe('{key: value}'),
    z.array(z.tuple([z.string(), z.string()])).describe('[key, value] pairs'),
  ])
  .describe('Table entries (values as Postfix access(5): OK, REJECT text, 450 4.7.1 text, DUNNO, ...)');
const accessTableFile = z
  .string()
  .describe('A table file, type:/absolute/path (regexp:, pcre:, cidr:, hash: source text), followed on disk');
const ACCESS_KEYS = ['client', 'helo', 'sender', 'recipient', 'rdns'] as const;

function accessFactory(key: AccessKey): CheckFactory<TableEnv | undefined> {
  return withOptions(
    z.strictObject({ entries: accessEntries.optional(), table: accessTableFile.optional() }),
    (options: Record<string, unknown>, _site: Site, env: TableEnv | undefined) => {
      const { name, entries, table, ...rest } = options as {
        name?: string;
        entries?: unknown;
        table?: string;
      };
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
    },
  );
}

const common = checkOptions({});
const addressSyntax = checkOptions({
  maxLocalPart: z.int().min(1).optional().describe('Longest local part accepted, in octets'),
});
const utf8 = z.boolean().optional().describe('Accept U-label (UTF-8) names, as Postfix with smtputf8_enable');

/**
}

const common = checkOptions({});
const addressSyntax = checkOptions({
  maxLocalPart: z.int().min(1).optional().describe('Longest local part accepted, in octets'),
});
const utf8 = z.boolean().optional().describe('Accept U-label (UTF-8) names, as Postfix with smtputf8_enable');

/**
 * Factories of the pure checks, keyed by stable check name, for config files, each with the
 * options it reads (see each check's options type); a bad option throws TypeError naming the check.
 * `access` takes `{key, entries | table}`; `client-access`, `helo-access`, `sender-access`,
 * `recipient-access` and `rdns-access` take `{entries | table}`. A `table` file needs the
 * {@link TableEnv} the factory is bound to (the CLI binds `node:fs`); without one it is refused.
 */
export const coreFactories: Record<string, CheckFactory<TableEnv | undefined>> = {
  relay: withOptions(common, (o, site) => relayCheck(o, site)),
  trusted: withOptions(z.strictObject({}), (o, site) => trustedCheck(o as Record<string, never>, site)),
  'helo-required': withOptions(common, (o) => heloRequired(o)),
  'helo-syntax': withOptions(checkOptions({ utf8 }), (o) => heloSyntax(o)),
  'helo-fqdn': withOptions(
    checkOptions({
      bareIp: z
        .enum(['pass', 'fail'])
        .optional()
        .describe('A bare IP address as HELO: pass (to helo-bare-ip) or fail'),
      utf8,
    }),
    (o) => heloFqdn(o),
  ),
  'helo-claims-us': withOptions(common, (o, site) => heloClaimsUs(o, site)),
  'helo-literal-mismatch': withOptions(common, (o, site) => heloLiteralMismatch(o, site)),
  'helo-bare-ip': withOptions(common, (o) => heloBareIp(o)),
  'sender-fqdn': withOptions(common, (o) => senderFqdn(o)),
  'recipient-fqdn': withOptions(common, (o) => recipientFqdn(o)),
  'sender-syntax': withOptions(addressSyntax, (o) => senderSyntax(o)),
  'recipient-syntax': withOptions(addressSyntax, (o) => recipientSyntax(o)),
  'sender-forged-ours': withOptions(common, (o, site) => senderForgedOurs(o, site)),
  access: withOptions(
    z.strictObject({
      key: z.enum(ACCESS_KEYS),
      entries: accessEntries.optional(),
      table: accessTableFile.optional(),
    }),
    (o: Record<string, unknown>, _s: Site, env: TableEnv | undefined) => accessTable(o as never, env),
  ),
  'client-access': accessFactory('client'),
  'helo-access': accessFactory('helo'),
  'sender-access': accessFactory('sender'),
  'recipient-access': accessFactory('recipient'),
  'rdns-access': accessFactory('rdns'),
};
