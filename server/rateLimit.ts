/**
 * Rate limits shared by every server instance: rate-limiter-flexible's
 * fixed windows, counted in PostgreSQL (`authhub_private.rate_limits`, an
 * unlogged table the migrations create; the server's login role may only
 * count in it). One RateLimits serves the Auth API's abuse limits and the Open
 * API's per-key limits.
 *
 * Once a key is over its limit, the rest of its window is refused from memory
 * without asking the database, so a flood does not become a flood of writes.
 * If the database cannot count (it is down, a statement times out), a
 * per-process limiter with the same limit decides meanwhile.
 */
import type pg from "pg";
import { RateLimiterMemory, RateLimiterPostgres, RateLimiterRes, type RateLimiterAbstract } from "rate-limiter-flexible";

export interface RateLimitDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Seconds until the window resets (at least 1). */
  resetSeconds: number;
}

export class RateLimits {
  private readonly limiters = new Map<string, RateLimiterAbstract>();
  private cleaning = false;

  constructor(private readonly pool: pg.Pool) {}

  private limiter(kind: string, points: number, durationSeconds: number): RateLimiterAbstract {
    const id = `${kind}:${points}:${durationSeconds}`;
    let limiter = this.limiters.get(id);
    if (!limiter) {
      // One limiter per process sweeps expired windows (every five minutes).
      const clearExpiredByTimeout = !this.cleaning;
      this.cleaning = true;
      limiter = new RateLimiterPostgres({
        storeClient: this.pool,
        storeType: "pool",
        schemaName: "authhub_private",
        tableName: "rate_limits",
        tableCreated: true,
        clearExpiredByTimeout,
        keyPrefix: kind,
        points,
        duration: durationSeconds,
        inMemoryBlockOnConsumed: points + 1,
        insuranceLimiter: new RateLimiterMemory({ keyPrefix: kind, points, duration: durationSeconds }),
      });
      this.limiters.set(id, limiter);
    }
    return limiter;
  }

  /** Counts one request for `key` against `limit` per `durationSeconds` (default a minute). */
  async hit(kind: string, key: string, limit: number, durationSeconds = 60): Promise<RateLimitDecision> {
    const decide = (res: RateLimiterRes, allowed: boolean): RateLimitDecision => ({
      allowed,
      limit,
      remaining: Math.max(limit - res.consumedPoints, 0),
      resetSeconds: Math.max(1, Math.ceil(res.msBeforeNext / 1000)),
    });
    try {
      return decide(await this.limiter(kind, limit, durationSeconds).consume(key), true);
    } catch (err) {
      if (err instanceof RateLimiterRes) return decide(err, false);
      throw err;
    }
  }
}
