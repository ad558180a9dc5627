/**
 * A Resolver for users' unit tests: answers from a table, failures on demand, and a log of every
 * call, as mailauth's test/helpers/dns-zone.js. No network, no timers.
 */
import { canonicalName, ptrName } from './names.js';
import type { DnsResult, MxRecord, RecordType, Resolver } from './types.js';
import { failed, found } from './types.js';

/** The records of one name in a fake zone. */
export interface FakeRecords {
  /** IPv4 addresses, such as `'192.0.2.25'` (a DNS list's answer: `'127.0.0.2'`). */
  readonly A?: readonly string[];
  /** IPv6 addresses, such as `'2001:db8::25'`. */
  readonly AAAA?: readonly string[];
  /** `{ priority, exchange }`; `exchange: ''` (or `'.'`) is a null MX. */
  readonly MX?: readonly MxRecord[];
  /** Host names, for a key that is an IP address or its arpa name. */
  readonly PTR?: readonly string[];
  /** TXT strings, one a record (a DNS list's reason, an SPF record). */
  readonly TXT?: readonly string[];
}

/**
 * A table of names to records. PTR records may be keyed by the IP address itself
 * (`'192.0.2.1': { PTR: ['mail.example.com'] }`) or by the in-addr.arpa / ip6.arpa name.
 */
export type FakeZone = Readonly<Record<string, FakeRecords>>;

/** One call the fake received. */
export interface FakeCall {
  /** The record type asked. */
  readonly type: RecordType;
  /** The queried name (for PTR: the arpa name). */
  readonly name: string;
}

/**
 * A Resolver answering from a table. A name absent from the table is NXDOMAIN; a name present
 * without records of the asked type is NODATA; `fail()` makes a (name, type) fail temporarily
 * (or not found). `hold()` makes answers wait for a promise the test controls.
 *
 * ```ts
 * const dns = new FakeResolver({ 'example.com': { MX: [{ priority: 10, exchange: 'mx.example.com' }] } });
 * dns.fail('down.example', 'MX', 'temporary');
 * ```
 */
export class FakeResolver implements Resolver {
  /** Every call, in order. */
  readonly calls: FakeCall[] = [];
  readonly #zone = new Map<string, Record<string, readonly unknown[]>>();
  readonly #failures = new Map<string, { error: 'notfound' | 'temporary'; detail: string }>();
  #gate: Promise<void> | undefined;
  /** TTL reported with every answer, in seconds. @default 300 */
  ttl = 300;

  constructor(zone: FakeZone = {}) {
    for (const [name, records] of Object.entries(zone)) {
      for (const [type, values] of Object.entries(records)) {
        this.set(name, type as RecordType, values as readonly unknown[]);
      }
    }
  }

  /** Sets the records of (name, type); for PTR the name may be the IP address. */
  set(name: string, type: RecordType, records: readonly unknown[]): this {
    const key = this.#key(name, type);
    const entry = this.#zone.get(key) ?? {};
    entry[type] =
      type === 'MX'
        ? (records as MxRecord[]).map((m) => ({
            priority: m.priority,
            exchange: m.exchange.toLowerCase().replace(/\.$/, ''),
          }))
        : records;
    this.#zone.set(key, entry);
    return this;
  }

  /** Makes (name, type) fail: `temporary` (SERVFAIL) by default, or `notfound`. */
  fail(name: string, type: RecordType, error: 'temporary' | 'notfound' = 'temporary', detail?: string): this {
    this.#failures.set(`${type} ${this.#key(name, type)}`, {
      error,
      detail: detail ?? (error === 'temporary' ? 'SERVFAIL' : 'NXDOMAIN'),
    });
    return this;
  }

  /** Answers wait until `gate` settles (to test what runs in parallel). `undefined`: no wait. */
  hold(gate: Promise<void> | undefined): this {
    this.#gate = gate;
    return this;
  }

  /** Number of calls for (name, type), or all calls when no argument is given. */
  count(name?: string, type?: RecordType): number {
    if (name === undefined) return this.calls.length;
    const n = type === 'PTR' ? (ptrName(name) ?? name) : (canonicalName(name) ?? name);
    return this.calls.filter((c) => c.name === n && (type === undefined || c.type === type)).length;
  }

  a(name: string): Promise<DnsResult<string>> {
    return this.#answer('A', name) as Promise<DnsResult<string>>;
  }
  aaaa(name: string): Promise<DnsResult<string>> {
    return this.#answer('AAAA', name) as Promise<DnsResult<string>>;
  }
  mx(name: string): Promise<DnsResult<MxRecord>> {
    return this.#answer('MX', name) as Promise<DnsResult<MxRecord>>;
  }
  ptr(ip: string): Promise<DnsResult<string>> {
    const n = ptrName(ip);
    if (n === undefined) return Promise.resolve(failed('notfound', `invalid address ${String(ip)}`));
    return this.#answer('PTR', n) as Promise<DnsResult<string>>;
  }
  txt(name: string): Promise<DnsResult<string>> {
    return this.#answer('TXT', name) as Promise<DnsResult<string>>;
  }

  #key(name: string, type: RecordType): string {
    if (type === 'PTR') {
      const p = ptrName(name);
      if (p !== undefined) return p;
    }
    return canonicalName(name) ?? name.toLowerCase();
  }

  async #answer(type: RecordType, name: string): Promise<DnsResult<unknown>> {
    const n = canonicalName(name);
    if (n === undefined) return failed('notfound', `invalid name ${JSON.stringify(name)}`);
    this.calls.push({ type, name: n });
    if (this.#gate) await this.#gate;
    const f = this.#failures.get(`${type} ${n}`);
    if (f) return failed(f.error, f.detail);
    const entry = this.#zone.get(n);
    if (!entry) return failed('notfound', 'NXDOMAIN');
    const records = entry[type];
    if (!records || records.length === 0) return failed('notfound', 'NODATA');
    const out =
      type === 'MX' ? [...(records as MxRecord[])].sort((x, y) => x.priority - y.priority) : records;
    return found(out, this.ttl);
  }
}
