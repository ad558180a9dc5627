import { policyLimitsFromConfig } from '@mxguard/postfix';
import { describe, expect, it } from 'vitest';

describe('policyLimitsFromConfig', () => {
  it('maps each policy key to its limit, durations in milliseconds', () => {
    expect(
      policyLimitsFromConfig({
        budget: '7s',
        idleTimeout: '330s',
        connectionLifetime: 1100,
        maxConnections: 512,
        maxTransactions: 5000,
        transactionTtl: '1h',
        maxTransactionBytes: 16_777_216,
        maxRecipientBytes: 131_072,
      }),
    ).toEqual({
      requestTimeout: 7000,
      idleTimeout: 330_000,
      connectionLifetime: 1_100_000,
      maxConnections: 512,
      maxInstances: 5000,
      instanceTtl: 3_600_000,
      maxInstanceBytes: 16_777_216,
      maxRecipientBytes: 131_072,
    });
    expect(policyLimitsFromConfig(undefined)).toEqual({});
    expect(policyLimitsFromConfig({ idleTimeout: '1m' })).toEqual({ idleTimeout: 60_000 });
  });
});
