import { countSetting, durationMs, durationSetting, z } from '@mxguard/core';
import type { PolicyLimits } from './server.js';

/**
 * The config's `policy` key: the limits of `mxguard policy`, durations as main.cf writes them
 * (`300s`, `5m`; a number is seconds), each checked for its unit and range when the config is read.
 * The Postfix side of the same connection is `smtpd_policy_service_*` and the `timeout=` of
 * `check_policy_service`; these must stay longer than those (see docs/adapters/postfix.md).
 */
export const policySettingsShape = {
  policy: z
    .strictObject({
      budget: durationSetting(100, 600_000)
        .optional()
        .describe(
          'Time budget of a request, below the timeout= Postfix is told (--budget overrides). Default: 8s',
        ),
      idleTimeout: durationSetting(1000, 86_400_000)
        .optional()
        .describe(
          'A connection without a whole request is closed (longer than Postfix smtpd_policy_service_max_idle, 300s). Default: 330s',
        ),
      connectionLifetime: durationSetting(1000, 86_400_000)
        .optional()
        .describe(
          'Longest a connection stays open (longer than Postfix smtpd_policy_service_max_ttl, 1000s). Default: 1100s',
        ),
      maxConnections: countSetting(1, 100_000)
        .optional()
        .describe(
          'Connections at once; a new one closes the longest idle (one a smtpd process). Default: 256',
        ),
      maxTransactions: countSetting(1, 10_000_000)
        .optional()
        .describe('Transactions whose recipients are remembered. Default: 10000'),
      transactionTtl: durationSetting(1000, 86_400_000)
        .optional()
        .describe('How long a transaction is remembered after its last request. Default: 1h'),
      maxTransactionBytes: countSetting(1024, 2 ** 40)
        .optional()
        .describe('Bytes all remembered transactions may hold. Default: 33554432 (32 MiB)'),
      maxRecipientBytes: countSetting(1024, 2 ** 30)
        .optional()
        .describe(
          'Bytes of recipients one transaction may hold, the oldest dropped. Default: 262144 (256 KiB)',
        ),
    })
    .optional()
    .describe('Limits of mxguard policy'),
};

/** The `policy` key of a config, as written. */
export type PolicySettings = NonNullable<z.input<(typeof policySettingsShape)['policy']>>;

/** The policy server limits a config's `policy` key sets (`requestTimeout` from its `budget`). */
export function policyLimitsFromConfig(settings: PolicySettings | undefined): PolicyLimits {
  if (!settings) return {};
  const ms = (v: number | string | undefined) => (v === undefined ? undefined : durationMs(v));
  const out: Record<string, number | undefined> = {
    requestTimeout: ms(settings.budget),
    idleTimeout: ms(settings.idleTimeout),
    connectionLifetime: ms(settings.connectionLifetime),
    maxConnections: settings.maxConnections,
    maxInstances: settings.maxTransactions,
    instanceTtl: ms(settings.transactionTtl),
    maxInstanceBytes: settings.maxTransactionBytes,
    maxRecipientBytes: settings.maxRecipientBytes,
  };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined)) as PolicyLimits;
}
