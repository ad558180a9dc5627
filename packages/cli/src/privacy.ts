import { createHmac, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { LRUCache } from 'lru-cache';

/**
 * How much of the addresses a log line or the status page keeps.
 * - `full`: everything, as the client sent it.
 * - `truncate`: the client's network (IPv4 /24, IPv6 /48) and the domain of each mail address; the
 *   host part of the IP and the local part (`alice` of alice@example.com) are dropped.
 * - `hash`: the domain of each mail address; the client address and each local part become a keyed
 *   hash (`h:` and 12 hex digits), the same for the same value for as long as the process runs, so
 *   a search for one sender still finds all its lines, but nobody without the key can test a guess.
 */
export type Privacy = 'full' | 'truncate' | 'hash';

export const PRIVACY_LEVELS: readonly Privacy[] = ['full', 'truncate', 'hash'];

/** Fields of a decision record that hold a client address or mail addresses. */
const ADDRESS_FIELDS = ['client', 'from', 'to'] as const;
const EMAIL = /([^\s<>@"(),;:]+)@([A-Za-z0-9.-]+)/g;

/** The network of an IP address: IPv4 /24, IPv6 /48. */
export function truncateIp(ip: string): string {
  if (isIP(ip) === 4) return `${ip.split('.').slice(0, 3).join('.')}.0/24`;
  if (isIP(ip) === 6) {
    const [head = '', tail = ''] = ip.split('::');
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const groups = ip.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
    return `${groups
      .slice(0, 3)
      .map((g) => g.replace(/^0+(?=.)/, ''))
      .join(':')}::/48`;
  }
  return ip;
}

/**
 * Rewrites the addresses of records (log lines, decisions on the status page) to what a privacy
 * level keeps. The key of `hash` is random per process unless one is given.
 */
export class Redactor {
  readonly #key: Buffer;
  constructor(
    readonly level: Privacy,
    key?: Buffer,
  ) {
    this.#key = key ?? randomBytes(32);
  }

  // The same addresses come back in every log line and status row of a session: the hashes of
  // values up to 128 characters are kept, at most 4,096 of them (under 1.5 MiB at their longest).
  readonly #hashes = new LRUCache<string, string>({ max: 4096 });

  hash(value: string): string {
    const known = this.#hashes.get(value);
    if (known !== undefined) return known;
    const h = `h:${createHmac('sha256', this.#key).update(value.toLowerCase()).digest('hex').slice(0, 12)}`;
    if (value.length <= 128) this.#hashes.set(value, h);
    return h;
  }

  ip(ip: string): string {
    if (this.level === 'full') return ip;
    return this.level === 'truncate' ? truncateIp(ip) : this.hash(ip);
  }

  /** A mail address: `truncate` keeps `*@domain`, `hash` keeps `h:...@domain`. The null sender stays. */
  address(addr: string): string {
    if (this.level === 'full' || addr === '') return addr;
    const at = addr.lastIndexOf('@');
    if (at < 0) return this.level === 'truncate' ? '*' : this.hash(addr);
    const local = addr.slice(0, at);
    return `${this.level === 'truncate' ? '*' : this.hash(local)}${addr.slice(at)}`;
  }

  /** Free text (a reason, a reply): every mail address and every occurrence of `client`. */
  text(s: string, client?: string): string {
    if (this.level === 'full') return s;
    let out = s.replace(EMAIL, (m) => this.address(m));
    if (client) out = out.split(client).join(this.ip(client));
    return out;
  }

  /**
   * A record with `client`, `from`, `to` and free text (`reason`, `text`, `trace[].reason`)
   * rewritten; other fields as they were. The input is not changed.
   */
  record<T extends Record<string, unknown>>(rec: T): T {
    if (this.level === 'full') return rec;
    const client = typeof rec.client === 'string' ? rec.client : undefined;
    const out: Record<string, unknown> = { ...rec };
    for (const f of ADDRESS_FIELDS) {
      const v = out[f];
      if (typeof v !== 'string') continue;
      out[f] = f === 'client' ? this.ip(v) : this.address(v);
    }
    for (const f of ['reason', 'text', 'msg']) {
      const v = out[f];
      if (typeof v === 'string') out[f] = this.text(v, client);
    }
    if (Array.isArray(out.recipients)) {
      out.recipients = out.recipients.map((r) => (typeof r === 'string' ? this.address(r) : r));
    }
    if (Array.isArray(out.trace)) {
      out.trace = out.trace.map((s: unknown) => {
        if (s === null || typeof s !== 'object') return s;
        const step = s as Record<string, unknown>;
        return typeof step.reason === 'string'
          ? Object.assign({}, step, { reason: this.text(step.reason, client) })
          : step;
      });
    }
    return out as T;
  }
}
