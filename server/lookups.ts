/**
 * Two guards for the lookups a request triggers by naming an id (an API key, a
 * webhook endpoint): answers kept briefly, so a burst costs one read, and a
 * cap on how many unknown ids one address may name, so made-up ids cannot turn
 * into a query each.
 */
import { RateLimiterMemory } from "rate-limiter-flexible";

/** Answers by key, each kept `ttlMs` (a failed one forgotten at once), at most `maxEntries` of them. */
export class ShortCache<V> {
  private readonly entries = new Map<string, { at: number; value: Promise<V> }>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries = 10_000,
  ) {}

  /** Whether `key` would be answered without loading now. */
  has(key: string): boolean {
    const hit = this.entries.get(key);
    return hit !== undefined && Date.now() - hit.at < this.ttlMs;
  }

  get(key: string, load: () => Promise<V>): Promise<V> {
    const hit = this.entries.get(key);
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.value;
    const value = load();
    if (this.ttlMs > 0) {
      if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
      this.entries.set(key, { at: Date.now(), value });
      value.catch(() => this.entries.delete(key));
    }
    return value;
  }
}

/**
 * A lookup of a named id, refused (null) without reading for an address that
 * named `perMinute` unknown ids in the last minute; every unknown answer counts.
 */
export function unknownIdGuard(keyPrefix: string, perMinute: number) {
  const limiter = new RateLimiterMemory({ keyPrefix, points: perMinute, duration: 60 });
  return async <T>(address: string, read: () => Promise<T | null>): Promise<T | null> => {
    if (((await limiter.get(address))?.consumedPoints ?? 0) >= perMinute) return null;
    const found = await read();
    if (!found) await limiter.consume(address).catch(() => undefined);
    return found;
  };
}
