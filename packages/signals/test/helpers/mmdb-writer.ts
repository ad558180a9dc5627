/**
 * A small MaxMind DB writer for tests, following the MaxMind DB File Format Specification 2.0
 * (https://maxmind.github.io/MaxMind-DB/). There is no maintained MMDB writer on npm (checked
 * 2026: `mmdb-writer`, `@maxmind/mmdb-writer` and `maxmind-db-writer` do not exist; MaxMind's own
 * writers are Perl and Go), so the tests build their databases with this one and read them with
 * the production reader, mmdb-lib.
 *
 * File layout (spec, "Database Structure"):
 *   binary search tree | 16 zero bytes | data section | "\xAB\xCD\xEFMaxMind.com" | metadata map
 *
 * The tree has one node per internal bit position; each node holds two records (left: bit 0,
 * right: bit 1) of 24, 28 or 32 bits. A record value below `node_count` is a node number; equal to
 * `node_count` means "no data"; above it, `value - node_count - 16` is an offset into the data
 * section. An IPv6 tree stores IPv4 networks under `::/96` (the first 96 bits zero), which is where
 * readers start an IPv4 lookup. (The `::ffff:0:0/96` and 6to4/Teredo aliases MaxMind adds are not
 * written: mxguard unwraps IPv4-mapped addresses before looking them up.)
 *
 * Supported data types: string (2), double (3), uint32 (6), map (7), int32 (8), uint64 (9),
 * array (11), boolean (14), and uint16 (5) for metadata. Networks may overlap: a more specific
 * network inserted after a wider one splits the wider one's leaf.
 */
import ipaddr from 'ipaddr.js';

/** A value in the data section. Numbers: non-negative integers are uint32, negative int32, others double. */
export type MmdbValue =
  | string
  | number
  | boolean
  | Uint16
  | Uint64
  | MmdbValue[]
  | { [key: string]: MmdbValue };

/** Forces the uint16 type (the spec types several metadata fields so). */
export class Uint16 {
  constructor(readonly value: number) {}
}
/** Forces the uint64 type (metadata `build_epoch`). */
export class Uint64 {
  constructor(readonly value: bigint) {}
}

const T = {
  Pointer: 1,
  String: 2,
  Double: 3,
  Uint16: 5,
  Uint32: 6,
  Map: 7,
  Int32: 8,
  Uint64: 9,
  Array: 11,
  Boolean: 14,
} as const;
type T = (typeof T)[keyof typeof T];

/** Control byte(s) for a type and a payload size (spec, "Output Data Section"). */
function control(type: T, size: number): Buffer {
  const head: number[] = [];
  let sizeBits: number;
  const extra: number[] = [];
  if (size < 29) sizeBits = size;
  else if (size < 29 + 256) {
    sizeBits = 29;
    extra.push(size - 29);
  } else if (size < 285 + 65536) {
    sizeBits = 30;
    const s = size - 285;
    extra.push(s >> 8, s & 0xff);
  } else if (size < 65821 + 16777216) {
    sizeBits = 31;
    const s = size - 65821;
    extra.push((s >> 16) & 0xff, (s >> 8) & 0xff, s & 0xff);
  } else throw new RangeError(`mmdb-writer: size ${size} too large`);
  if (type <= 7) head.push((type << 5) | sizeBits);
  else head.push(sizeBits, type - 7); // extended type: type bits 0, then (type - 7) in the next byte
  return Buffer.from([...head, ...extra]);
}

function uintBytes(v: bigint): Buffer {
  const out: number[] = [];
  let x = v;
  while (x > 0n) {
    out.unshift(Number(x & 0xffn));
    x >>= 8n;
  }
  return Buffer.from(out);
}

/** Encodes one value (no pointers: every value is written in full). */
export function encodeValue(v: MmdbValue): Buffer {
  if (typeof v === 'string') {
    const b = Buffer.from(v, 'utf8');
    return Buffer.concat([control(T.String, b.length), b]);
  }
  if (typeof v === 'boolean') return control(T.Boolean, v ? 1 : 0);
  if (v instanceof Uint16) {
    const b = uintBytes(BigInt(v.value));
    return Buffer.concat([control(T.Uint16, b.length), b]);
  }
  if (v instanceof Uint64) {
    const b = uintBytes(v.value);
    return Buffer.concat([control(T.Uint64, b.length), b]);
  }
  if (typeof v === 'number') {
    if (Number.isInteger(v) && v >= 0 && v <= 0xffffffff) {
      const b = uintBytes(BigInt(v));
      return Buffer.concat([control(T.Uint32, b.length), b]);
    }
    if (Number.isInteger(v) && v < 0 && v >= -0x80000000) {
      const b = Buffer.alloc(4);
      b.writeInt32BE(v);
      return Buffer.concat([control(T.Int32, 4), b]);
    }
    const b = Buffer.alloc(8);
    b.writeDoubleBE(v);
    return Buffer.concat([control(T.Double, 8), b]);
  }
  if (Array.isArray(v)) return Buffer.concat([control(T.Array, v.length), ...v.map(encodeValue)]);
  const entries = Object.entries(v);
  return Buffer.concat([
    control(T.Map, entries.length),
    ...entries.flatMap(([k, x]) => [encodeValue(k), encodeValue(x)]),
  ]);
}

interface Leaf {
  readonly leaf: true;
  readonly data: MmdbValue;
}
interface Node {
  readonly leaf: false;
  children: [Node | Leaf | undefined, Node | Leaf | undefined];
}
const node = (): Node => ({ leaf: false, children: [undefined, undefined] });

/** Options of a database file. */
export interface MmdbOptions {
  /** 4: an IPv4-only tree; 6: IPv6 with IPv4 under ::/96. @default 6 */
  readonly ipVersion?: 4 | 6;
  /** @default 24 */
  readonly recordSize?: 24 | 28 | 32;
  /** @default 'Test-Country' */
  readonly databaseType?: string;
  /** Seconds since the epoch. @default 1700000000 */
  readonly buildEpoch?: number;
}

/** Builds an MMDB file from networks: `insert('192.0.2.0/24', {...})`, then `build()`. */
export class MmdbWriter {
  readonly #root = node();
  readonly #ipVersion: 4 | 6;
  readonly #recordSize: 24 | 28 | 32;
  readonly #type: string;
  readonly #epoch: number;

  constructor(options: MmdbOptions = {}) {
    this.#ipVersion = options.ipVersion ?? 6;
    this.#recordSize = options.recordSize ?? 24;
    this.#type = options.databaseType ?? 'Test-Country';
    this.#epoch = options.buildEpoch ?? 1_700_000_000;
  }

  /** Adds a network (CIDR, IPv4 or IPv6) and its record. Later, more specific networks win inside it. */
  insert(cidr: string, data: MmdbValue): this {
    const [addr, len] = ipaddr.parseCIDR(cidr);
    let bits: number[] = addr
      .toByteArray()
      .flatMap((byte) => [7, 6, 5, 4, 3, 2, 1, 0].map((i) => (byte >> i) & 1));
    let prefix = len;
    if (addr.kind() === 'ipv4' && this.#ipVersion === 6) {
      bits = [...new Array<number>(96).fill(0), ...bits];
      prefix += 96;
    }
    if (addr.kind() === 'ipv6' && this.#ipVersion === 4)
      throw new TypeError(`IPv6 network ${cidr} in an IPv4 tree`);
    if (prefix === 0) throw new TypeError('mmdb-writer: a /0 network is not supported');
    let n = this.#root;
    for (let i = 0; i < prefix; i++) {
      const bit = bits[i] as 0 | 1;
      if (i === prefix - 1) {
        n.children[bit] = { leaf: true, data };
        break;
      }
      const child = n.children[bit];
      if (child === undefined) {
        const c = node();
        n.children[bit] = c;
        n = c;
      } else if (child.leaf) {
        // Split a wider network's leaf: both halves keep its data, the more specific path goes on.
        const c: Node = { leaf: false, children: [child, child] };
        n.children[bit] = c;
        n = c;
      } else n = child;
    }
    return this;
  }

  /** The file's bytes. */
  build(): Buffer {
    // Number the nodes breadth first; the root is node 0.
    const nodes: Node[] = [];
    const index = new Map<Node, number>();
    const queue: Node[] = [this.#root];
    while (queue.length > 0) {
      const n = queue.shift() as Node;
      index.set(n, nodes.length);
      nodes.push(n);
      for (const c of n.children) if (c && !c.leaf) queue.push(c);
    }
    const nodeCount = nodes.length;

    // The data section: each distinct record once.
    const offsets = new Map<string, number>();
    const chunks: Buffer[] = [];
    let size = 0;
    const dataOffset = (d: MmdbValue): number => {
      const key = JSON.stringify(d, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
      const known = offsets.get(key);
      if (known !== undefined) return known;
      const b = encodeValue(d);
      offsets.set(key, size);
      chunks.push(b);
      size += b.length;
      return size - b.length;
    };
    const recordOf = (c: Node | Leaf | undefined): number => {
      if (c === undefined) return nodeCount;
      if (!c.leaf) return index.get(c) as number;
      return nodeCount + 16 + dataOffset(c.data);
    };

    const nodeBytes = this.#recordSize / 4;
    const tree = Buffer.alloc(nodeCount * nodeBytes);
    const max = 2 ** this.#recordSize;
    nodes.forEach((n, i) => {
      const left = recordOf(n.children[0]);
      const right = recordOf(n.children[1]);
      if (left >= max || right >= max)
        throw new RangeError(`record value does not fit ${this.#recordSize} bits`);
      const o = i * nodeBytes;
      switch (this.#recordSize) {
        case 24:
          tree.writeUIntBE(left, o, 3);
          tree.writeUIntBE(right, o + 3, 3);
          break;
        case 28:
          // Spec: the middle byte holds the high nibble of each record (left's in its high half).
          tree.writeUIntBE(left & 0xffffff, o, 3);
          tree[o + 3] = (((left >>> 24) & 0x0f) << 4) | ((right >>> 24) & 0x0f);
          tree.writeUIntBE(right & 0xffffff, o + 4, 3);
          break;
        case 32:
          tree.writeUInt32BE(left, o);
          tree.writeUInt32BE(right, o + 4);
          break;
      }
    });

    const metadata = encodeValue({
      node_count: nodeCount,
      record_size: new Uint16(this.#recordSize),
      ip_version: new Uint16(this.#ipVersion),
      database_type: this.#type,
      languages: ['en'],
      binary_format_major_version: new Uint16(2),
      binary_format_minor_version: new Uint16(0),
      build_epoch: new Uint64(BigInt(this.#epoch)),
      description: { en: 'mxguard test database' },
    });
    return Buffer.concat([
      tree,
      Buffer.alloc(16),
      ...chunks,
      Buffer.from([0xab, 0xcd, 0xef]),
      Buffer.from('MaxMind.com', 'ascii'),
      metadata,
    ]);
  }
}

/** A GeoLite2-Country-shaped record. */
export function countryRecord(iso: string, registered = iso): MmdbValue {
  return {
    country: { iso_code: iso, geoname_id: 1, names: { en: iso } },
    registered_country: { iso_code: registered, geoname_id: 1, names: { en: registered } },
  };
}
