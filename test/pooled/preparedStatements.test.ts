/**
 * Why AUTHHUB_DB_POOLER=transaction exists (issue 15): behind PgBouncer in
 * transaction mode a named prepared statement lives on one server connection,
 * and each transaction may get another. Here a PgBouncer of its own with a
 * single server connection makes that certain: the server's pool clients all
 * share it, so the second client to name a statement finds it already there.
 *
 * Without the setting, PostGraphile's statements (named by a hash of their
 * text) fail with 42P05, and the rate limiter's named statements fail too —
 * silently, its per-process stand-in takes over, so a limit no longer holds
 * across server instances. With the setting, the same traffic through the
 * same pooler succeeds and the limit is counted once for both instances.
 */
import { jest } from "@jest/globals";
import type pg from "pg";
import request from "supertest";
import { signRequest } from "../../client/index.js";
import { makePool } from "../../db/pools.js";
import { AUTHENTICATOR_ROLE } from "../../db/setup.js";
import { issueApiKey } from "../../server/openapi/issue.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { cast, seedFixtures, type Fixtures } from "../helpers/fixtures.js";
import { PGBOUNCER_MISSING, pgbouncerBinary, startPgBouncer, type PgBouncer } from "../helpers/pgbouncer.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

jest.setTimeout(120_000);

const available = pgbouncerBinary() !== null;
if (!available) process.stderr.write(`${PGBOUNCER_MISSING}\n`);

(available ? describe : describe.skip)("through PgBouncer in transaction mode (one server connection)", () => {
  let db: TestDatabase;
  let f: Fixtures;
  let pooler: PgBouncer;
  const opened: { srv: TestServer; pool: pg.Pool }[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    f = await seedFixtures(db);
    pooler = await startPgBouncer({
      serverUrl: process.env.AUTHHUB_TEST_ROOT_URL!,
      users: [{ name: AUTHENTICATOR_ROLE, password: process.env.AUTHHUB_TEST_AUTH_PASSWORD || null }],
      poolSize: 1,
    });
  });
  afterEach(async () => {
    for (const { srv, pool } of opened.splice(0)) {
      await srv.close();
      await pool.end();
    }
    await db.owner.query("delete from authhub_private.rate_limits");
  });
  afterAll(async () => {
    await pooler?.stop();
    await db?.close();
  });

  /** A server whose authenticator pool goes through this file's pooler. */
  async function server(setting: "none" | "transaction"): Promise<TestServer> {
    const pool = makePool(pooler.through(db.authUrl), { name: `through pgbouncer (${setting})`, max: 20, acquireTimeoutMs: 60_000 });
    // development: an unexpected error's answer carries the database's message (`debug`).
    const srv = await startTestServer(db, { AUTHHUB_DB_POOLER: setting, NODE_ENV: "development", AUTHHUB_GRAPHQL_RATE_LIMIT_USER: "100000" }, pool);
    opened.push({ srv, pool });
    return srv;
  }

  /** 96 identical GraphQL reads, 8 at a time: the answers' error messages (empty when all succeed). */
  async function graphqlErrors(srv: TestServer): Promise<string[]> {
    const token = await srv.mint(cast(f, f.a).tenantAdmin);
    const query = "{ users(first: 5) { nodes { rowId email } } organizations(first: 5) { nodes { rowId slug } } }";
    const errors: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next++ < 96) {
          const res = await request(srv.app).post("/graphql").set("Authorization", `Bearer ${token}`).send({ query });
          if (res.status !== 200 || res.body.errors) {
            const all = (res.body.errors ?? []) as { extensions?: { debug?: string } }[];
            errors.push(all.map((e) => e.extensions?.debug ?? JSON.stringify(e)).join("; ") || `HTTP ${res.status}`);
          }
        }
      }),
    );
    return errors;
  }

  test("without AUTHHUB_DB_POOLER=transaction, GraphQL requests fail with 42P05 (prepared statement already exists)", async () => {
    const errors = await graphqlErrors(await server("none"));
    expect(errors.length).toBeGreaterThan(0);
    expect(errors.some((e) => /prepared statement ".+" already exists/.test(e))).toBe(true);
  });

  test("with AUTHHUB_DB_POOLER=transaction, the same requests through the same pooler all succeed", async () => {
    expect(await graphqlErrors(await server("transaction"))).toEqual([]);
  });

  /** Four signed Open API reads on each of two instances against a limit of 6: the statuses, in order. */
  async function limitAcrossInstances(setting: "none" | "transaction"): Promise<number[]> {
    const one = await server(setting);
    const two = await server(setting);
    const k = await issueApiKey(db.owner, one.masterKey, { name: `Limited ${setting}`, tenantId: f.a.id, scopes: ["user:read"], rateLimitPerMinute: 6 });
    const statuses: number[] = [];
    for (const srv of [one, one, one, one, two, two, two, two]) {
      const path = "/open/v1/users?limit=1";
      const res = await request(srv.app)
        .get(path)
        .set(signRequest({ keyId: k.keyId, secret: k.secret, method: "GET", url: path }));
      statuses.push(res.status);
    }
    return statuses;
  }

  test("without the setting, the rate limiter's named statements fail and a key's limit is not shared by two instances", async () => {
    // The second instance cannot count in the database, and its per-process stand-in lets all four through.
    expect(await limitAcrossInstances("none")).toEqual([200, 200, 200, 200, 200, 200, 200, 200]);
  });

  test("with the setting, two instances through the pooler count one limit", async () => {
    expect(await limitAcrossInstances("transaction")).toEqual([200, 200, 200, 200, 200, 200, 429, 429]);
  });
});
