/**
 * Clerk webhooks (issue 7): Svix-signed deliveries into the inbox, applied by
 * the real graphile-worker task in order per entity, idempotently, never
 * letting an older event or a late update overwrite newer data or resurrect a
 * deleted user, with permanent failures recorded. A Clerk role change becomes
 * effective for the user's next request once its job has run.
 */
import type { AddressInfo } from "node:net";
import { jest } from "@jest/globals";
import { Logger, run, runOnce, type Task } from "graphile-worker";
import pg from "pg";
import request from "supertest";
import { Webhook } from "svix";
import { createWebhookEndpoint } from "../../server/webhooks/endpoints.js";
import { settingsStatement } from "../../db/claims.js";
import { jobSettings } from "../../worker/jobTransaction.js";
import { drainEndpoint } from "../../worker/tasks/clerk_event__apply.js";
import { tasks } from "../../worker/tasks/index.js";
import type { TestDatabase } from "../helpers/db.js";
import { cast, type Fixtures } from "../helpers/fixtures.js";
import { useFixtureServer, type TestServer } from "../helpers/server.js";

jest.setTimeout(60_000);

let db: TestDatabase;
let f: Fixtures;
let srv: TestServer;
let endpoint: { id: string; path: string; secret: string };
const ISSUER = "https://clerk.tenant-a.example";

useFixtureServer((database, fixtures, server) => {
  db = database;
  f = fixtures;
  srv = server;
});
beforeAll(async () => {
  endpoint = await createWebhookEndpoint(db.owner, srv.masterKey, { name: "Clerk", issuer: ISSUER, tenantId: f.a.id });
});

let seq = 0;
const now = () => Date.now();
/** A delivery as Svix sends it: signed with the endpoint's secret unless told otherwise. */
function deliver(event: unknown, options: { id?: string; secret?: string; timestamp?: Date; raw?: string; headers?: Record<string, string | undefined>; path?: string } = {}) {
  const id = options.id ?? `msg_${Date.now()}_${seq++}`;
  const body = options.raw ?? JSON.stringify(event);
  const timestamp = options.timestamp ?? new Date();
  const signature = new Webhook(options.secret ?? endpoint.secret).sign(id, timestamp, body);
  const headers: Record<string, string | undefined> = {
    "svix-id": id,
    "svix-timestamp": String(Math.floor(timestamp.getTime() / 1000)),
    "svix-signature": signature,
    ...options.headers,
  };
  let req = request(srv.app)
    .post(options.path ?? endpoint.path)
    .set("Content-Type", "application/json");
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) req = req.set(k, v);
  return req.send(body);
}

/**
 * Runs the worker (the real tasks, graphile-worker's runOnce) until every
 * delivery has been tried at least once. runOnce returns as soon as it finds no
 * job it can take, which a named queue still locked by the job just finished
 * can cause; the running worker (`npm start`) simply polls again.
 */
async function work() {
  const pool = new pg.Pool({ connectionString: db.ownerUrl, max: 2 });
  pool.on("error", () => undefined);
  pool.on("connect", (c) => c.on("error", () => undefined));
  try {
    for (let round = 0; round < 40; round++) {
      await runOnce({ pgPool: pool, taskList: tasks, noHandleSignals: true, logger: new Logger(() => () => undefined) });
      const untried = await pool.query("select 1 from authhub.webhook_deliveries where state = 'pending' and attempts = 0 limit 1");
      const due = await pool.query("select 1 from graphile_worker.jobs where run_at <= now() and locked_at is null and attempts = 0 limit 1");
      if (!untried.rowCount && !due.rowCount) break;
      await new Promise((r) => setTimeout(r, 25));
    }
  } finally {
    await pool.end();
  }
}

const userEvent = (type: string, id: string, email: string, updatedAt: number, extra: Record<string, unknown> = {}) => ({
  type,
  object: "event",
  timestamp: updatedAt,
  data: {
    id,
    object: "user",
    first_name: "Clerk",
    last_name: id,
    primary_email_address_id: `idn_${id}`,
    email_addresses: [{ id: `idn_${id}`, email_address: email }],
    updated_at: updatedAt,
    ...extra,
  },
});
const orgEvent = (type: string, id: string, slug: string, updatedAt: number) => ({
  type,
  object: "event",
  timestamp: updatedAt,
  data: { id, object: "organization", name: `Org ${slug}`, slug, updated_at: updatedAt },
});
const membershipEvent = (type: string, org: string, user: string, role: string, updatedAt: number) => ({
  type,
  object: "event",
  timestamp: updatedAt,
  data: { id: `orgmem_${org}_${user}`, object: "organization_membership", role, organization: { id: org }, public_user_data: { user_id: user }, updated_at: updatedAt },
});
const delivery = async (svixId: string) => (await db.owner.query("select state, attempts, last_error from authhub.webhook_deliveries where svix_id = $1", [svixId])).rows[0];

/** Runs fn with a test trigger (`before <event> on <table>`, for each row, running `body`), dropped after. */
async function withTrigger<T>(event: string, table: string, body: string, fn: () => Promise<T>): Promise<T> {
  await db.owner.query(`
    create function authhub_private.test_trigger() returns trigger language plpgsql as $$
    begin
      ${body}
      return new;
    end $$;
    create trigger test_trigger before ${event} on ${table} for each row execute function authhub_private.test_trigger();`);
  try {
    return await fn();
  } finally {
    await db.owner.query(`drop trigger if exists test_trigger on ${table}; drop function authhub_private.test_trigger()`);
  }
}
/** A drain held between two of its deliveries: inserting this user sleeps. */
const withSlowUser = <T>(externalId: string, seconds: number, fn: () => Promise<T>) =>
  withTrigger("insert", "authhub.users", `if new.external_id = ${pg.escapeLiteral(externalId)} then perform pg_sleep(${Number(seconds)}); end if;`, fn);
/** A passing failure, made to order: a deadlock wherever `condition` holds. */
const deadlockWhen = (condition: string) => `if ${condition} then raise exception 'deadlock detected' using errcode = '40P01'; end if;`;
/** Waits until a drain is inside that slow insert. */
async function untilSleeping() {
  const sleeping = async () => (await db.owner.query("select 1 from pg_stat_activity where wait_event = 'PgSleep' and datname = current_database()")).rowCount;
  for (let i = 0; i < 100 && !(await sleeping()); i++) await new Promise((r) => setTimeout(r, 20));
  expect(await sleeping()).toBe(1);
}
/** One drain of the endpoint through the task's own function, on a connection of its own. */
async function drainOnce() {
  const pool = new pg.Pool({ connectionString: db.ownerUrl, max: 1 });
  pool.on("error", () => undefined);
  try {
    const withPgClient = async <T>(fn: (c: pg.PoolClient) => Promise<T>) => {
      const c = await pool.connect();
      try {
        return await fn(c);
      } finally {
        c.release();
      }
    };
    return await drainEndpoint({ tenant_id: f.a.id, endpoint_id: endpoint.id }, { withPgClient });
  } finally {
    await pool.end();
  }
}

describe("receiving", () => {
  test("a signed delivery is stored and queued (202); a redelivery of the same id changes nothing (200)", async () => {
    const event = userEvent("user.created", "user_recv", "recv@tenant-a.test", now());
    const first = await deliver(event, { id: "msg_recv_1" });
    expect(first.status).toBe(202);
    const again = await deliver(event, { id: "msg_recv_1" });
    expect(again.status).toBe(200);
    expect(again.body).toEqual({ received: true, duplicate: true });
    const { rows } = await db.owner.query("select count(*)::int as n from authhub.webhook_deliveries where svix_id = 'msg_recv_1'");
    expect(rows[0].n).toBe(1);
    // Queued: the endpoint's drain (one job however many deliveries wait).
    const jobs = await db.owner.query("select j.task_identifier, p.payload from graphile_worker.jobs j join graphile_worker._private_jobs p on p.id = j.id where j.key = $1", [
      `clerk:${endpoint.id}`,
    ]);
    expect(jobs.rows).toEqual([{ task_identifier: "clerk_event__apply", payload: { tenant_id: f.a.id, endpoint_id: endpoint.id } }]);
  });

  test.each([
    ["a bad signature", { headers: { "svix-signature": "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" } }],
    ["no signature header", { headers: { "svix-signature": undefined } }],
    ["no id header", { headers: { "svix-id": undefined } }],
    ["a timestamp 6 minutes old", { timestamp: new Date(Date.now() - 360_000) }],
    ["a timestamp 6 minutes ahead", { timestamp: new Date(Date.now() + 360_000) }],
    ["another endpoint's secret", { secret: `whsec_${Buffer.from("another endpoint secret!!").toString("base64")}` }],
  ])("%s: 400 invalid_signature, nothing stored", async (_name, options) => {
    const before = (await db.owner.query("select count(*)::int as n from authhub.webhook_deliveries")).rows[0].n;
    const res = await deliver(userEvent("user.created", "user_bad", "bad@tenant-a.test", now()), options);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("invalid_signature");
    expect((await db.owner.query("select count(*)::int as n from authhub.webhook_deliveries")).rows[0].n).toBe(before);
  });

  test("several signatures with one valid pass", async () => {
    const id = "msg_multi_sig";
    const body = JSON.stringify(userEvent("user.created", "user_multi", "multi@tenant-a.test", now()));
    const timestamp = new Date();
    const good = new Webhook(endpoint.secret).sign(id, timestamp, body);
    const res = await request(srv.app)
      .post(endpoint.path)
      .set({ "svix-id": id, "svix-timestamp": String(Math.floor(timestamp.getTime() / 1000)), "svix-signature": `v1,bm90LXRoZS1zaWduYXR1cmUtYXQtYWxsLXJlYWxseQ== ${good}` })
      .set("Content-Type", "application/json")
      .send(body);
    expect(res.status).toBe(202);
  });

  test("an unknown or disabled endpoint is 404; a body over the limit is 413 before anything else", async () => {
    expect((await deliver({}, { path: "/webhooks/clerk/00000000-0000-4000-8000-000000000000" })).status).toBe(404);
    expect((await deliver({}, { path: "/webhooks/clerk/not-a-uuid" })).status).toBe(404);
    const big = "x".repeat(5 * 1024 * 1024);
    const res = await request(srv.app).post(endpoint.path).set("Content-Type", "application/json").send(`{"pad":"${big}"}`);
    expect(res.status).toBe(413);
    const off = await createWebhookEndpoint(db.owner, srv.masterKey, { name: "Off", issuer: ISSUER, tenantId: f.a.id });
    // Control: enabled, it takes a delivery.
    expect((await deliver(userEvent("user.created", "user_off", "off@tenant-a.test", now()), { id: "msg_off_1", path: off.path, secret: off.secret })).status).toBe(202);
    await db.owner.query("update authhub.webhook_endpoints set enabled = false where id = $1", [off.id]);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await deliver(userEvent("user.created", "user_off", "off@tenant-a.test", now()), { id: "msg_off_2", path: off.path, secret: off.secret })).status).toBe(404);
    expect(await delivery("msg_off_2")).toBeUndefined();
  });
});

describe("applying", () => {
  test("a user is created, updated, and an older update never overwrites a newer one; changes name the delivery", async () => {
    const t = now();
    await deliver(userEvent("user.created", "user_ada", "ada@tenant-a.test", t), { id: "msg_ada_1" });
    await deliver(userEvent("user.updated", "user_ada", "ada.l@tenant-a.test", t + 2000), { id: "msg_ada_3" });
    await deliver(userEvent("user.updated", "user_ada", "ada.old@tenant-a.test", t + 1000), { id: "msg_ada_2" });
    await work();
    const states = (await db.owner.query("select svix_id, state, attempts, last_error from authhub.webhook_deliveries where svix_id like 'msg_ada%' order by svix_id")).rows;
    if (states.some((r) => r.state === "pending")) throw new Error(`not applied: ${JSON.stringify(states)}`);
    const { rows } = await db.owner.query("select email, display_name, external_issuer from authhub.users where external_id = 'user_ada'");
    expect(rows).toEqual([{ email: "ada.l@tenant-a.test", display_name: "Clerk user_ada", external_issuer: ISSUER }]);
    expect(await delivery("msg_ada_2")).toMatchObject({ state: "skipped" });
    const audit = await db.owner.query("select actor from authhub.audit_events where table_name = 'users' and new ->> 'external_id' = 'user_ada' order by id");
    expect(audit.rows.map((r) => r.actor)).toEqual(["system:clerk-sync:msg_ada_1", "system:clerk-sync:msg_ada_3"]);
  });

  test("an update before its create applies the newest; a deletion leaves a tombstone a late update cannot pass", async () => {
    const t = now();
    await deliver(userEvent("user.updated", "user_bob", "bob.new@tenant-a.test", t + 1000), { id: "msg_bob_upd" });
    await deliver(userEvent("user.created", "user_bob", "bob@tenant-a.test", t), { id: "msg_bob_new" });
    await work();
    expect((await db.owner.query("select email from authhub.users where external_id = 'user_bob'")).rows).toEqual([{ email: "bob.new@tenant-a.test" }]);
    await deliver({ type: "user.deleted", object: "event", timestamp: t + 2000, data: { id: "user_bob", object: "user", deleted: true } }, { id: "msg_bob_del" });
    await deliver(userEvent("user.updated", "user_bob", "bob.zombie@tenant-a.test", t + 3000), { id: "msg_bob_late" });
    await work();
    expect((await db.owner.query("select 1 from authhub.users where external_id = 'user_bob'")).rowCount).toBe(0);
    expect(await delivery("msg_bob_late")).toMatchObject({ state: "skipped" });
  });

  test("a membership before its organization waits, and lands when the organization does; a role change is effective at the next request", async () => {
    const t = now();
    await deliver(userEvent("user.created", "user_cy", "cy@tenant-a.test", t), { id: "msg_cy" });
    await deliver(membershipEvent("organizationMembership.created", "org_sales", "user_cy", "org:member", t), { id: "msg_cy_mem" });
    await work();
    expect(await delivery("msg_cy_mem")).toMatchObject({ state: "pending", last_error: expect.stringMatching(/waiting/) });
    await deliver(orgEvent("organization.created", "org_sales", "sales", t), { id: "msg_sales" });
    await work();
    expect(await delivery("msg_cy_mem")).toMatchObject({ state: "done" });
    const member = (
      await db.owner.query("select u.id, m.organization_id, m.level from authhub.memberships m join authhub.users u on u.id = m.user_id where u.external_id = 'user_cy'")
    ).rows[0];
    expect(member.level).toBe("USER");

    // org:member → org:admin in Clerk: once the job has run, the user's next request acts as ORG_ADMIN there.
    const asCy = { userId: member.id, tenantId: f.a.id, level: "ORG_ADMIN" as const };
    const canWrite = async () =>
      (
        await request(srv.app)
          .post("/v1/authorize")
          .set("Authorization", `Bearer ${await srv.mint(asCy)}`)
          .send({ permission: "org:write", organizationId: member.organization_id })
      ).body.allowed;
    expect(await canWrite()).toBe(false);
    const started = performance.now();
    await deliver(membershipEvent("organizationMembership.updated", "org_sales", "user_cy", "org:admin", t + 1000), { id: "msg_cy_admin" });
    await work();
    expect(await canWrite()).toBe(true);
    process.stderr.write(`webhook-to-effect (delivery, job, next request) in-process: ${(performance.now() - started).toFixed(0)} ms\n`);
  });

  test("malformed bodies and unknown types are recorded as failed once, not retried", async () => {
    const res = await deliver(null, { id: "msg_not_json", raw: "{this is not json" });
    expect(res.status).toBe(202);
    await deliver({ type: "session.created", object: "event", data: { id: "sess_1" } }, { id: "msg_unknown" });
    await deliver(orgEvent("organization.created", "org_dup", "child", now()), { id: "msg_slug_taken" });
    await work();
    expect(await delivery("msg_not_json")).toMatchObject({ state: "failed", attempts: 1, last_error: "the body is not JSON" });
    expect(await delivery("msg_unknown")).toMatchObject({ state: "failed", attempts: 1, last_error: "unknown event type session.created" });
    // Recorded with a reason a tenant admin may read, not the database's message (which names the constraint).
    expect(await delivery("msg_slug_taken")).toMatchObject({ state: "failed", attempts: 1, last_error: "another record already has this slug" });
    // Nothing left to retry: no drain due again, none failed.
    const left = await db.owner.query("select count(*)::int as n from graphile_worker.jobs where task_identifier = 'clerk_event__apply' and (attempts > 0 or run_at <= now())");
    expect(left.rows[0].n).toBe(0);
  });

  test("tenant admins read the inbox and manage endpoints; nobody else, and no other tenant", async () => {
    const seen = async (actor: Parameters<TestServer["mint"]>[0]) =>
      (
        await request(srv.app)
          .post("/graphql")
          .set("Authorization", `Bearer ${await srv.mint(actor)}`)
          .send({ query: "{ webhookDeliveries(first: 100) { totalCount nodes { svixId state attempts lastError } } webhookEndpoints { nodes { name enabled roleMapping } } }" })
      ).body;
    const admin = await seen(cast(f, f.a).tenantAdmin);
    expect(admin.data.webhookDeliveries.totalCount).toBeGreaterThan(5);
    expect(admin.data.webhookEndpoints.nodes.map((n: { name: string }) => n.name)).toContain("Clerk");
    expect(JSON.stringify(admin)).not.toContain(endpoint.secret);
    const orgAdmin = await seen(cast(f, f.a).orgAdmin);
    expect(orgAdmin.data).toEqual({ webhookDeliveries: { totalCount: 0, nodes: [] }, webhookEndpoints: { nodes: [] } });
    const other = await seen(cast(f, f.b).tenantAdmin);
    expect(other.data.webhookDeliveries.totalCount).toBe(0);

    const created = await request(srv.app)
      .post("/graphql")
      .set("Authorization", `Bearer ${await srv.mint(cast(f, f.b).tenantAdmin)}`)
      .send({
        query: `mutation($m: JSON) { createWebhookEndpoint(input: { name: "B's Clerk", issuer: "https://clerk.b.example", roleMapping: $m }) { path secret webhookEndpoint { rowId tenantId } } }`,
        variables: { m: { "org:admin": "ORG_ADMIN", "org:viewer": "USER" } },
      });
    expect(created.body.errors).toBeUndefined();
    expect(created.body.data.createWebhookEndpoint).toMatchObject({
      path: expect.stringMatching(/^\/webhooks\/clerk\//),
      secret: expect.stringMatching(/^whsec_/),
      webhookEndpoint: { tenantId: f.b.id },
    });
    const refused = await request(srv.app)
      .post("/graphql")
      .set("Authorization", `Bearer ${await srv.mint(cast(f, f.a).orgAdmin)}`)
      .send({ query: `mutation { createWebhookEndpoint(input: { name: "nope", issuer: "https://x.example" }) { path } }` });
    expect(refused.body.errors[0].extensions.code).toBe("forbidden");
    const badMapping = await request(srv.app)
      .post("/graphql")
      .set("Authorization", `Bearer ${await srv.mint(cast(f, f.b).tenantAdmin)}`)
      .send({
        query: `mutation($m: JSON) { createWebhookEndpoint(input: { name: "bad", issuer: "https://x.example", roleMapping: $m }) { path } }`,
        variables: { m: { "org:admin": "SUPER_ADMIN" } },
      });
    expect(badMapping.body.errors[0].extensions.code).toBe("invalid_input");
  });
});

describe("crashes", () => {
  test("a job killed before its commit changes nothing; run again, it applies once; a rerun after its commit changes nothing", async () => {
    const t = now();
    await deliver(userEvent("user.created", "user_dee", "dee@tenant-a.test", t), { id: "msg_dee" });
    // The worker dies mid-job: its transaction never commits.
    const client = await db.owner.connect();
    try {
      await client.query("begin");
      await client.query("select set_config('role', 'authhub_worker', true)");
      expect((await client.query("select authhub_private.clerk_apply($1, $2, 'msg_dee') as o", [f.a.id, endpoint.id])).rows[0].o).toBe("done");
      await client.query("rollback");
    } finally {
      client.release();
    }
    expect((await db.owner.query("select 1 from authhub.users where external_id = 'user_dee'")).rowCount).toBe(0);
    expect(await delivery("msg_dee")).toMatchObject({ state: "pending" });
    // Restarted, the job runs and applies once.
    await work();
    expect(await delivery("msg_dee")).toMatchObject({ state: "done" });
    // A rerun after the commit (the worker died before recording the job as complete) is a no-op.
    const { clerk_event__apply } = await import("../../worker/tasks/clerk_event__apply.js");
    const pool = new pg.Pool({ connectionString: db.ownerUrl, max: 1 });
    pool.on("error", () => undefined);
    try {
      const helpers = {
        withPgClient: async (fn: (c: pg.PoolClient) => Promise<unknown>) => {
          const c = await pool.connect();
          try {
            return await fn(c);
          } finally {
            c.release();
          }
        },
        logger: { warn: () => undefined },
      };
      await clerk_event__apply({ tenant_id: f.a.id, endpoint_id: endpoint.id }, helpers as never);
    } finally {
      await pool.end();
    }
    const events = await db.owner.query("select count(*)::int as n from authhub.audit_events where table_name = 'users' and new ->> 'external_id' = 'user_dee'");
    expect(events.rows[0].n).toBe(1);
  });
});

describe("drains", () => {
  test("a drain job that died with its worker is taken over by the sweep once its deliveries are overdue", async () => {
    // A clean slate: a look queued by an earlier test ("clerk-later:…", due in two
    // seconds) would otherwise drain the endpoint in the middle of this one.
    await db.owner.query("delete from graphile_worker._private_jobs where key like '%' || $1", [endpoint.id]);
    await deliver(userEvent("user.created", "user_orphan", "orphan@tenant-a.test", now()), { id: "msg_orphan" });
    // A worker took the endpoint's drain and died: the job stays locked (graphile-worker's 4 h lock).
    await db.owner.query("update graphile_worker._private_jobs set locked_at = now(), locked_by = 'dead-worker', attempts = 1 where key = $1", [`clerk:${endpoint.id}`]);
    // The only job of the endpoint is the dead worker's.
    expect((await db.owner.query("select key, locked_by from graphile_worker._private_jobs where key like '%' || $1", [endpoint.id])).rows).toEqual([
      { key: `clerk:${endpoint.id}`, locked_by: "dead-worker" },
    ]);
    await work();
    expect(await delivery("msg_orphan")).toMatchObject({ state: "pending", attempts: 0 });
    // Not yet overdue: the sweep leaves it alone.
    const sweep = async () => {
      const c = await db.owner.connect();
      try {
        await c.query("begin");
        await c.query("select set_config('role', 'authhub_worker', true)");
        const n = (await c.query("select authhub_private.sweep_clerk_deliveries() as n")).rows[0].n;
        await c.query("commit");
        return n;
      } finally {
        c.release();
      }
    };
    expect(await sweep()).toBe(0);
    await db.owner.query("update authhub.webhook_deliveries set due_at = now() - interval '2 minutes' where svix_id = 'msg_orphan'");
    expect(await sweep()).toBe(1);
    await work();
    expect(await delivery("msg_orphan")).toMatchObject({ state: "done", attempts: 1 });
  });

  test("a delivery that fails for a passing reason is undone alone, backs off, and applies on its next try", async () => {
    const t = now();
    // A passing failure, made to order: a deadlock on one user's row.
    await withTrigger("insert", "authhub.users", deadlockWhen("new.external_id = 'user_boom'"), async () => {
      await deliver(userEvent("user.created", "user_boom", "boom@tenant-a.test", t), { id: "msg_boom" });
      await deliver(userEvent("user.created", "user_calm", "calm@tenant-a.test", t), { id: "msg_calm" });
      await work();
      expect(await delivery("msg_calm")).toMatchObject({ state: "done" });
      expect(await delivery("msg_boom")).toMatchObject({ state: "pending", attempts: 1, last_error: "a temporary failure (SQLSTATE 40P01); tried again later" });
      const { rows } = await db.owner.query("select due_at > now() as later from authhub.webhook_deliveries where svix_id = 'msg_boom'");
      expect(rows[0].later).toBe(true);
      // A drain is queued for when it is due again.
      const later = await db.owner.query("select run_at > now() as later from graphile_worker.jobs where key = $1", [`clerk-later:${endpoint.id}`]);
      expect(later.rows).toEqual([{ later: true }]);
      // A twelfth passing failure is final.
      await deliver(userEvent("user.created", "user_boom", "boom@tenant-a.test", t), { id: "msg_boom_2" });
      await db.owner.query("update authhub.webhook_deliveries set attempts = 11 where svix_id = 'msg_boom_2'");
      await work();
      expect(await delivery("msg_boom_2")).toMatchObject({ state: "failed", attempts: 12, last_error: "a temporary failure (SQLSTATE 40P01), 12 times" });
    });
    // The deadlock has passed: due again, it applies.
    await db.owner.query("update authhub.webhook_deliveries set due_at = now() where svix_id = 'msg_boom'");
    await db.owner.query("update graphile_worker._private_jobs set run_at = now() where key = $1", [`clerk-later:${endpoint.id}`]);
    await work();
    expect(await delivery("msg_boom")).toMatchObject({ state: "done", attempts: 2, last_error: null });
  });
});

describe("hand-off to the running drain", () => {
  const clerkJobs = async () =>
    (
      await db.owner.query(
        "select key, run_at > now() + interval '1 second' and run_at < now() + interval '3 seconds' as in_two_seconds from graphile_worker.jobs where key like '%' || $1 order by key",
        [endpoint.id],
      )
    ).rows;
  /** A drain held open: the endpoint's drain lock taken, as a running drain holds it, in a transaction left open. */
  const openDrain = async () => {
    const client = await db.owner.connect();
    await client.query("begin");
    await client.query("select pg_advisory_xact_lock(authhub_private.clerk_endpoint_lock('clerk-drain', $1))", [endpoint.id]);
    await client.query(settingsStatement(jobSettings("clerk_event__apply")));
    return client;
  };
  const waitingOnLock = async (client: pg.PoolClient) => {
    const pid = (client as unknown as { processID: number }).processID;
    const { rows } = await db.owner.query("select wait_event_type, wait_event from pg_stat_activity where pid = $1", [pid]);
    return rows[0];
  };

  test("a delivery that arrives while a drain runs queues no job; the drain waits for those in flight, then queues what they left", async () => {
    await work();
    expect(await clerkJobs()).toEqual([]);
    const drain = await openDrain();
    const accepting = await db.auth.connect();
    try {
      // While the drain runs: stored (202), and no job of its own.
      expect((await deliver(userEvent("user.created", "user_hand1", "hand1@tenant-a.test", now()), { id: "msg_hand1" })).status).toBe(202);
      expect(await clerkJobs()).toEqual([]);
      // A second one is in flight (stored, not yet committed) when the drain has applied its batch.
      await accepting.query("begin");
      const body = JSON.stringify(userEvent("user.created", "user_hand2", "hand2@tenant-a.test", now()));
      expect(
        (await accepting.query("select authhub_private.accept_webhook($1, 'msg_hand2', 'user.created', 'user:user_hand2', $2) as stored", [endpoint.id, body])).rows[0].stored,
      ).toBe(true);
      let finished = false;
      const draining = drain.query("select svix_id, outcome from authhub_private.clerk_drain($1, $2, 50)", [f.a.id, endpoint.id]).then((r) => {
        finished = true;
        return r.rows;
      });
      // The drain applied the first and now waits for the second to commit before it looks for more.
      for (let i = 0; i < 100 && (await waitingOnLock(drain))?.wait_event !== "advisory"; i++) await new Promise((r) => setTimeout(r, 20));
      expect(await waitingOnLock(drain)).toEqual({ wait_event_type: "Lock", wait_event: "advisory" });
      expect(finished).toBe(false);
      await accepting.query("commit");
      expect(await draining).toEqual([{ svix_id: "msg_hand1", outcome: "done" }]);
      await drain.query("commit");
    } finally {
      await drain.query("rollback").catch(() => undefined);
      drain.release();
      await accepting.query("rollback").catch(() => undefined);
      accepting.release();
    }
    // The look queued the next drain for what arrived meanwhile; it applies it.
    expect(await clerkJobs()).toEqual([{ key: `clerk:${endpoint.id}`, in_two_seconds: false }]);
    await work();
    expect(await delivery("msg_hand1")).toMatchObject({ state: "done", attempts: 1 });
    expect(await delivery("msg_hand2")).toMatchObject({ state: "done", attempts: 1 });
  });

  test("a drain that finds another running returns at once, and leaves a look two seconds on in case that one fails", async () => {
    await work();
    expect((await deliver(userEvent("user.created", "user_hand3", "hand3@tenant-a.test", now()), { id: "msg_hand3" })).status).toBe(202);
    const drain = await openDrain();
    try {
      // The drain job the delivery queued: the lock is taken, so it takes nothing.
      expect(await drainOnce()).toEqual([]);
      expect(await delivery("msg_hand3")).toMatchObject({ state: "pending", attempts: 0 });
      // The running drain fails (rolls back): the look left behind brings the delivery in.
      await drain.query("rollback");
      expect(await clerkJobs()).toEqual([
        { key: `clerk-later:${endpoint.id}`, in_two_seconds: true },
        { key: `clerk:${endpoint.id}`, in_two_seconds: false },
      ]);
    } finally {
      await drain.query("rollback").catch(() => undefined);
      drain.release();
    }
    await db.owner.query("delete from graphile_worker._private_jobs where key = $1", [`clerk:${endpoint.id}`]);
    await db.owner.query("update graphile_worker._private_jobs set run_at = now() where key = $1", [`clerk-later:${endpoint.id}`]);
    await work();
    expect(await delivery("msg_hand3")).toMatchObject({ state: "done", attempts: 1 });
  });

  test("a redelivery of an id the running drain has just applied waits for that drain, then is a 200 that changes nothing", async () => {
    await work();
    // A drain slowed down after its first delivery: applied, not yet committed, when the redelivery comes.
    await withSlowUser("user_z_slow", 1.5, async () => {
      const fast = userEvent("user.created", "user_a_fast", "fast@tenant-a.test", now());
      expect((await deliver(fast, { id: "msg_fast" })).status).toBe(202);
      expect((await deliver(userEvent("user.created", "user_z_slow", "slow@tenant-a.test", now()), { id: "msg_slow" })).status).toBe(202);
      const working = work();
      await untilSleeping();
      // Its insert waits for the drain's row; it holds nothing the drain's look waits for, so neither fails.
      const again = await deliver(fast, { id: "msg_fast" });
      expect(again.status).toBe(200);
      expect(again.body).toEqual({ received: true, duplicate: true });
      await working;
    });
    expect(await delivery("msg_fast")).toMatchObject({ state: "done", attempts: 1 });
    expect(await delivery("msg_slow")).toMatchObject({ state: "done", attempts: 1 });
  });

  test("a drain applies what is handed to it while it runs before it ends, with no job of its own", async () => {
    await work();
    await withSlowUser("user_slow_2", 1, async () => {
      expect((await deliver(userEvent("user.created", "user_slow_2", "slow2@tenant-a.test", now()), { id: "msg_slow_2" })).status).toBe(202);
      // This test runs the drain itself, so the job that delivery queued goes.
      await db.owner.query("delete from graphile_worker._private_jobs where key = $1", [`clerk:${endpoint.id}`]);
      const draining = drainOnce();
      await untilSleeping();
      expect((await deliver(userEvent("user.created", "user_handed", "handed@tenant-a.test", now()), { id: "msg_handed" })).status).toBe(202);
      const drained = await draining;
      expect(drained.map((d) => [d.svix_id, d.outcome])).toEqual([
        ["msg_slow_2", "done"],
        ["msg_handed", "done"],
      ]);
      expect(drained[1]!.started_ms).toBeGreaterThan(drained[0]!.started_ms + 900);
    });
    // Nothing left, so nothing queued.
    expect(await clerkJobs()).toEqual([]);
  });

  test("a waiting membership that fails for a passing reason keeps waiting; failing for good, it waits for nothing", async () => {
    await work();
    // A passing failure, made to order, where a waiting membership is put off again (or, the 12th time, given up).
    const putOff = deadlockWhen("new.svix_id like 'msg_wait_boom%' and new.last_error in ('waiting for its organization or user', 'its organization or user never arrived')");
    try {
      const t = now();
      await deliver(membershipEvent("organizationMembership.created", "org_never_2", "user_never_2", "org:member", t), { id: "msg_wait_boom_1" });
      await deliver(membershipEvent("organizationMembership.created", "org_never_3", "user_never_3", "org:member", t), { id: "msg_wait_boom_12" });
      await db.owner.query(
        "update authhub.webhook_deliveries set waiting_for = array['organization:' || split_part(entity, ':', 2)], attempts = case when svix_id = 'msg_wait_boom_12' then 11 else 1 end where svix_id like 'msg_wait_boom%'",
      );
      await withTrigger("update", "authhub.webhook_deliveries", putOff, work);
      const rows = (
        await db.owner.query("select svix_id, state, attempts, waiting_for, last_error from authhub.webhook_deliveries where svix_id like 'msg_wait_boom%' order by svix_id")
      ).rows;
      expect(rows).toEqual([
        {
          svix_id: "msg_wait_boom_1",
          state: "pending",
          attempts: 2,
          waiting_for: ["organization:org_never_2"],
          last_error: "a temporary failure (SQLSTATE 40P01); tried again later",
        },
        { svix_id: "msg_wait_boom_12", state: "failed", attempts: 12, waiting_for: null, last_error: "a temporary failure (SQLSTATE 40P01), 12 times" },
      ]);
    } finally {
      await db.owner.query(
        "update authhub.webhook_deliveries set state = 'skipped', waiting_for = null, processed_at = now() where svix_id like 'msg_wait_boom%' and state = 'pending'",
      );
      // The look its backoff left behind.
      await db.owner.query("delete from graphile_worker._private_jobs where key = $1", [`clerk-later:${endpoint.id}`]);
    }
  });

  test("a look later keeps the earliest time asked for: two seconds on replaces a backoff's hour, not the other way round", async () => {
    const queueIn = (seconds: number) => db.owner.query("select authhub_private.queue_clerk_drain($1, $2, now() + make_interval(secs => $3))", [f.a.id, endpoint.id, seconds]);
    const laterIn = async () =>
      (await db.owner.query("select round(extract(epoch from run_at - now()))::int as s from graphile_worker.jobs where key = $1", [`clerk-later:${endpoint.id}`])).rows.map(
        (r) => r.s,
      );
    // From a clean slate: no look left by an earlier test.
    await db.owner.query("delete from graphile_worker._private_jobs where key = $1", [`clerk-later:${endpoint.id}`]);
    try {
      await queueIn(3600);
      expect(await laterIn()).toEqual([3600]);
      await queueIn(2);
      expect(await laterIn()).toEqual([2]);
      await queueIn(10);
      expect(await laterIn()).toEqual([2]);
    } finally {
      await db.owner.query("delete from graphile_worker._private_jobs where key = $1", [`clerk-later:${endpoint.id}`]);
    }
  });

  test("a burst of concurrent deliveries under a running worker is applied whole, each once, without the sweep", async () => {
    await work();
    const pool = new pg.Pool({ connectionString: db.ownerUrl, max: 6 });
    pool.on("error", () => undefined);
    pool.on("connect", (c) => c.on("error", () => undefined));
    // The worker as `npm start` runs it (concurrency 4), without the crontab (no sweep), counting its drains.
    let drains = 0;
    const taskList = {
      ...tasks,
      clerk_event__apply: (async (payload, helpers) => {
        drains++;
        return tasks.clerk_event__apply!(payload, helpers);
      }) as Task,
    };
    const runner = await run({ pgPool: pool, taskList, concurrency: 4, noHandleSignals: true, pollInterval: 60_000, logger: new Logger(() => () => undefined) });
    const ids = Array.from({ length: 120 }, (_, i) => `msg_burst_${i}`);
    try {
      let next = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (next < ids.length) {
            const i = next++;
            expect((await deliver(userEvent("user.created", `user_burst_${i}`, `burst${i}@tenant-a.test`, now()), { id: ids[i] })).status).toBe(202);
          }
        }),
      );
      // Applied without a poll (one a minute) or a sweep (not scheduled): every drain came from a delivery or a look.
      let done = 0;
      for (let i = 0; i < 200 && done < ids.length; i++) {
        await new Promise((r) => setTimeout(r, 50));
        done = (await db.owner.query("select count(*)::int as n from authhub.webhook_deliveries where svix_id = any($1) and state = 'done'", [ids])).rows[0].n;
      }
      expect(done).toBe(ids.length);
    } finally {
      await runner.stop();
      await pool.end();
    }
    const { rows } = await db.owner.query("select attempts, count(*)::int as n from authhub.webhook_deliveries where svix_id = any($1) group by attempts", [ids]);
    expect(rows).toEqual([{ attempts: 1, n: ids.length }]);
    const users = await db.owner.query("select count(*)::int as n from authhub.users where external_id like 'user_burst_%'");
    expect(users.rows[0].n).toBe(ids.length);
    // Handed off: far fewer drains than deliveries (one job each would be 120).
    expect(drains).toBeGreaterThan(0);
    expect(drains).toBeLessThan(ids.length / 2);
  });

  test("a drain that has run a while does not take again, in its next pass, a delivery it has just put off", async () => {
    await work();
    try {
      await withSlowUser("user_slow_3", 2.5, async () => {
        const t = now();
        expect((await deliver(userEvent("user.created", "user_slow_3", "slow3@tenant-a.test", t), { id: "msg_slow_3" })).status).toBe(202);
        // Its organization never came: put off for two seconds, which the slow user already took.
        expect((await deliver(membershipEvent("organizationMembership.created", "org_never", "user_slow_3", "org:member", t), { id: "msg_put_off" })).status).toBe(202);
        await db.owner.query("delete from graphile_worker._private_jobs where key = $1", [`clerk:${endpoint.id}`]);
        const drained = await drainOnce();
        expect(drained.map((d) => [d.svix_id, d.outcome])).toEqual([
          ["msg_slow_3", "done"],
          ["msg_put_off", "retry"],
        ]);
      });
      const { rows } = await db.owner.query("select attempts, due_at > now() + interval '1 second' as later from authhub.webhook_deliveries where svix_id = 'msg_put_off'");
      expect(rows).toEqual([{ attempts: 1, later: true }]);
    } finally {
      await db.owner.query("delete from graphile_worker._private_jobs where key like '%' || $1", [endpoint.id]);
    }
  });
});

describe("review: what a delivery may not do", () => {
  test("it never changes or deletes an admin, nor a user another provider speaks for", async () => {
    await db.owner.query("update authhub.users set external_id = 'user_root', external_issuer = 'https://okta.example' where id = $1", [f.superAdmin]);
    await db.owner.query("update authhub.users set external_id = 'user_admin', external_issuer = $2 where id = $1", [f.a.users.tenantAdmin, ISSUER]);
    const t = now();
    await deliver(userEvent("user.updated", "user_root", "attacker@evil.example", t), { id: "msg_evil_root" });
    await deliver({ type: "user.deleted", object: "event", timestamp: t, data: { id: "user_root", deleted: true } }, { id: "msg_evil_root_del" });
    await deliver(userEvent("user.updated", "user_admin", "attacker2@evil.example", t), { id: "msg_evil_admin" });
    await work();
    for (const id of ["msg_evil_root", "msg_evil_root_del", "msg_evil_admin"]) expect(await delivery(id)).toMatchObject({ state: "failed" });
    const { rows } = await db.owner.query("select email from authhub.users where id = any($1) order by email", [[f.superAdmin, f.a.users.tenantAdmin]]);
    expect(rows.map((r) => r.email)).toEqual(["root@tenant-a.test", "tenant-admin@tenant-a.test"]);
  });

  test("an unmapped role is USER; a membership may end and begin again", async () => {
    const t = now();
    await deliver(userEvent("user.created", "user_eve", "eve@tenant-a.test", t), { id: "msg_eve" });
    await deliver(orgEvent("organization.created", "org_ops", "ops", t), { id: "msg_ops" });
    await deliver(membershipEvent("organizationMembership.created", "org_ops", "user_eve", "org:admin", t), { id: "msg_eve_1" });
    await work();
    await deliver(membershipEvent("organizationMembership.updated", "org_ops", "user_eve", "org:billing", t + 1000), { id: "msg_eve_2" });
    await work();
    const level = async () => (await db.owner.query("select m.level from authhub.memberships m join authhub.users u on u.id = m.user_id where u.external_id = 'user_eve'")).rows;
    expect(await level()).toEqual([{ level: "USER" }]);
    await deliver(membershipEvent("organizationMembership.deleted", "org_ops", "user_eve", "org:billing", t + 2000), { id: "msg_eve_3" });
    await work();
    expect(await level()).toEqual([]);
    await deliver(membershipEvent("organizationMembership.created", "org_ops", "user_eve", "org:member", t + 3000), { id: "msg_eve_4" });
    await work();
    expect(await level()).toEqual([{ level: "USER" }]);
  });

  test("a membership deletion removes that one membership, no other in the organization", async () => {
    const t = now();
    await deliver(orgEvent("organization.created", "org_pair", "pair", t), { id: "msg_pair" });
    for (const u of ["user_p1", "user_p2"]) {
      await deliver(userEvent("user.created", u, `${u}@tenant-a.test`, t), { id: `msg_${u}` });
      await deliver(membershipEvent("organizationMembership.created", "org_pair", u, "org:member", t), { id: `msg_${u}_mem` });
    }
    await work();
    // A tenant admin added by hand to the Clerk-made organization.
    const org = (await db.owner.query("select id from authhub.organizations where external_id = 'org_pair'")).rows[0].id;
    await db.owner.query("insert into authhub.memberships (tenant_id, organization_id, user_id, level) values ($1, $2, $3, 'ORG_ADMIN')", [f.a.id, org, f.a.users.tenantAdmin]);
    await deliver(membershipEvent("organizationMembership.deleted", "org_pair", "user_p1", "org:member", t + 1000), { id: "msg_p1_gone" });
    await work();
    expect(await delivery("msg_p1_gone")).toMatchObject({ state: "done" });
    const left = (await db.owner.query("select user_id from authhub.memberships where organization_id = $1 order by user_id", [org])).rows.map((r) => r.user_id);
    const p2 = (await db.owner.query("select id from authhub.users where external_id = 'user_p2'")).rows[0].id;
    expect(left.sort()).toEqual([p2, f.a.users.tenantAdmin].sort());
  });

  test("bad versions, future dates and inconsistent entities fail once; long ids are fine", async () => {
    const t = now();
    await deliver(userEvent("user.created", "user_v", "v@tenant-a.test", 0, { updated_at: "abc" }), { id: "msg_bad_version" });
    await deliver(userEvent("user.created", "user_f", "f@tenant-a.test", t + 86_400_000), { id: "msg_future" });
    const long = `user_${"x".repeat(95)}`;
    await deliver(userEvent("user.created", long, "long@tenant-a.test", t), { id: "msg_long" });
    // Signed, but the body the receiver could not read names its entity differently once parsed.
    const raw = JSON.stringify(userEvent("user.created", "user_nul", "nul@tenant-a.test", t)).replace('"Clerk"', '"Cl\u0000erk"');
    await deliver(null, { id: "msg_nul", raw });
    await work();
    expect(await delivery("msg_bad_version")).toMatchObject({ state: "failed", attempts: 1 });
    expect(await delivery("msg_future")).toMatchObject({ state: "failed", attempts: 1, last_error: "the event is dated in the future" });
    expect(await delivery("msg_long")).toMatchObject({ state: "done" });
    expect(await delivery("msg_nul")).toMatchObject({ state: "failed", attempts: 1 });
  });

  test("disabling an endpoint stops what it had already queued", async () => {
    const other = await createWebhookEndpoint(db.owner, srv.masterKey, { name: "Soon off", issuer: ISSUER, tenantId: f.a.id });
    await deliver(userEvent("user.created", "user_late", "late@tenant-a.test", now()), { id: "msg_queued", path: other.path, secret: other.secret });
    await db.owner.query("update authhub.webhook_endpoints set enabled = false where id = $1", [other.id]);
    await work();
    expect((await db.owner.query("select state from authhub.webhook_deliveries where svix_id = 'msg_queued'")).rows).toEqual([{ state: "skipped" }]);
    expect((await db.owner.query("select 1 from authhub.users where external_id = 'user_late'")).rowCount).toBe(0);
  });
});

test("a membership acts only in organizations its endpoint made, for its own plain users", async () => {
  const other = await createWebhookEndpoint(db.owner, srv.masterKey, { name: "Clerk B", issuer: "https://clerk.other.example", tenantId: f.a.id });
  const t = now();
  await deliver(orgEvent("organization.created", "org_mine", "mine", t), { id: "msg_mine" });
  await deliver(userEvent("user.created", "user_theirs", "theirs@tenant-a.test", t), { id: "msg_theirs", path: other.path, secret: other.secret });
  await deliver(userEvent("user.created", "user_ours", "ours@tenant-a.test", t), { id: "msg_ours" });
  await work();
  // Both exist, each made by its own endpoint; endpoint A's own user joins its organization (control).
  expect(await delivery("msg_mine")).toMatchObject({ state: "done" });
  expect(await delivery("msg_theirs")).toMatchObject({ state: "done" });
  await deliver(membershipEvent("organizationMembership.created", "org_mine", "user_ours", "org:admin", t), { id: "msg_own_member" });
  await work();
  expect(await delivery("msg_own_member")).toMatchObject({ state: "done" });
  // Endpoint B tries to make its user an ORG_ADMIN in endpoint A's organization.
  await deliver(membershipEvent("organizationMembership.created", "org_mine", "user_theirs", "org:admin", t), { id: "msg_cross", path: other.path, secret: other.secret });
  // Endpoint A tries to give a membership to endpoint B's user.
  await deliver(membershipEvent("organizationMembership.created", "org_mine", "user_theirs", "org:admin", t), { id: "msg_cross_2" });
  await work();
  expect((await db.owner.query("select state, last_error from authhub.webhook_deliveries where svix_id = any($1) order by svix_id", [["msg_cross", "msg_cross_2"]])).rows).toEqual([
    { state: "failed", last_error: "that organization or user is not this endpoint's to manage" },
    { state: "failed", last_error: "that organization or user is not this endpoint's to manage" },
  ]);
  const { rows } = await db.owner.query("select 1 from authhub.memberships m join authhub.users u on u.id = m.user_id where u.external_id = 'user_theirs'");
  expect(rows).toEqual([]);
});

describe("reconciliation", () => {
  /** A local Clerk Backend API with its response shapes: users as an array (and /count), the rest as { data, total_count }. */
  async function fakeClerk(state: {
    users: Record<string, unknown>[];
    orgs: Record<string, unknown>[];
    memberships: Record<string, Record<string, unknown>[]>;
    /** What /v1/users/count says, when it should disagree with the listing. */
    userCount?: number;
    /** Objects a direct GET finds even when the listing missed them. */
    direct?: Record<string, unknown>[];
    /** Memberships a user's own list shows even when the organization's listing missed them. */
    directMemberships?: Record<string, unknown>[];
  }) {
    const http = await import("node:http");
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      seen.push(String(req.headers.authorization));
      const url = new URL(req.url!, "http://clerk");
      const page = <T>(xs: T[]) => xs.slice(Number(url.searchParams.get("offset") ?? 0), Number(url.searchParams.get("offset") ?? 0) + Number(url.searchParams.get("limit") ?? 10));
      res.setHeader("Content-Type", "application/json");
      const m = /^\/v1\/organizations\/([^/]+)\/memberships$/.exec(url.pathname);
      const mine = /^\/v1\/users\/([^/]+)\/organization_memberships$/.exec(url.pathname);
      const one = /^\/v1\/(users|organizations)\/([^/]+)$/.exec(url.pathname);
      if (url.pathname === "/v1/users") return res.end(JSON.stringify(page(state.users)));
      if (url.pathname === "/v1/users/count") return res.end(JSON.stringify({ object: "total_count", total_count: state.userCount ?? state.users.length }));
      if (url.pathname === "/v1/organizations") return res.end(JSON.stringify({ data: page(state.orgs), total_count: state.orgs.length }));
      if (m) {
        const list = state.memberships[m[1]!] ?? [];
        return res.end(JSON.stringify({ data: page(list), total_count: list.length }));
      }
      if (mine) {
        const user = decodeURIComponent(mine[1]!);
        if (!state.users.some((u) => u.id === user)) {
          res.statusCode = 404;
          return res.end(JSON.stringify({ errors: [{ code: "resource_not_found" }] }));
        }
        const list = [...Object.values(state.memberships).flat(), ...(state.directMemberships ?? [])].filter((x) => (x.public_user_data as { user_id: string }).user_id === user);
        return res.end(JSON.stringify({ data: page(list), total_count: list.length }));
      }
      if (one) {
        const found = [...(one[1] === "users" ? state.users : state.orgs), ...(state.direct ?? [])].find((x) => x.id === decodeURIComponent(one[2]!));
        res.statusCode = found ? 200 : 404;
        return res.end(JSON.stringify(found ?? { errors: [{ code: "resource_not_found" }] }));
      }
      res.statusCode = 404;
      res.end("{}");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, close: () => new Promise((r) => server.close(r)) };
  }

  /** An endpoint with a Clerk secret key, and a sender of deliveries signed for it. */
  async function reconciledEndpoint(name: string) {
    const clerkKey = `sk_test_${name}key12345`;
    const rec = await createWebhookEndpoint(db.owner, srv.masterKey, { name, issuer: `https://clerk.${name}.example`, tenantId: f.a.id, clerkSecretKey: clerkKey });
    return { ...rec, clerkKey, send: (event: unknown, id: string) => deliver(event, { id, path: rec.path, secret: rec.secret }) };
  }

  async function reconcileNow(clerkUrl: string) {
    const { configureWorker } = await import("../../worker/context.js");
    const { runTask } = await import("../helpers/worker.js");
    configureWorker({ masterKey: srv.masterKey, clerkApiUrl: clerkUrl });
    await runTask(db, "clerk__reconcile");
    await work();
    // The run succeeded (a failed job stays, with its error): what the test checks next is its doing.
    const left = await db.owner.query("select last_error from graphile_worker.jobs where task_identifier = 'clerk__reconcile'");
    expect(left.rows).toEqual([]);
  }

  test("repairs drift: a missed deletion (confirmed 404), a missed creation, a missed update; leaves the unchanged alone; the deletion keeps its tombstone", async () => {
    const rec = await reconciledEndpoint("reconciled");
    const { send } = rec;
    const t = now() - 60_000;
    await send(userEvent("user.created", "user_kept", "kept@tenant-a.test", t), "msg_r1");
    await send(userEvent("user.created", "user_gone", "gone@tenant-a.test", t), "msg_r2");
    await send(userEvent("user.created", "user_stale", "stale@tenant-a.test", t), "msg_r3");
    await work();
    const state = {
      users: [
        userEvent("user.updated", "user_kept", "kept@tenant-a.test", t).data,
        userEvent("user.updated", "user_stale", "fresh@tenant-a.test", t + 30_000).data,
        userEvent("user.updated", "user_new", "new@tenant-a.test", t + 30_000).data,
      ],
      orgs: [] as Record<string, unknown>[],
      memberships: {},
    };
    const clerk = await fakeClerk(state);
    try {
      await reconcileNow(clerk.url);
      expect(clerk.seen.length).toBeGreaterThan(0);
      expect(clerk.seen.every((a) => a === `Bearer ${rec.clerkKey}`)).toBe(true);
      const users = (
        await db.owner.query("select external_id, email from authhub.users where external_id = any($1) order by external_id", [
          ["user_kept", "user_gone", "user_stale", "user_new"],
        ])
      ).rows;
      expect(users).toEqual([
        { external_id: "user_kept", email: "kept@tenant-a.test" },
        { external_id: "user_new", email: "new@tenant-a.test" },
        { external_id: "user_stale", email: "fresh@tenant-a.test" },
      ]);
      // Only what changed was queued: the unchanged user has no reconciliation delivery.
      const queued = (
        await db.owner.query("select event_type, entity from authhub.webhook_deliveries where endpoint_id = $1 and svix_id like 'reconcile:%' order by entity", [rec.id])
      ).rows;
      expect(queued.map((r) => r.entity)).toEqual(["user:user_gone", "user:user_new", "user:user_stale"]);
      // An inferred deletion is a deletion like any other: a late (stale) webhook cannot bring the user back.
      await send(userEvent("user.updated", "user_gone", "back@tenant-a.test", t + 10_000), "msg_r4");
      await work();
      expect(await delivery("msg_r4")).toMatchObject({ state: "skipped" });
      expect((await db.owner.query("select 1 from authhub.users where external_id = 'user_gone'")).rowCount).toBe(0);
    } finally {
      await clerk.close();
    }
  });

  test("infers no deletion from a listing that is not whole, nor for what Clerk still answers for directly", async () => {
    const rec = await reconciledEndpoint("careful");
    const t = now() - 60_000;
    await rec.send(userEvent("user.created", "user_c1", "c1@tenant-a.test", t), "msg_c1");
    await rec.send(userEvent("user.created", "user_c2", "c2@tenant-a.test", t), "msg_c2");
    await work();
    const c1 = userEvent("user.updated", "user_c1", "c1@tenant-a.test", t).data;
    const c2 = userEvent("user.updated", "user_c2", "c2@tenant-a.test", t).data;
    // A page shifted: the listing misses user_c1 but Clerk counts 2. Not whole: no deletion.
    let clerk = await fakeClerk({ users: [c2], orgs: [], memberships: {}, userCount: 2 });
    try {
      await reconcileNow(clerk.url);
    } finally {
      await clerk.close();
    }
    expect((await db.owner.query("select 1 from authhub.users where external_id = 'user_c1'")).rowCount).toBe(1);
    // Whole by the count, but Clerk still answers for user_c1 directly: no deletion either.
    clerk = await fakeClerk({ users: [c2], orgs: [], memberships: {}, direct: [c1] });
    try {
      await reconcileNow(clerk.url);
    } finally {
      await clerk.close();
    }
    expect((await db.owner.query("select 1 from authhub.users where external_id = 'user_c1'")).rowCount).toBe(1);
    const deletions = await db.owner.query("select 1 from authhub.webhook_deliveries where endpoint_id = $1 and event_type like '%.deleted'", [rec.id]);
    expect(deletions.rowCount).toBe(0);
  });

  test("a missed membership deletion is repaired only once the user's own membership list confirms it", async () => {
    const rec = await reconciledEndpoint("members");
    const { send } = rec;
    const t = now() - 60_000;
    await send(userEvent("user.created", "user_m1", "m1@tenant-a.test", t), "msg_m1");
    await send(userEvent("user.created", "user_m2", "m2@tenant-a.test", t), "msg_m2");
    await send(orgEvent("organization.created", "org_rec", "rec-org", t), "msg_m3");
    await send(membershipEvent("organizationMembership.created", "org_rec", "user_m1", "org:member", t), "msg_m4");
    await send(membershipEvent("organizationMembership.created", "org_rec", "user_m2", "org:member", t), "msg_m5");
    await work();
    const members = async () =>
      (
        await db.owner.query(
          "select u.external_id from authhub.memberships m join authhub.users u on u.id = m.user_id join authhub.organizations o on o.id = m.organization_id where o.external_id = 'org_rec' order by 1",
        )
      ).rows.map((r) => r.external_id);
    expect(await members()).toEqual(["user_m1", "user_m2"]);
    const state = {
      users: ["user_m1", "user_m2"].map((u) => userEvent("user.updated", u, `${u.slice(5)}@tenant-a.test`, t).data),
      orgs: [orgEvent("organization.updated", "org_rec", "rec-org", t).data],
      // Clerk's organization listing shows neither membership; user_m2's own list still shows its.
      memberships: {} as Record<string, Record<string, unknown>[]>,
      directMemberships: [membershipEvent("organizationMembership.updated", "org_rec", "user_m2", "org:member", t).data],
    };
    const clerk = await fakeClerk(state);
    try {
      await reconcileNow(clerk.url);
    } finally {
      await clerk.close();
    }
    expect(await members()).toEqual(["user_m2"]);
    // The membership may begin again with a newer event.
    await send(membershipEvent("organizationMembership.created", "org_rec", "user_m1", "org:admin", now() + 1000), "msg_m6");
    await work();
    expect(await delivery("msg_m6")).toMatchObject({ state: "done" });
    expect(await members()).toEqual(["user_m1", "user_m2"]);
  });

  test("the receiver refuses reconciliation's own ids from outside, and so does SQL for anyone but the worker", async () => {
    // Signed, but under an id that is not a sender's: refused by SQL, nothing stored.
    const res = await deliver(userEvent("user.created", "user_pre", "pre@tenant-a.test", now()), { id: "reconcile:zzz:0" });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe("forbidden");
    expect((await db.owner.query("select 1 from authhub.webhook_deliveries where svix_id like 'reconcile:zzz:%'")).rowCount).toBe(0);
    // An id the inbox does not take (its format is a constraint): 400, nothing stored.
    const odd = await deliver(userEvent("user.created", "user_pre", "pre@tenant-a.test", now()), { id: "msg with spaces" });
    expect(odd.status).toBe(400);
    expect(odd.body.error).toMatchObject({ code: "invalid_input", details: [{ field: "svixId" }] });
    expect((await db.owner.query("select 1 from authhub.webhook_deliveries where svix_id = 'msg with spaces'")).rowCount).toBe(0);
    // Control: the same event under a sender's id is taken.
    expect((await deliver(userEvent("user.created", "user_pre", "pre@tenant-a.test", now()), { id: "msg_pre_ok" })).status).toBe(202);
    await expect(db.owner.query("select authhub_private.accept_webhook($1, 'reconcile:zzz:1', 'user.created', 'user:user_pre', '{}')", [endpoint.id])).rejects.toMatchObject({
      code: "AH403",
    });
  });
});
