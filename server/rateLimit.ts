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
 *
 * High limits (the Open API's per-key limits, 1000/min by default) can be
 * counted in batches: a server takes up to 1/50 of the limit (at most 20) from
 * the shared count at once and spends it locally, so most requests cost no
 * database write. Tokens only ever come from the shared count, so no more than
 * the limit are served in a window across all servers; near the limit a
 * server takes one at a time, and a batch the shared count refused is given
 * back (never one refused from memory, which was not counted).
 * `remaining` is then approximate by the tokens other servers hold.
 */
import type pg from "pg";
import { rateLimited } from "./metrics.js";
import { RateLimiterMemory, RateLimiterPostgres, RateLimiterRes, type RateLimiterAbstract } from "rate-limiter-flexible";

export interface RateLimitDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Seconds until the window resets (at least 1). */
  resetSeconds: number;
}

interface LocalTokens {
  tokens: number;
  /** The shared count's remaining points when the tokens were taken. */
  sharedRemaining: number;
  expiresAt: number;
  limit: number;
}

export class RateLimits {
  private readonly limiters = new Map<string, RateLimiterAbstract>();
  private readonly local = new Map<string, LocalTokens>();
  private cleaning = false;

  /**
   * `preparedStatements: false` behind a transaction-mode pooler
   * (AUTHHUB_DB_POOLER=transaction): rate-limiter-flexible names its
   * statements, and a named statement lives on one server connection while the
   * pooler hands each transaction any of them ("already exists", 42P05, or
   * "does not exist", 26000). Its failures are not seen by callers: the
   * per-process limiter takes over, and the limit no longer holds across
   * instances. Here its statements go unnamed.
   */
  constructor(
    private readonly pool: pg.Pool,
    private readonly options: { preparedStatements: boolean } = { preparedStatements: true },
  ) {}

  /** What rate-limiter-flexible is given to query with. */
  private storeClient(): Pick<pg.Pool, "query"> {
    if (this.options.preparedStatements) return this.pool;
    const pool = this.pool;
    return { query: (q: pg.QueryConfig) => pool.query({ text: q.text, values: q.values }) } as Pick<pg.Pool, "query">;
  }

  private limiter(kind: string, points: number, durationSeconds: number): RateLimiterAbstract {
    const id = `${kind}:${points}:${durationSeconds}`;
    let limiter = this.limiters.get(id);
    if (!limiter) {
      // One limiter per process sweeps expired windows (every five minutes).
      const clearExpiredByTimeout = !this.cleaning;
      this.cleaning = true;
      limiter = new RateLimiterPostgres({
        storeClient: this.storeClient(),
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

  /** Counts one request for `key` against `limit` per `durationSeconds`, taking tokens from the shared count in batches. */
  async hitBatched(kind: string, key: string, limit: number, durationSeconds = 60): Promise<RateLimitDecision> {
    const id = `${kind}:${key}`;
    const now = Date.now();
    const slot = this.local.get(id);
    const live = slot && slot.limit === limit && now < slot.expiresAt ? slot : null;
    if (live && live.tokens > 0) {
      live.tokens--;
      return { allowed: true, limit, remaining: live.sharedRemaining + live.tokens, resetSeconds: Math.max(1, Math.ceil((live.expiresAt - now) / 1000)) };
    }
    const known = live ? live.sharedRemaining : limit;
    const batch = Math.max(1, Math.min(20, Math.floor(limit / 50), Math.floor(known / 10)));
    const limiter = this.limiter(kind, limit, durationSeconds);
    const take = async (points: number): Promise<RateLimitDecision> => {
      try {
        const res = await limiter.consume(key, points);
        this.local.set(id, { tokens: points - 1, sharedRemaining: res.remainingPoints, expiresAt: Date.now() + res.msBeforeNext, limit });
        return { allowed: true, limit, remaining: res.remainingPoints + points - 1, resetSeconds: Math.max(1, Math.ceil(res.msBeforeNext / 1000)) };
      } catch (err) {
        if (!(err instanceof RateLimiterRes)) throw err;
        // Refused by the shared count as a batch near the limit: the batch was counted, so give it back and try
        // for one. A refusal from memory (the key is blocked here for the rest of its window) counted nothing:
        // giving a batch back then would raise what every other server may serve.
        if (points > 1 && err.consumedPoints > 0) {
          await limiter.reward(key, points).catch(() => undefined);
          return take(1);
        }
        this.local.delete(id);
        rateLimited.inc({ limit: kind });
        return { allowed: false, limit, remaining: 0, resetSeconds: Math.max(1, Math.ceil(err.msBeforeNext / 1000)) };
      }
    };
    return take(batch);
  }

  /**
   * Gives back one point `hit()` counted for `key`: for limits that count only
   * failures, each attempt is counted before it is tried (so a concurrent burst
   * cannot all pass a check made before any is counted) and a success gives its
   * point back.
   */
  async giveBack(kind: string, key: string, limit: number, durationSeconds = 60): Promise<void> {
    await this.limiter(kind, limit, durationSeconds).reward(key, 1);
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
      if (err instanceof RateLimiterRes) {
        rateLimited.inc({ limit: kind });
        return decide(err, false);
      }
      throw err;
    }
  }
}
