import type { Clock, Reply } from '@mxguard/core';
import { compileNetworks, inNetworks, ipNetwork, reply as makeReply, type NetworkList } from '@mxguard/core';
import { LRUCache } from 'lru-cache';

/**
 * Connection limits, after Postfix's anvil(8) and smtpd: how many connections one client may hold
 * at once and open per minute, and how many all clients together may hold. A client is one IPv4
 * address, or one IPv6 /64 (an attacker on IPv6 has a /64 to rotate through).
 */
export interface ConnectionLimitOptions {
  /**
   * Most simultaneous connections from one client (Postfix `smtpd_client_connection_count_limit`,
   * 50 there with its default process limit of 100). 0: no limit. @default 20
   */
  readonly perClient?: number;
  /**
   * Most new connections from one client in a minute (Postfix `smtpd_client_connection_rate_limit`
   * over `anvil_rate_time_unit = 60s`). 0: no limit. @default 60
   */
  readonly ratePerMinute?: number;
  /** Most simultaneous connections in all. @default 100 */
  readonly total?: number;
  /**
   * Clients exempt from the per-client limits (Postfix `smtpd_client_event_limit_exceptions`,
   * `$mynetworks` by default): our own networks, backup MX, forwarders. CIDR or addresses.
   */
  readonly exempt?: readonly string[] | NetworkList;
  /**
   * Most clients remembered for the rate limit (about 340 bytes each, measured: a key is at most an
   * IPv6 /64, so this bounds the bytes too: 34 MB at the default); the least recently seen is
   * forgotten first. @default 100000
   */
  readonly maxTracked?: number;
}

/** Which limit refused a connection. */
export type LimitHit = 'total' | 'per-client' | 'rate';

interface ClientCount {
  open: number;
  /** Start of the current one-minute window (anvil counts in fixed windows). */
  windowStart: number;
  inWindow: number;
}

/** Counts connections per client; `open` says whether a new one may go on, `close` gives it back. */
export class ConnectionLimits {
  private readonly perClient: number;
  private readonly rate: number;
  private readonly total: number;
  private readonly exempt: NetworkList;
  private readonly clients: LRUCache<string, ClientCount>;
  private readonly counted = new Map<string, string>();
  private openTotal = 0;

  constructor(
    options: ConnectionLimitOptions = {},
    private readonly clock: Clock,
  ) {
    const int = (v: number | undefined, d: number, name: string) => {
      const n = v ?? d;
      if (!Number.isInteger(n) || n < 0)
        throw new TypeError(`connection limits: ${name} must be a whole number >= 0`);
      return n;
    };
    this.perClient = int(options.perClient, 20, 'perClient');
    this.rate = int(options.ratePerMinute, 60, 'ratePerMinute');
    this.total = int(options.total, 100, 'total');
    const exempt = options.exempt ?? [];
    this.exempt = Array.isArray(exempt)
      ? compileNetworks(exempt as readonly string[], 'exempt')
      : (exempt as NetworkList);
    this.clients = new LRUCache<string, ClientCount>({
      max: int(options.maxTracked, 100_000, 'maxTracked') || 1,
    });
  }

  /** Clients remembered (at most `maxTracked`). */
  get tracked(): number {
    return this.clients.size;
  }

  /** Connections open now, in all. */
  get open(): number {
    return this.openTotal;
  }

  /**
   * A new connection `id` from `address`: undefined when it may go on (then `close(id)` must
   * follow), or the limit it broke.
   */
  admit(id: string, address: string): LimitHit | undefined {
    if (this.total > 0 && this.openTotal >= this.total) return 'total';
    const key = ipNetwork(address, 32, 64) ?? address;
    const exempt = inNetworks(address, this.exempt);
    const now = this.clock.now();
    let c = this.clients.get(key);
    if (!c) {
      c = { open: 0, windowStart: now, inWindow: 0 };
      this.clients.set(key, c);
    }
    if (now - c.windowStart >= 60_000) {
      c.windowStart = now;
      c.inWindow = 0;
    }
    if (!exempt) {
      if (this.perClient > 0 && c.open >= this.perClient) return 'per-client';
      if (this.rate > 0 && c.inWindow >= this.rate) {
        c.inWindow++; // refused attempts count too, as anvil counts them
        return 'rate';
      }
    }
    c.open++;
    c.inWindow++;
    this.openTotal++;
    this.counted.set(id, key);
    return undefined;
  }

  /** The connection `id` ended (a no-op for one that was refused or already closed). */
  close(id: string): void {
    const key = this.counted.get(id);
    if (key === undefined) return;
    this.counted.delete(id);
    this.openTotal--;
    const c = this.clients.get(key);
    if (c && c.open > 0) c.open--;
  }
}

/** Postfix's reply when a client is over a connection limit (smtpd: `421 4.7.0 host Error: too many connections from addr`). */
export function limitReply(hit: LimitHit, hostname: string, address: string): Reply {
  if (hit === 'total')
    return makeReply(421, '4.7.0', `${hostname} Error: too many connections, try again later`);
  return makeReply(421, '4.7.0', `${hostname} Error: too many connections from ${address}`);
}
