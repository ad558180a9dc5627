/**
 * A small bounded map: insertion-ordered, evicting the oldest entry past `max`. Used where an
 * lru-cache dependency would be heavier than the need (mmdb-lib's decoded-record cache, p0f
 * answers kept for a few seconds): every cache in mxguard is bounded.
 */
export class BoundedMap<K, V> {
  readonly #map = new Map<K, V>();
  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1)
      throw new TypeError(`BoundedMap: max must be a positive integer, got ${max}`);
  }
  get(key: K): V | undefined {
    const v = this.#map.get(key);
    if (v !== undefined) {
      // Refresh recency: delete and re-insert moves the key to the newest end.
      this.#map.delete(key);
      this.#map.set(key, v);
    }
    return v;
  }
  set(key: K, value: V): this {
    this.#map.delete(key);
    this.#map.set(key, value);
    while (this.#map.size > this.max) {
      const oldest = this.#map.keys().next();
      if (oldest.done) break;
      this.#map.delete(oldest.value);
    }
    return this;
  }
  delete(key: K): boolean {
    return this.#map.delete(key);
  }
  clear(): void {
    this.#map.clear();
  }
  get size(): number {
    return this.#map.size;
  }
}
