import { gatewayLimitsFromConfig } from '@mxguard/smtp';
import { describe, expect, it } from 'vitest';

describe('gatewayLimitsFromConfig', () => {
  it('maps each gateway key to its option, durations in milliseconds', () => {
    expect(
      gatewayLimitsFromConfig({
        budget: '1500ms',
        recipientLimit: 500,
        junkCommandLimit: 50,
        timeout: '5m',
        progressTimeout: 120,
        sessionLifetime: '1h',
        minDataRate: 0,
        maxConnections: 200,
        clientConnectionLimit: 10,
        clientConnectionRateLimit: 30,
        maxMessagesPerConnection: 100,
      }),
    ).toEqual({
      budgetMs: 1500,
      options: {
        recipientLimit: 500,
        junkCommandLimit: 50,
        socketTimeoutMs: 300_000,
        progressTimeoutMs: 120_000,
        sessionLifetimeMs: 3_600_000,
        minDataRate: 0,
        maxClients: 200,
        maxMessagesPerConnection: 100,
        connectionLimits: { perClient: 10, ratePerMinute: 30 },
      },
    });
  });

  it('sets nothing for keys not given', () => {
    expect(gatewayLimitsFromConfig(undefined)).toEqual({ options: {} });
    expect(gatewayLimitsFromConfig({ sessionLifetime: '10m' })).toEqual({
      options: { sessionLifetimeMs: 600_000 },
    });
  });
});
