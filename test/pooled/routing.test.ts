/**
 * The pooled run really is pooled: under `npm run test:pooled` a test server's
 * authenticator connections reach PostgreSQL through the suite's PgBouncer
 * (its console lists them as clients of this file's database) and the server
 * runs with AUTHHUB_DB_POOLER=transaction. Without this, the request-path
 * suites the pooled run repeats (jest.pooled.config.js) could pass while
 * connecting directly.
 */
import pg from "pg";
import request from "supertest";
import { AUTHENTICATOR_ROLE } from "../../db/setup.js";
import { PGBOUNCER_MISSING, pgbouncerBinary } from "../helpers/pgbouncer.js";
import { cast, useFixtureDatabase } from "../helpers/fixtures.js";
import { startTestServer } from "../helpers/server.js";
import type { TestDatabase } from "../helpers/db.js";
import type { Fixtures } from "../helpers/fixtures.js";

const available = pgbouncerBinary() !== null;
if (!available) process.stderr.write(`${PGBOUNCER_MISSING}\n`);

(available ? describe : describe.skip)("npm run test:pooled", () => {
  let db: TestDatabase;
  let f: Fixtures;
  useFixtureDatabase((database, fixtures) => {
    db = database;
    f = fixtures;
  });

  test("a test server's requests go through the suite's PgBouncer, with AUTHHUB_DB_POOLER=transaction", async () => {
    const pooler = process.env.AUTHHUB_TEST_POOLER_URL;
    expect(pooler).toBeDefined();
    const srv = await startTestServer(db);
    try {
      expect(srv.config.database.pooler).toBe("transaction");
      const token = await srv.mint(cast(f, f.a).tenantAdmin);
      const res = await request(srv.app).post("/graphql").set("Authorization", `Bearer ${token}`).send({ query: "{ currentTenant { slug } }" });
      expect(res.body).toEqual({ data: { currentTenant: { slug: f.a.slug } } });

      const consoleUrl = new URL(pooler!);
      consoleUrl.username = AUTHENTICATOR_ROLE;
      consoleUrl.password = "";
      consoleUrl.pathname = "/pgbouncer";
      const admin = new pg.Client({ connectionString: consoleUrl.toString() });
      await admin.connect();
      try {
        const clients = await admin.query<{ database: string; user: string }>("show clients");
        expect(clients.rows.filter((c) => c.database === db.name && c.user === AUTHENTICATOR_ROLE).length).toBeGreaterThan(0);
      } finally {
        await admin.end();
      }
    } finally {
      await srv.close();
    }
  });
});
