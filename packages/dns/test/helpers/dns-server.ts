/**
 * A small programmable DNS server for tests, on UDP and TCP at the same loopback port: answers from
 * a table, injects faults (SERVFAIL, drop = timeout, truncation so the client retries over TCP,
 * an answer with the wrong query ID, which a resolver must ignore, delay), and counts the queries it receives per (name, type), so tests can prove coalescing and
 * caching at the wire.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import * as packet from 'dns-packet';

export type Fault = 'servfail' | 'drop' | 'truncate' | 'refused' | 'nxdomain' | 'wrongid';

export interface ZoneRecord {
  readonly type: 'A' | 'AAAA' | 'MX' | 'PTR' | 'TXT';
  readonly data: string | { preference: number; exchange: string } | string[];
  readonly ttl?: number;
}

export class TestDnsServer {
  readonly counts = new Map<string, number>();
  readonly records = new Map<string, ZoneRecord[]>();
  readonly faults = new Map<string, Fault>();
  /** Milliseconds every answer waits (a slow server; tests bound answer times, never rely on it). */
  delay = 0;
  /** A fault for every query (overrides per-name faults). */
  fault: Fault | undefined;
  port = 0;
  #udp: dgram.Socket | undefined;
  #tcp: net.Server | undefined;
  readonly #timers = new Set<NodeJS.Timeout>();

  /** Adds a record; names are lower case without the trailing dot. */
  add(name: string, rec: ZoneRecord): this {
    const n = name.toLowerCase();
    this.records.set(n, [...(this.records.get(n) ?? []), rec]);
    return this;
  }

  /** Makes (name, type) fail; type '*' for all types. */
  setFault(name: string, type: string, fault: Fault | undefined): this {
    const key = `${name.toLowerCase()} ${type}`;
    if (fault) this.faults.set(key, fault);
    else this.faults.delete(key);
    return this;
  }

  count(name: string, type: string): number {
    return this.counts.get(`${name.toLowerCase()} ${type}`) ?? 0;
  }

  total(): number {
    let t = 0;
    for (const v of this.counts.values()) t += v;
    return t;
  }

  reset(): void {
    this.counts.clear();
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const udp = dgram.createSocket('udp4');
      const port = await new Promise<number>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(0, '127.0.0.1', () => resolve(udp.address().port));
      });
      const tcp = net.createServer((sock) => this.#onTcp(sock));
      const ok = await new Promise<boolean>((resolve) => {
        tcp.once('error', () => resolve(false));
        tcp.listen(port, '127.0.0.1', () => resolve(true));
      });
      if (!ok) {
        udp.close();
        continue;
      }
      udp.on('message', (msg, rinfo) => this.#onUdp(udp, msg, rinfo));
      this.#udp = udp;
      this.#tcp = tcp;
      this.port = port;
      return;
    }
    throw new Error('could not bind a UDP+TCP port pair');
  }

  async stop(): Promise<void> {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await new Promise<void>((r) => (this.#udp ? this.#udp.close(() => r()) : r()));
    await new Promise<void>((r) => (this.#tcp ? this.#tcp.close(() => r()) : r()));
  }

  #later(fn: () => void): void {
    if (this.delay <= 0) {
      fn();
      return;
    }
    const t = setTimeout(() => {
      this.#timers.delete(t);
      fn();
    }, this.delay);
    this.#timers.add(t);
  }

  #onUdp(udp: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const res = this.#answer(msg, false);
    if (!res) return;
    this.#later(() => udp.send(res, rinfo.port, rinfo.address));
  }

  #onTcp(sock: net.Socket): void {
    let buf = Buffer.alloc(0);
    sock.on('error', () => {});
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        const res = this.#answer(msg, true);
        if (!res) continue;
        const framed = Buffer.alloc(2 + res.length);
        framed.writeUInt16BE(res.length, 0);
        res.copy(framed, 2);
        this.#later(() => {
          if (!sock.destroyed) sock.write(framed);
        });
      }
    });
  }

  #answer(msg: Buffer, tcp: boolean): Buffer | undefined {
    let q: packet.Packet;
    try {
      q = packet.decode(msg);
    } catch {
      return undefined;
    }
    const question = q.questions?.[0];
    if (!question) return undefined;
    const name = question.name.toLowerCase().replace(/\.$/, '');
    const type = question.type;
    const key = `${name} ${type}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    const fault = this.fault ?? this.faults.get(key) ?? this.faults.get(`${name} *`);
    // A wrong ID: the real answer, as if to another query (spoofing attempt or a confused server).
    const id = fault === 'wrongid' ? ((q.id ?? 0) + 1) & 0xffff : q.id;
    const base = { id, type: 'response' as const, questions: q.questions };
    const RD = 1 << 8;
    const RA = 1 << 7;
    if (fault === 'drop') return undefined;
    if (fault === 'servfail') return packet.encode({ ...base, flags: RD | RA | 2 });
    if (fault === 'refused') return packet.encode({ ...base, flags: RD | RA | 5 });
    if (fault === 'nxdomain') return packet.encode({ ...base, flags: RD | RA | 3 });
    if (fault === 'truncate' && !tcp)
      return packet.encode({ ...base, flags: RD | RA | packet.TRUNCATED_RESPONSE });
    const recs = this.records.get(name);
    if (!recs) return packet.encode({ ...base, flags: RD | RA | 3 });
    const answers = recs
      .filter((r) => r.type === type)
      .map((r) => ({
        name: question.name,
        type: r.type,
        class: 'IN' as const,
        ttl: r.ttl ?? 300,
        data: r.data,
      }));
    return packet.encode({ ...base, flags: RD | RA, answers } as packet.Packet);
  }
}
