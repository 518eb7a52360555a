/**
 * Many instances (issue 15, item 4): two server processes and two worker
 * processes (`npm run worker`) on one database under a mixed load (GraphQL
 * reads and writes, signed Open API reads, creates and order syncs, Clerk
 * webhook deliveries), sent to both servers in turn. Each delivery is applied
 * once whichever worker drains it, the rollups count each order once, an API
 * key's per-minute limit is counted jointly across the servers, a signing key
 * rotated by `npx authhub keys rotate` is used and accepted by both servers
 * within a minute, and a worker killed in the middle of a job has it taken over
 * by the other. Bounds are generous and conditions polled: the machine is shared.
 */
import { randomBytes } from "node:crypto";
import { jest } from "@jest/globals";
import { decodeProtectedHeader } from "jose";
import { signRequest } from "../../client/index.js";
import { parseMasterKey } from "../../server/auth/masterKey.js";
import { issueApiKey } from "../../server/openapi/issue.js";
import { createWebhookEndpoint } from "../../server/webhooks/endpoints.js";
import type { TestDatabase } from "../helpers/db.js";
import { useFixtureDatabase, type Fixtures } from "../helpers/fixtures.js";
import {
  clerkUserEvent,
  cliJson,
  databaseEnv,
  deliverWebhook,
  eventually,
  killChildren,
  startServer,
  startWorkerProcess,
  type RunningServer,
  type RunningWorker,
} from "../helpers/process.js";

jest.setTimeout(180_000);

let db: TestDatabase;
let f: Fixtures;
useFixtureDatabase((database, fixtures) => {
  db = database;
  f = fixtures;
});
afterAll(() => killChildren());

const masterKey = randomBytes(32).toString("base64");
let servers: RunningServer[];
let workers: RunningWorker[];
let env: NodeJS.ProcessEnv;
let token: string;
let loadKey: { keyId: string; secret: string };
let endpoint: { id: string; path: string; secret: string };
let storeId: string;

const graphql = (base: string, query: string, bearer = token) =>
  fetch(`${base}/graphql`, { method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${bearer}` }, body: JSON.stringify({ query }) });
function signed(base: string, key: { keyId: string; secret: string }, method: string, url: string, body?: unknown, headers: Record<string, string> = {}) {
  const raw = body === undefined ? undefined : JSON.stringify(body);
  const h: Record<string, string> = { ...signRequest({ keyId: key.keyId, secret: key.secret, method, url, body: raw ?? null }), ...headers };
  if (raw !== undefined) h["Content-Type"] = "application/json";
  return fetch(`${base}${url}`, { method, headers: h, body: raw });
}
const deliver = (base: string, event: unknown, id: string) => deliverWebhook(base, endpoint, event, id);

beforeAll(async () => {
  env = databaseEnv(db, masterKey, { AUTHHUB_WORKER: "off", AUTHHUB_STATEMENT_TIMEOUT_MS: "60000" });
  // The first server makes the signing key; the others start on the database it left.
  servers = [await startServer(env)];
  [servers[1], ...workers] = await Promise.all([startServer(env), startWorkerProcess(env), startWorkerProcess(env)]);
  token = (await cliJson<{ token: string }>(["token", "--tenant", "tenant-a", "--email", "tenant-admin@tenant-a.test", "--ttl", "3600"], env)).token;
  loadKey = await issueApiKey(db.owner, parseMasterKey(masterKey), {
    name: "load",
    scopes: ["user:read", "user:write", "org:read", "sync:write"],
    tenantId: f.a.id,
    rateLimitPerMinute: 100_000,
  });
  endpoint = await createWebhookEndpoint(db.owner, parseMasterKey(masterKey), { name: "Clerk", issuer: "https://clerk.many.example", tenantId: f.a.id });
  const made = (await (
    await graphql(servers[0]!.base, 'mutation { createStore(input: { code: "many-shop", name: "Many", timezone: "UTC", currency: "EUR" }) { store { rowId } } }')
  ).json()) as {
    data: { createStore: { store: { rowId: string } } };
  };
  storeId = made.data.createStore.store.rowId;
});

test("a mixed load over two servers and two workers: every answer a success, each delivery applied once, each order counted once", async () => {
  const failures: string[] = [];
  const check = async (what: string, res: Promise<Response>, ok: number[]) => {
    const r = await res;
    const body = await r.text();
    if (!ok.includes(r.status) || body.includes('"errors"')) failures.push(`${what}: ${r.status} ${body.slice(0, 200)}`);
  };
  const USERS = 40;
  const ORDERS = 30;
  const base = (i: number) => servers[i % 2]!.base;
  const t0 = Date.now();
  await Promise.all([
    // Clerk: each user created, then updated, the two deliveries sent to different servers.
    (async () => {
      for (let i = 0; i < USERS; i++) {
        const at = t0 + i;
        await check("user.created", deliver(base(i), clerkUserEvent("user.created", `user_many_${i}`, `many-${i}@many.test`, at), `msg_many_c_${i}`), [202]);
        await check("user.updated", deliver(base(i + 1), clerkUserEvent("user.updated", `user_many_${i}`, `many-${i}@many.test`, at + 1000), `msg_many_u_${i}`), [202]);
        // A redelivery, to the other server: a no-op.
        if (i % 5 === 0) await check("redelivery", deliver(base(i + 1), clerkUserEvent("user.created", `user_many_${i}`, `many-${i}@many.test`, at), `msg_many_c_${i}`), [200]);
      }
    })(),
    // Order syncs, one order each, alternating servers.
    (async () => {
      for (let i = 0; i < ORDERS; i++) {
        const row = {
          externalId: `many-o-${i}`,
          version: 1,
          store: "many-shop",
          data: {
            number: `M-${i}`,
            status: "paid",
            currency: "EUR",
            placedAt: `2026-03-0${1 + (i % 3)}T10:00:00Z`,
            lines: [{ lineNo: 1, sku: "TEA-1", quantity: 1, unitPriceMinor: 100 }],
          },
        };
        await check("sync", signed(base(i), loadKey, "POST", "/open/v1/sync/orders", { rows: [row] }, { "Idempotency-Key": `many-${i}` }), [200]);
      }
    })(),
    // GraphQL writes and reads, Open API creates and reads.
    ...[0, 1].map(async (s) => {
      for (let i = 0; i < 15; i++) {
        await check("gql write", graphql(base(i + s), `mutation { createUser(input: { user: { email: "gql-${s}-${i}@many.test" } }) { user { rowId } } }`), [200]);
        await check("gql read", graphql(base(i + s + 1), "{ users(first: 5) { totalCount nodes { email } } organizations { totalCount } }"), [200]);
        await check("open create", signed(base(i + s), loadKey, "POST", "/open/v1/users", { email: `open-${s}-${i}@many.test` }), [201]);
        await check("open read", signed(base(i + s + 1), loadKey, "GET", "/open/v1/users?limit=5"), [200]);
      }
    }),
  ]);
  expect(failures).toEqual([]);

  // Both workers took part or not, each delivery is done once: one audit event per delivery, named after it.
  const settled = async () => {
    const pending = await db.owner.query("select 1 from authhub.webhook_deliveries where state = 'pending'");
    const dirty = await db.owner.query("select 1 from retail_private.rollup_dirty");
    return pending.rowCount === 0 && dirty.rowCount === 0;
  };
  expect(await eventually(settled, 60_000)).toBe(true);
  const { rows: states } = await db.owner.query<{ state: string; n: number }>("select state, count(*)::int as n from authhub.webhook_deliveries group by state");
  expect(states).toEqual([{ state: "done", n: USERS * 2 }]);
  const { rows: effects } = await db.owner.query<{ actor: string; operation: string; n: number }>(
    `select actor, operation::text, count(*)::int as n from authhub.audit_events
     where tenant_id = $1 and table_name = 'users' and actor like 'system:clerk-sync:msg_many_%' group by actor, operation`,
    [f.a.id],
  );
  expect(effects.filter((e) => e.n !== 1)).toEqual([]);
  expect(effects.filter((e) => e.operation === "INSERT")).toHaveLength(USERS);
  expect(effects.filter((e) => e.operation === "UPDATE").length).toBeLessThanOrEqual(USERS);
  expect((await db.owner.query("select 1 from authhub.users where external_id like 'user_many_%'")).rowCount).toBe(USERS);
  // The rollups: every order once, whichever worker folded which day.
  const { rows: totals } = await db.owner.query<{ orders: number; revenue: number }>(
    "select coalesce(sum(orders), 0)::int as orders, coalesce(sum(revenue_minor), 0)::int as revenue from retail.daily_store_totals where store_id = $1",
    [storeId],
  );
  expect(totals[0]).toEqual({ orders: ORDERS, revenue: ORDERS * 100 });
  // Every process is still up.
  for (const p of [...servers, ...workers]) expect(p.child.exitCode).toBeNull();
});

test("an API key's per-minute limit is counted across both servers, under concurrency and once one server refuses from memory", async () => {
  // Connections opened first (with another key): a count the database cannot take in time falls back to a
  // per-process count (server/rateLimit.ts), which a cold pool on a loaded machine could cause.
  await Promise.all(Array.from({ length: 12 }, (_, c) => signed(servers[c % 2]!.base, loadKey, "GET", "/open/v1/me").then((r) => r.arrayBuffer())));
  const me = async (server: RunningServer, key: { keyId: string; secret: string }) => {
    const res = await signed(server.base, key, "GET", "/open/v1/me");
    await res.arrayBuffer();
    return res.status;
  };
  // Six clients over both servers.
  const limited = await issueApiKey(db.owner, parseMasterKey(masterKey), { name: "limited", scopes: ["org:read"], tenantId: f.a.id, rateLimitPerMinute: 120 });
  const statuses: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 6 }, async (_, c) => {
      while (next < 180) {
        next++;
        statuses.push(await me(servers[c % 2]!, limited));
      }
    }),
  );
  const ok = statuses.filter((s) => s === 200).length;
  expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
  expect(ok).toBeLessThanOrEqual(120);
  expect(ok).toBeGreaterThan(0);
  expect(statuses.length - ok).toBeGreaterThanOrEqual(60);

  // One server used up the limit and now refuses from memory; its refusals must not give the other server more.
  const second = await issueApiKey(db.owner, parseMasterKey(masterKey), { name: "limited-2", scopes: ["org:read"], tenantId: f.a.id, rateLimitPerMinute: 120 });
  const first: number[] = [];
  for (let i = 0; i < 170; i++) first.push(await me(servers[0]!, second));
  const other: number[] = [];
  for (let i = 0; i < 60; i++) other.push(await me(servers[1]!, second));
  expect(first.filter((s) => s === 200).length).toBeLessThanOrEqual(120);
  expect(first.filter((s) => s === 200).length + other.filter((s) => s === 200).length).toBeLessThanOrEqual(120);
});

test("`keys rotate`: both servers issue with the new key and accept its tokens within a minute, and still the old one's", async () => {
  const oldKid = decodeProtectedHeader(token).kid;
  // Both servers have verified a token of the old key, so both hold it in memory.
  for (const s of servers) expect((await graphql(s.base, "{ currentUser { email } }")).status).toBe(200);
  const rotated = await cliJson<{ kid: string; retired: { kid: string } | null }>(["keys", "rotate"], env);
  expect(rotated.retired?.kid).toBe(oldKid);
  const fresh = (await cliJson<{ token: string }>(["token", "--tenant", "tenant-a", "--email", "tenant-admin@tenant-a.test"], env)).token;
  expect(decodeProtectedHeader(fresh).kid).toBe(rotated.kid);
  const accepted = async (base: string, bearer: string) => {
    const res = await graphql(base, "{ currentUser { email } }", bearer);
    return res.status === 200 && ((await res.json()) as { data?: { currentUser?: { email: string } } }).data?.currentUser?.email === "tenant-admin@tenant-a.test";
  };
  for (const s of servers) {
    // Each server issues with the new key: a client-credentials token it mints names the new kid, and both accept it.
    const issued = await fetch(`${s.base}/auth/token`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "client_credentials", client_id: loadKey.keyId, client_secret: loadKey.secret }),
    });
    expect(issued.status).toBe(200);
    const minted = ((await issued.json()) as { access_token: string }).access_token;
    expect(decodeProtectedHeader(minted).kid).toBe(rotated.kid);
    for (const other of servers) expect(await eventually(async () => (await graphql(other.base, "{ currentUser { email } }", minted)).status === 200, 60_000)).toBe(true);
    expect(await eventually(() => accepted(s.base, fresh), 60_000)).toBe(true);
    expect(await accepted(s.base, token)).toBe(true);
    const published = async () => ((await (await fetch(`${s.base}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
    expect(await eventually(async () => (await published()).includes(rotated.kid), 60_000)).toBe(true);
    expect(await published()).toContain(oldKid);
  }
});

test("a worker killed in the middle of a drain: the other worker takes its job over, in well under graphile-worker's four hours", async () => {
  // A test trigger holds the drain that applies this user.
  await db.owner.query(`
    create function authhub_private.test_hold() returns trigger language plpgsql as $$ begin perform pg_sleep(60); return new; end $$;
    create trigger test_hold before insert on authhub.users for each row when (new.email like 'held-%') execute function authhub_private.test_hold();`);
  const held = async () =>
    (
      await db.owner.query<{ locked_by: string }>(
        `select j.locked_by from graphile_worker.jobs j where j.task_identifier = 'clerk_event__apply' and j.locked_by is not null
           and exists (select 1 from pg_stat_activity a where a.datname = current_database() and a.wait_event = 'PgSleep' and a.query like '%clerk_drain%')`,
      )
    ).rows[0]?.locked_by;
  try {
    expect((await deliver(servers[0]!.base, clerkUserEvent("user.created", "user_held", "held-user@many.test", Date.now()), "msg_many_held")).status).toBe(202);
    expect(await eventually(async () => (await held()) !== undefined, 30_000)).toBe(true);
    const pool = (await held())!;
    const victim = workers.find((w) => w.lines().some((l) => l.msg === "worker started" && l.pool === pool));
    expect(victim).toBeDefined();
    victim!.child.kill("SIGKILL");
    await victim!.exited;
    // Its held statement would end with the sleep; the drain's transaction dies with it.
    await db.owner.query("select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and wait_event = 'PgSleep'");
  } finally {
    await db.owner.query("drop trigger test_hold on authhub.users; drop function authhub_private.test_hold()");
  }
  // The survivor finds the dead pool's job (its liveness lock is free), unlocks it and drains.
  const applied = async () => (await db.owner.query("select 1 from authhub.webhook_deliveries where svix_id = 'msg_many_held' and state = 'done'")).rowCount === 1;
  expect(await eventually(applied, 60_000)).toBe(true);
  expect((await db.owner.query("select 1 from authhub.users where external_id = 'user_held'")).rowCount).toBe(1);
  const survivor = workers.find((w) => w.child.exitCode === null && w.child.signalCode === null)!;
  expect(survivor.lines().some((l) => l.msg === "released the jobs of worker pools that are gone")).toBe(true);
  workers = [survivor];
});

test("graceful stop of every process", async () => {
  const codes = await Promise.all([...servers, ...workers].map((p) => p.stop("SIGTERM")));
  expect(codes).toEqual([0, 0, 0]);
});
