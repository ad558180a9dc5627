import { countSetting, durationMs, durationSetting, z } from '@mxguard/core';
import type { GatewayOptions } from './gateway.js';

/**
 * The config's `gateway` key: the limits of `mxguard serve`, named after Postfix's smtpd
 * parameters where Postfix has one (postconf(5)), durations as main.cf writes them (`300s`, `5m`;
 * a number is seconds). Each is checked for its unit and range when the config is read.
 */
export const gatewaySettingsShape = {
  gateway: z
    .strictObject({
      budget: durationSetting(100, 600_000)
        .optional()
        .describe('Time budget of an SMTP command’s answer (--budget overrides). Default: 10s'),
      recipientLimit: countSetting(1, 100_000)
        .optional()
        .describe('Recipients a message (Postfix smtpd_recipient_limit), then 452 4.5.3. Default: 1000'),
      junkCommandLimit: countSetting(1, 100_000)
        .optional()
        .describe('NOOP, RSET, VRFY, ... before 421 (Postfix smtpd_junk_command_limit). Default: 100'),
      timeout: durationSetting(1000, 3_600_000)
        .optional()
        .describe('Idle time before 421 (Postfix smtpd_timeout). Default: 300s'),
      progressTimeout: durationSetting(1000, 3_600_000)
        .optional()
        .describe('Longest time without progress (a MAIL, RCPT or message accepted). Default: 300s'),
      sessionLifetime: durationSetting(60_000, 86_400_000)
        .optional()
        .describe('Longest a connection may last, whatever it does. Default: 30m'),
      minDataRate: countSetting(0, 1_000_000_000)
        .optional()
        .describe(
          'Bytes a second DATA must arrive at after the progress timeout (Postfix smtpd_min_data_rate); 0: off. Default: 500',
        ),
      maxConnections: countSetting(1, 100_000)
        .optional()
        .describe('Connections at once, then 421 (Postfix default_process_limit of smtpd). Default: 100'),
      clientConnectionLimit: countSetting(0, 100_000)
        .optional()
        .describe(
          'Connections at once from one client (Postfix smtpd_client_connection_count_limit); 0: none. Default: 20',
        ),
      clientConnectionRateLimit: countSetting(0, 1_000_000)
        .optional()
        .describe(
          'New connections a minute from one client (Postfix smtpd_client_connection_rate_limit); 0: none. Default: 60',
        ),
      maxMessagesPerConnection: countSetting(0, 1_000_000)
        .optional()
        .describe(
          'Messages a connection, then 421 (the client goes on in a new one); 0: none. Default: 1000',
        ),
    })
    .optional()
    .describe('Limits of mxguard serve, as Postfix smtpd parameters'),
};

/** The `gateway` key of a config, as written. */
export type GatewaySettings = NonNullable<z.input<(typeof gatewaySettingsShape)['gateway']>>;

/** What a config's `gateway` key sets: gateway options, and the budget (ms) when it names one. */
export function gatewayLimitsFromConfig(settings: GatewaySettings | undefined): {
  /** The `startGateway` options the settings give (limits, timeouts). */
  readonly options: Partial<GatewayOptions>;
  /** The decision budget in ms, when the settings name one. */
  readonly budgetMs?: number;
} {
  if (!settings) return { options: {} };
  const ms = (v: number | string | undefined) => (v === undefined ? undefined : durationMs(v));
  const defined = <T extends object>(o: T): Partial<T> =>
    Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
  const budgetMs = ms(settings.budget);
  const connection = defined({
    perClient: settings.clientConnectionLimit,
    ratePerMinute: settings.clientConnectionRateLimit,
  });
  return {
    options: {
      ...defined({
        recipientLimit: settings.recipientLimit,
        junkCommandLimit: settings.junkCommandLimit,
        socketTimeoutMs: ms(settings.timeout),
        progressTimeoutMs: ms(settings.progressTimeout),
        sessionLifetimeMs: ms(settings.sessionLifetime),
        minDataRate: settings.minDataRate,
        maxClients: settings.maxConnections,
        maxMessagesPerConnection: settings.maxMessagesPerConnection,
      }),
      ...(Object.keys(connection).length > 0 ? { connectionLimits: connection } : {}),
    } as Partial<GatewayOptions>,
    ...(budgetMs !== undefined ? { budgetMs } : {}),
  };
}
