/**
 * GET /metrics (issue 15): Prometheus text, scraped as an operator would.
 * Behind AUTHHUB_METRICS_TOKEN on the public port (refused without it, absent
 * without a token configured), or alone on a loopback port; HTTP requests,
 * GraphQL operations, authentications, rate-limit refusals, the pools, the
 * database's figures (webhook inbox, audit sealing, job queue) and the jobs a
 * real graphile-worker ran.
 */
import { jest } from "@jest/globals";
import type { AddressInfo } from "node:net";
import request from "supertest";
import { makePool } from "../../db/pools.js";
import { countJobs, serveMetrics } from "../../server/metrics.js";
import { makeLogger } from "../../server/logger.js";
import { startWorker } from "../../worker/runner.js";
import type { TestDatabase } from "../helpers/db.js";
import { cast, type Fixtures } from "../helpers/fixtures.js";
import { startTestServer, useFixtureServer, type TestServer } from "../helpers/server.js";

jest.setTimeout(60_000);

let db: TestDatabase;
let f: Fixtures;
let plain: TestServer;
let guarded: TestServer;
const TOKEN = "metrics-token-0123456789abcdef";

useFixtureServer((database, fixtures, server) => {
  db = database;
  f = fixtures;
  plain = server;
});
beforeAll(async () => {
  guarded = await startTestServer(db, { AUTHHUB_METRICS_TOKEN: TOKEN, AUTHHUB_GRAPHQL_RATE_LIMIT_ANONYMOUS: "1" });
});
afterAll(async () => {
  await guarded.close();
});

const scrape = async () => {
  const res = await request(guarded.app).get("/metrics").set("Authorization", `Bearer ${TOKEN}`);
  expect(res.status).toBe(200);
  expect(res.headers["content-type"]).toMatch(/^text\/plain/);
  return res.text;
};
/** The value of one series (name and labels as written), or null. */
const value = (text: string, series: string) => {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : null;
};

test("served only with the token on the public port; not at all without one configured", async () => {
  expect((await request(guarded.app).get("/metrics")).status).toBe(401);
  expect((await request(guarded.app).get("/metrics").set("Authorization", "Bearer wrong-token-0123456789")).status).toBe(401);
  expect((await request(plain.app).get("/metrics").set("Authorization", `Bearer ${TOKEN}`)).status).toBe(404);
  await scrape();
});

test("requests, GraphQL operations, authentications and rate-limit refusals are counted", async () => {
  const before = await scrape();
  const token = await guarded.mint(cast(f, f.a).tenantAdmin);
  const gql = (query: string, auth = true) => {
    const r = request(guarded.app).post("/graphql").set("Content-Type", "application/json");
    if (auth) r.set("Authorization", `Bearer ${token}`);
    return r.send({ query });
  };
  expect((await gql("{ currentUser { email } }")).status).toBe(200);
  expect((await gql("{ userz { id } }")).status).toBe(400);
  await request(guarded.app).post("/graphql").set("Authorization", "Bearer not.a.token").send({ query: "{ __typename }" });
  // Anonymous callers have a limit of one a minute here: the second is refused.
  await gql('{ tenantBranding(slug: "tenant-a") { displayName } }', false);
  expect((await gql('{ tenantBranding(slug: "tenant-a") { displayName } }', false)).status).toBe(429);
  const after = await scrape();
  const grew = (series: string, by = 1) => expect((value(after, series) ?? 0) - (value(before, series) ?? 0)).toBeGreaterThanOrEqual(by);
  grew('authhub_http_request_duration_seconds_count{route="/graphql",method="POST",status="200"}', 2);
  grew('authhub_http_request_duration_seconds_count{route="/graphql",method="POST",status="429"}');
  grew('authhub_graphql_operations_total{type="query",outcome="ok"}', 2);
  grew('authhub_authentications_total{method="bearer",outcome="ok"}', 2);
  grew('authhub_authentications_total{method="bearer",outcome="refused"}');
  grew('authhub_rate_limited_total{limit="graphql-anonymous"}');
});

test("pools and the database's own figures are read at each scrape", async () => {
  const text = await scrape();
  expect(value(text, 'authhub_db_pool_connections{pool="authenticator"}')).toBeGreaterThan(0);
  expect(value(text, 'authhub_db_pool_waiting{pool="authenticator"}')).toBe(0);
  for (const name of [
    "authhub_webhook_inbox_pending",
    "authhub_webhook_inbox_oldest_pending_seconds",
    "authhub_webhook_drain_lag_seconds",
    "authhub_audit_unsealed_events",
    "authhub_audit_seal_lag_seconds",
    "authhub_jobs_queued",
  ]) {
    expect(value(text, name)).not.toBeNull();
  }
  // Control: the figures are the database's (the fixtures' changes are not sealed yet).
  expect(value(text, "authhub_audit_unsealed_events")).toBeGreaterThan(0);
});

test("a worker's jobs are counted; AUTHHUB_METRICS_PORT serves /metrics on loopback only", async () => {
  const owner = makePool(db.ownerUrl, { name: "owner", max: 3, acquireTimeoutMs: 5_000 });
  const worker = await startWorker({ ownerPool: owner, logger: makeLogger("silent"), masterKey: guarded.masterKey, clerkApiUrl: "http://127.0.0.1:9" });
  countJobs(worker.events);
  const server = await serveMetrics(0);
  try {
    await db.owner.query("select graphile_worker.add_job('open_api__cleanup', '{}'::json)");
    const address = server.address() as AddressInfo;
    expect(address.address).toBe("127.0.0.1");
    const read = async () => (await fetch(`http://127.0.0.1:${address.port}/metrics`)).text();
    let text = "";
    for (let i = 0; i < 100 && !value(text, 'authhub_worker_jobs_total{task="open_api__cleanup",outcome="success"}'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      text = await read();
    }
    expect(value(text, 'authhub_worker_jobs_total{task="open_api__cleanup",outcome="success"}')).toBeGreaterThanOrEqual(1);
    expect((await fetch(`http://127.0.0.1:${address.port}/other`)).status).toBe(404);
  } finally {
    await new Promise((r) => server.close(r));
    await worker.stop();
    await owner.end();
  }
});
