/**
 * The real HTTP app on a test database: the authenticator pool, a signing key
 * created under a throwaway master key, and a way to mint tokens exactly as
 * `npx authhub token` does.
 */
import { randomBytes } from "node:crypto";
import type pg from "pg";
import request from "supertest";
import type { Identity } from "../../db/claims.js";
import { makeApp, type App } from "../../server/app.js";
import { parseMasterKey, type MasterKey } from "../../server/auth/masterKey.js";
import { loadActiveSigningKey, mintAccessToken, type SigningKey } from "../../server/auth/signingKeys.js";
import { readConfig, type Config } from "../../server/config.js";
import { makeLogger } from "../../server/logger.js";
import type { TestDatabase } from "./db.js";
import { useFixtureDatabase, type Fixtures } from "./fixtures.js";
import { pooledAuthPool } from "./pgbouncer.js";

export const TEST_ISSUER = "http://authhub.test";

export interface TestServer extends App {
  config: Config;
  key: SigningKey;
  masterKey: MasterKey;
  mint(identity: Identity, options?: { ttlSeconds?: number }): Promise<string>;
  close(): Promise<void>;
}

/** One master key per test database: the signing key stored in it is encrypted under it. */
const masterKeys = new WeakMap<TestDatabase, ReturnType<typeof parseMasterKey>>();

/**
 * The app on `authPool` (default: the test database's authenticator pool).
 * Under `npm run test:pooled` the default is a pool through the suite's
 * PgBouncer instead, with AUTHHUB_DB_POOLER=transaction, so the same tests
 * exercise the pooled deployment (test/pooled/pooler.setup.ts).
 */
export async function startTestServer(db: TestDatabase, env: Record<string, string> = {}, authPool?: pg.Pool): Promise<TestServer> {
  const throughPooler = !authPool && !!process.env.AUTHHUB_TEST_POOLER_URL;
  const config = readConfig({ NODE_ENV: "test", AUTHHUB_ISSUER: TEST_ISSUER, LOG_LEVEL: "silent", ...(throughPooler ? { AUTHHUB_DB_POOLER: "transaction" } : {}), ...env });
  // Sized and bounded as the server's own pool would be (server/main.ts), with at least the test pools' 30 s wait.
  const pooled = throughPooler ? pooledAuthPool(db, { max: config.database.poolSize, acquireTimeoutMs: Math.max(config.database.acquireTimeoutMs, 30_000) }) : null;
  let masterKey = masterKeys.get(db);
  if (!masterKey) {
    masterKey = parseMasterKey(env.AUTHHUB_MASTER_KEY ?? randomBytes(32).toString("base64"));
    masterKeys.set(db, masterKey);
  }
  const key = await loadActiveSigningKey(db.owner, masterKey);
  const app = await makeApp({ config, authPool: authPool ?? pooled ?? db.auth, logger: makeLogger(config.logLevel), masterKey });
  return {
    ...app,
    config,
    key,
    masterKey,
    mint: async (identity, options) => (await mintAccessToken(key, identity, { issuer: TEST_ISSUER, ttlSeconds: options?.ttlSeconds ?? 300 })).token,
    close: async () => {
      await app.release();
      await pooled?.end();
    },
  };
}

/**
 * For a test file: a fresh database with the fixtures, and the app on it,
 * released after the file's tests. `ready` receives all three.
 */
export function useFixtureServer(ready: (db: TestDatabase, f: Fixtures, srv: TestServer) => void, env: Record<string, string> = {}): void {
  let srv: TestServer | undefined;
  useFixtureDatabase(async (db, f) => {
    srv = await startTestServer(db, env);
    ready(db, f, srv);
  });
  afterAll(async () => {
    await srv?.close();
  });
}

/** A GraphQL answer, read field by field as a client would. */
export interface GraphQLAnswer {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are read field by field, as a client would
  data?: Record<string, any> | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
  errors?: { message: string; extensions?: Record<string, any> }[];
}

/** POST /graphql on `srv` as `who` (a fixture identity, whose token is minted), or anonymously for null. */
export async function graphql(srv: TestServer, who: Identity | null, query: string, variables: Record<string, unknown> = {}): Promise<GraphQLAnswer> {
  const req = request(srv.app).post("/graphql").set("Content-Type", "application/json").set("Accept", "application/json");
  if (who) req.set("Authorization", `Bearer ${await srv.mint(who)}`);
  return (await req.send({ query, variables })).body as GraphQLAnswer;
}

/** The error codes of a GraphQL answer, in order. */
export const errorCodes = (r: GraphQLAnswer): unknown[] => (r.errors ?? []).map((e) => e.extensions?.code);
