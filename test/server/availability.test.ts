/**
 * Availability against real processes and a real PostgreSQL (issue 12, the
 * attack catalogue's critical findings): one API key's concurrent requests
 * cannot wedge the pool; waits for a connection are bounded (503 with
 * Retry-After) and /readyz answers within two seconds whatever the pool's
 * state; PostgreSQL terminating the server's connections, restarting under
 * load, or crashing does not kill the process, in-flight requests fail as 503,
 * everything recovers, the worker resumes, and a request captured before the
 * crash cannot be replayed after it; SIGTERM stops within its grace, embedded
 * PostgreSQL last.
 *
 * One server on an embedded cluster of its own, with a small pool (5) and a
 * bounded wait for a connection (4 s), so the limits are reached quickly.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { jest } from "@jest/globals";
import pg from "pg";
import { signRequest } from "../../client/index.js";
import { pgCtl } from "../../db/embedded.js";
import { cliJson, embeddedRootUrl, embeddedRunning, eventually, killLeftovers, serverEnv, startServer, type RunningServer } from "../helpers/process.js";

jest.setTimeout(180_000);

let dataDir: string;
let env: NodeJS.ProcessEnv;
let server: RunningServer;
let token: string;
let key: { key_id: string; secret: string };
let root: pg.Pool;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), "authhub-availability-"));
  env = serverEnv(dataDir, {
    AUTHHUB_DB_POOL_SIZE: "5",
    // Long enough for a loaded machine to serve 50 requests from 5 connections, short enough for the pinned-pool test.
    AUTHHUB_DB_ACQUIRE_TIMEOUT_MS: "4000",
    AUTHHUB_STATEMENT_TIMEOUT_MS: "60000",
    AUTHHUB_SHUTDOWN_GRACE_MS: "2000",
  });
  server = await startServer(env);
  await cliJson(["bootstrap", "--tenant", "acme", "--admin-email", "admin@acme.test"], env);
  token = (await cliJson<{ token: string }>(["token", "--tenant", "acme", "--email", "admin@acme.test", "--ttl", "3600"], env)).token;
  key = await cliJson<typeof key>(["apikey", "create", "--tenant", "acme", "--scopes", "user:read,user:write", "--rate", "1000000"], env);
  root = new pg.Pool({ connectionString: embeddedRootUrl(dataDir), max: 2 });
  root.on("error", () => undefined);
  root.on("connect", (c) => c.on("error", () => undefined));
});
afterAll(async () => {
  await root?.end().catch(() => undefined);
  killLeftovers(dataDir);
  await rm(dataDir, { recursive: true, force: true });
});

const graphql = (query: string) =>
  fetch(`${server.base}/graphql`, { method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` }, body: JSON.stringify({ query }) });

/** A signed Open API request (the headers and body kept, so it can be replayed). */
function signed(method: string, url: string, body?: string) {
  const headers: Record<string, string> = { ...signRequest({ keyId: key.key_id, secret: key.secret, method, url, body: body ?? null }) };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  return { send: () => fetch(`${server.base}${url}`, { method, headers, body }) };
}

const ready = async () => (await fetch(`${server.base}/readyz`)).status === 200;
const alive = () => server.child.exitCode === null && server.child.signalCode === null;

/** Runs a job through the server's worker and answers whether it was done within `ms`. */
async function workerRuns(ms = 15_000): Promise<boolean> {
  const jobKey = `availability-${Date.now()}`;
  await root.query("select graphile_worker.add_job('open_api__cleanup', '{}'::json, job_key := $1)", [jobKey]);
  return eventually(async () => (await root.query("select 1 from graphile_worker.jobs where key = $1", [jobKey])).rowCount === 0, ms);
}

test("40 concurrent signed requests with one key and 10 GraphQL requests on a pool of 5: all answered, nothing wedged", async () => {
  const started = Date.now();
  const answers = await Promise.all([
    ...Array.from({ length: 40 }, () =>
      signed("GET", "/open/v1/users?limit=5")
        .send()
        .then((r) => r.status),
    ),
    ...Array.from({ length: 10 }, () => graphql("{ users(first: 5) { totalCount } }").then((r) => r.status)),
  ]);
  expect(answers.filter((s) => s !== 200)).toEqual([]);
  expect(Date.now() - started).toBeLessThan(20_000);
  // No connection of the server's is left inside a transaction.
  const idle = await root.query("select count(*)::int as n from pg_stat_activity where usename = 'authhub_authenticator' and state like 'idle in transaction%'");
  expect(idle.rows[0].n).toBe(0);
  expect(await ready()).toBe(true);
});

test("a pinned pool: waits for a connection end in 503 with Retry-After, /readyz answers within two seconds, and everything recovers", async () => {
  const lock = await root.connect();
  await lock.query("begin; lock table authhub.users in access exclusive mode");
  let settled: Response[];
  try {
    // Five requests take the five connections and wait on the lock; three more wait for a connection.
    const blocked = Array.from({ length: 8 }, () => graphql("{ users { totalCount } }"));
    await new Promise((r) => setTimeout(r, 300));
    const t = Date.now();
    const readyz = await fetch(`${server.base}/readyz`);
    expect(Date.now() - t).toBeLessThan(2_000);
    const body = (await readyz.json()) as { checks: { database: boolean }; pool: { total: number; waiting: number } };
    expect(body.checks.database).toBe(true);
    expect(body.pool.total).toBe(5);
    // The three that found no connection gave up after the acquire timeout, as 503.
    const first = await Promise.race(blocked.map((p) => p.then((r) => r)));
    expect(first.status).toBe(503);
    expect(first.headers.get("retry-after")).toBe("2");
    expect(((await first.json()) as { errors: { extensions: { code: string } }[] }).errors[0]!.extensions.code).toBe("unavailable");
    await lock.query("commit");
    settled = await Promise.all(blocked);
  } finally {
    await lock.query("rollback").catch(() => undefined);
    lock.release();
  }
  const statuses = settled.map((r) => r.status).sort();
  expect(statuses.filter((s) => s === 503).length).toBeGreaterThanOrEqual(3);
  expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(1);
  expect((await graphql("{ currentUser { email } }")).status).toBe(200);
});

test("PostgreSQL terminating the server's connections, idle or in use: the request in flight fails as 503, the process lives, the pool and the worker recover", async () => {
  // Connections in every pool, then one request held on a lock.
  await Promise.all(Array.from({ length: 6 }, () => graphql("{ currentUser { email } }")));
  const lock = await root.connect();
  await lock.query("begin; lock table authhub.organizations in access exclusive mode");
  const inFlight = graphql("{ organizations { totalCount } }");
  await new Promise((r) => setTimeout(r, 300));
  const terminated = await root.query(
    "select count(pg_terminate_backend(pid))::int as n from pg_stat_activity where usename in ('authhub_authenticator', 'authhub_owner') and pid <> pg_backend_pid()",
  );
  await lock.query("rollback");
  lock.release();
  expect(terminated.rows[0].n).toBeGreaterThan(2);
  const answer = await inFlight;
  expect(answer.status).toBe(503);
  expect(await answer.text()).not.toMatch(/terminat|SQLSTATE|at .*\(/);
  expect(alive()).toBe(true);
  // The pool replaces what died.
  expect(await eventually(async () => (await graphql("{ currentUser { email } }")).status === 200)).toBe(true);
  expect((await signed("GET", "/open/v1/users?limit=5").send()).status).toBe(200);
  expect(await ready()).toBe(true);
  expect(await workerRuns()).toBe(true);
  expect(alive()).toBe(true);
});

test("a restart of PostgreSQL under load: no 500 and no crash; /readyz reports it and recovers; requests and the worker resume", async () => {
  const statuses: number[] = [];
  let loading = true;
  const load = Promise.all(
    Array.from({ length: 6 }, async (_, i) => {
      while (loading) {
        const r = await (i % 2 === 0 ? graphql("{ users(first: 3) { nodes { email } } }") : signed("GET", "/open/v1/users?limit=3").send());
        statuses.push(r.status);
        await r.arrayBuffer();
      }
    }),
  );
  await new Promise((r) => setTimeout(r, 500));
  await pgCtl(dataDir, ["restart", "-m", "fast", "-w", "-t", "60"]);
  await new Promise((r) => setTimeout(r, 1_500));
  loading = false;
  await load;
  expect(alive()).toBe(true);
  expect([...new Set(statuses)].filter((s) => s !== 200 && s !== 503)).toEqual([]);
  expect(await eventually(ready, 15_000)).toBe(true);
  expect(await eventually(async () => (await graphql("{ currentUser { email } }")).status === 200)).toBe(true);
  expect(await workerRuns()).toBe(true);
  // Nothing crashed while the worker's completions failed against the restarting server.
  expect(server.stderr()).not.toMatch(/Unhandled|unhandled 'error' event/i);
});

test("a signed request captured before a crash cannot be replayed after it, though its nonce was lost", async () => {
  const body = JSON.stringify({ email: `captured-${Date.now()}@acme.test` });
  const captured = signed("POST", "/open/v1/users", body);
  expect((await captured.send()).status).toBe(201);
  expect((await captured.send()).status).toBe(401);
  // A crash: no shutdown checkpoint, unlogged tables (the nonce store) emptied by recovery.
  await pgCtl(dataDir, ["stop", "-m", "immediate", "-w"]);
  await pgCtl(dataDir, ["start", "-w", "-t", "60"]);
  expect(await eventually(ready, 15_000)).toBe(true);
  expect((await root.query("select count(*)::int as n from authhub_private.api_nonces")).rows[0].n).toBe(0);
  // Replayed within its 300 s window: refused (the first answers after the restart may be 503 while connections are replaced).
  let replay = 503;
  expect(await eventually(async () => (replay = (await captured.send()).status) !== 503)).toBe(true);
  expect(replay).toBe(401);
  expect((await root.query("select count(*)::int as n from authhub.users where email = $1", [JSON.parse(body).email])).rows[0].n).toBe(1);
  // A request signed now works.
  await new Promise((r) => setTimeout(r, 1_100));
  expect((await signed("GET", "/open/v1/users?limit=1").send()).status).toBe(200);
  expect(alive()).toBe(true);
});

test("SIGTERM while a mutation runs long: out within the grace (2 s) and a little, the embedded PostgreSQL stopped last", async () => {
  await root.query(`
    create function authhub_private.test_slow() returns trigger language plpgsql as $$ begin perform pg_sleep(30); return new; end $$;
    create trigger test_slow before insert on authhub.organizations for each row execute function authhub_private.test_slow();`);
  const slow = graphql('mutation { createOrganization(input: { organization: { slug: "slow", name: "Slow" } }) { organization { rowId } } }').catch(() => null);
  await new Promise((r) => setTimeout(r, 500));
  const t = Date.now();
  const code = await server.stop("SIGTERM");
  const took = Date.now() - t;
  expect(took).toBeLessThan(12_000);
  expect(embeddedRunning(dataDir)).toBe(false);
  expect(code).not.toBeNull();
  await slow;
  const order = server
    .lines()
    .map((l) => String(l.msg))
    .filter((m) => m.startsWith("shutdown: "));
  expect(order.at(-2)).toBe("shutdown: database stopped");
});
