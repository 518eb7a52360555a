/**
 * A fresh database per test file, cloned from the migrated template, with pools
 * for the owner (fixtures and control queries) and for the authenticator (every
 * act as a request role goes through it, as the server's requests do).
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { beginRequestStatement, pgSettingsFor, pgSettingsForApiKey, type ApiKeyIdentity, type Identity } from "../../db/claims.js";
import { makePool } from "../../db/pools.js";
import { AUTHENTICATOR_ROLE, OWNER_ROLE, withCredentials } from "../../db/setup.js";

export interface TestDatabase {
  name: string;
  ownerUrl: string;
  authUrl: string;
  /** authhub_owner: fixtures and control queries ("the row exists"). */
  owner: pg.Pool;
  /** authhub_authenticator: acting as request roles. */
  auth: pg.Pool;
  close(): Promise<void>;
}

function env(name: string): string {
  const v = process.env[name];
  if (v === undefined) throw new Error(`${name} is not set: run the tests through jest (npm test)`);
  return v;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const rootUrl = env("AUTHHUB_TEST_ROOT_URL");
  const template = env("AUTHHUB_TEST_TEMPLATE");
  const name = `authhub_test_${randomBytes(6).toString("hex")}`;
  const root = new pg.Client({ connectionString: rootUrl });
  await root.connect();
  try {
    await root.query(`create database ${pg.escapeIdentifier(name)} template ${pg.escapeIdentifier(template)} owner ${OWNER_ROLE}`);
    await root.query(`grant connect on database ${pg.escapeIdentifier(name)} to ${AUTHENTICATOR_ROLE}`);
  } finally {
    await root.end();
  }
  const ownerUrl = withCredentials(rootUrl, OWNER_ROLE, env("AUTHHUB_TEST_OWNER_PASSWORD") || null, name);
  const authUrl = withCredentials(rootUrl, AUTHENTICATOR_ROLE, env("AUTHHUB_TEST_AUTH_PASSWORD") || null, name);
  // As the server's pools are made (db/pools.ts): a connection PostgreSQL ends (a
  // restart, an idle-in-transaction timeout under load) fails its query, never the test file.
  const owner = makePool(ownerUrl, { name: "test owner", max: 3, acquireTimeoutMs: 30_000 });
  const auth = makePool(authUrl, { name: "test authenticator", max: 5, acquireTimeoutMs: 30_000 });
  // A database that has been running for a while: its nonce store's epoch
  // (refusing requests signed before a crash emptied it) is an hour old, so
  // requests signed up to the window's 300 s ago are judged by their nonce.
  await owner.query("update authhub_private.api_nonce_epoch set started_at = now() - interval '1 hour'");
  return {
    name,
    ownerUrl,
    authUrl,
    owner,
    auth,
    async close() {
      await Promise.all([owner.end(), auth.end()]);
      const r = new pg.Client({ connectionString: rootUrl });
      await r.connect();
      // Let pools that close lazily (graphile-migrate keeps one briefly) go first:
      // forcing them would surface as errors in whatever still holds them.
      for (let i = 0; i < 40; i++) {
        const { rows } = await r.query("select count(*)::int as n from pg_stat_activity where datname = $1", [name]);
        if (rows[0].n === 0) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await r.query(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`);
      await r.end();
    },
  };
}

/** Who a test acts as: an identity as the server would derive it from a token, an API key, or anonymous. */
export type Actor = Identity | { apiKey: ApiKeyIdentity } | "anonymous";

/**
 * Runs `fn` as `actor` inside a transaction that is always rolled back, begun as
 * the server begins a request's (db/claims.ts: the claims, then the authority
 * and role begin_request resolves), on the authenticator's connection.
 */
export async function asActor<T>(db: TestDatabase, actor: Actor, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await db.auth.connect();
  try {
    const settings =
      actor !== "anonymous" && "apiKey" in actor ? pgSettingsForApiKey(actor.apiKey, "test-trace-0001") : pgSettingsFor(actor === "anonymous" ? null : actor, "test-trace-0001");
    await client.query(beginRequestStatement(settings));
    return await fn(client);
  } finally {
    await client.query("rollback").catch(() => undefined);
    client.release();
  }
}

/**
 * Runs one statement inside a savepoint, so that a refusal leaves the
 * transaction usable: the rows it affected, or the SQLSTATE it failed with.
 */
export async function attemptQuery(client: pg.PoolClient, sql: string, params: unknown[] = []): Promise<{ rowCount: number; code: null } | { rowCount: null; code: string }> {
  await client.query("savepoint attempt");
  try {
    const result = await client.query(sql, params);
    await client.query("release savepoint attempt");
    return { rowCount: result.rowCount ?? 0, code: null };
  } catch (err) {
    await client.query("rollback to savepoint attempt");
    return { rowCount: null, code: (err as { code?: string }).code ?? "unknown" };
  }
}

/** As `actor`, in a rolled-back transaction: the rows a statement affects, or the SQLSTATE refusing it. */
export function attemptAs(db: TestDatabase, actor: Actor, sql: string, params: unknown[] = []): Promise<number | string> {
  return asActor(db, actor, async (c) => {
    const result = await attemptQuery(c, sql, params);
    return result.code ?? result.rowCount;
  });
}

/** The SQLSTATE a statement fails with (null when it succeeds), leaving the transaction usable. */
export async function sqlErrorCode(client: pg.PoolClient, sql: string, params: unknown[] = []): Promise<string | null> {
  return (await attemptQuery(client, sql, params)).code;
}

/** Rows a statement affects/returns, leaving the transaction usable; throws on error. */
export async function rowsOf<R extends pg.QueryResultRow = Record<string, unknown>>(client: pg.PoolClient, sql: string, params: unknown[] = []): Promise<R[]> {
  return (await client.query<R>(sql, params)).rows;
}
