/**
 * The README policy as a Postfix policy server (SMTPD_POLICY_README). Postfix asks it at RCPT
 * time through `check_policy_service inet:127.0.0.1:10023` in `smtpd_recipient_restrictions`,
 * after `reject_unauth_destination`. `pnpm example postfix` starts it on a free loopback port,
 * sends it the requests Postfix would send, and prints the answers.
 */
import type { Resolver } from '@mxguard/dns';
import { type PolicyServer, startPolicyServer } from '@mxguard/postfix';
import { myPolicy } from './policy.js';

export function startPolicy(resolver: Resolver): Promise<PolicyServer> {
  return startPolicyServer({
    listen: { host: '127.0.0.1', port: 0 }, // Postfix's main.cf names the real port
    chain: myPolicy(resolver),
    log: { debug() {}, info() {}, warn: console.warn, error: console.error },
    acceptAs: 'DUNNO', // let Postfix's later restrictions decide what the chain accepts
  });
}

/** One request as Postfix writes it: `name=value` lines and an empty line. */
export function policyRequest(attrs: Record<string, string>): string {
  const all = { request: 'smtpd_access_policy', protocol_state: 'RCPT', protocol_name: 'ESMTP', ...attrs };
  return `${Object.entries(all)
    .map(([k, v]) => `${k}=${v}`)
    .join('\n')}\n\n`;
}
