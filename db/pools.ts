/**
 * Every connection pool AuthHub opens (the server's authenticator pool, the
 * owner pool of the worker and the CLI, the health probe's) comes from here, so
 * each one:
 * - bounds the wait for a connection (`connectionTimeoutMillis`): a caller that
 *   cannot get one within it fails with `unavailable` instead of queueing forever;
 * - survives PostgreSQL dropping connections: an idle connection's error is
 *   reported by the pool, a checked-out one's by the listener attached when it
 *   connects (without it, a terminated backend, 57P01, is an unhandled 'error'
 *   event that kills the process); the pool replaces dead connections on demand;
 * - gives broken connections back as broken (`release(err)`), so they are
 *   closed instead of handed to the next request.
 */
import pg from "pg";

export interface PoolOptions {
  /** Names the pool in logs and metrics. */
  name: string;
  max: number;
  /** Longest wait for a connection before the caller's request fails (ms). */
  acquireTimeoutMs: number;
  /** Where lost connections are reported. */
  onError?: (message: string, err: Error) => void;
}

/** Each pool's checked-out clients, so a shutdown past its grace can end them. */
const inUse = new WeakMap<pg.Pool, Set<pg.PoolClient>>();

export function makePool(connectionString: string, options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max: options.max,
    connectionTimeoutMillis: options.acquireTimeoutMs,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
  });
  const report = options.onError ?? (() => undefined);
  pool.on("error", (err) => report(`${options.name}: an idle connection was lost`, err));
  pool.on("connect", (client) => client.on("error", (err) => report(`${options.name}: a connection in use was lost`, err)));
  const active = new Set<pg.PoolClient>();
  inUse.set(pool, active);
  pool.on("acquire", (client) => active.add(client));
  pool.on("release", (_err, client) => active.delete(client));
  pool.on("remove", (client) => active.delete(client));
  return pool;
}

/**
 * Closes a pool at shutdown: waits up to `graceMs` for the work in progress to
 * give its connections back, then ends the ones still out (their statements
 * fail, their requests answer an error) so the process can stop on time.
 */
export async function closePool(pool: pg.Pool, graceMs: number): Promise<void> {
  const ended = pool.end();
  let timer: NodeJS.Timeout | undefined;
  const inTime = await Promise.race([ended.then(() => true), new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), graceMs)))]);
  clearTimeout(timer);
  if (inTime) return;
  for (const client of inUse.get(pool) ?? []) void (client as unknown as pg.Client).end().catch(() => undefined);
  await ended;
}

/** SQLSTATEs that mean the connection (or the server) is gone or refusing, not that the statement was wrong. */
const CONNECTION_STATES = /^(08...|57P0[1-4]|53300|25P03)$/;

/**
 * Whether an error means the database could not be reached or the connection
 * died (rather than the statement failing): a refused or timed-out connect, a
 * terminated backend, a server shutting down or out of connections.
 */
export function isConnectionError(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const { code, message } = err as { code?: unknown; message?: unknown };
  if (typeof code === "string" && CONNECTION_STATES.test(code)) return true;
  if (typeof code === "string" && /^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EAI_AGAIN)$/.test(code)) return true;
  return (
    typeof message === "string" &&
    /^(timeout exceeded when trying to connect|Connection terminated( unexpectedly| due to connection timeout)?|Client has encountered a connection error and is not queryable|Client was closed and is not queryable)$/.test(
      message,
    )
  );
}

/**
 * Returns a client to its pool after a unit of work: a client whose work failed
 * with a connection error, or whose rollback failed, is closed, not reused.
 */
export function releaseClient(client: pg.PoolClient, failure?: unknown): void {
  client.release(failure !== undefined && isConnectionError(failure) ? (failure as Error) : undefined);
}

/**
 * Ends a request's transaction after a failure: rolls back, and gives the
 * client back closed when the rollback itself fails (the connection is gone or
 * in an unknown state).
 */
export async function rollbackAndRelease(client: pg.PoolClient, failure: unknown): Promise<void> {
  try {
    await client.query("rollback");
    releaseClient(client, failure);
  } catch (err) {
    client.release(err as Error);
  }
}
