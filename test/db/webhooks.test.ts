/**
 * The identity-sync tables from SQL (issue 7): endpoints and the inbox are
 * tenant admins' (their tenant only); the signing secrets and the sync
 * bookkeeping are nobody's; the receiver's and the worker's functions are
 * theirs alone.
 */
import { attemptAs, type Actor, type TestDatabase } from "../helpers/db.js";
import { cast, useFixtureDatabase, type Fixtures } from "../helpers/fixtures.js";

let db: TestDatabase;
let f: Fixtures;
let endpointA: string;

useFixtureDatabase(async (database, fixtures) => {
  db = database;
  f = fixtures;
  endpointA = (
    await db.owner.query<{ id: string }>("select (e).id from (select authhub_private.create_webhook_endpoint('Clerk', 'https://clerk.a.example', null, 'v1.s.e.c', $1) as e) x", [
      f.a.id,
    ])
  ).rows[0]!.id;
  await db.owner.query("select authhub_private.create_webhook_endpoint('Clerk B', 'https://clerk.b.example', null, 'v1.s.e.c', $1)", [f.b.id]);
  await db.auth.query("select authhub_private.accept_webhook($1, 'msg_1', 'user.created', 'user:user_1', '{}')", [endpointA]);
});

const count = (actor: Actor, table: string) => attemptAs(db, actor, `select 1 from ${table}`);

test("tenant admins read and change their own tenant's endpoints and inbox; nobody else", async () => {
  expect(await count(cast(f, f.a).tenantAdmin, "authhub.webhook_endpoints")).toBe(1);
  expect(await count(cast(f, f.a).tenantAdmin, "authhub.webhook_deliveries")).toBe(1);
  expect(await count(cast(f, f.b).tenantAdmin, "authhub.webhook_deliveries")).toBe(0);
  for (const actor of [cast(f, f.a).orgAdmin, cast(f, f.a).member]) {
    expect(await count(actor, "authhub.webhook_endpoints")).toBe(0);
    expect(await count(actor, "authhub.webhook_deliveries")).toBe(0);
  }
  expect(await attemptAs(db, cast(f, f.a).tenantAdmin, "update authhub.webhook_endpoints set enabled = false")).toBe(1);
  expect(await attemptAs(db, cast(f, f.b).tenantAdmin, "update authhub.webhook_endpoints set enabled = false where id = $1", [endpointA])).toBe(0);
  expect(await attemptAs(db, cast(f, f.a).orgAdmin, "update authhub.webhook_endpoints set enabled = false")).toBe(0);
  // Deliveries are the receiver's to write, nobody's to change.
  expect(await attemptAs(db, cast(f, f.a).tenantAdmin, "update authhub.webhook_deliveries set state = 'done'")).toBe("42501");
  expect(await attemptAs(db, cast(f, f.a).tenantAdmin, "delete from authhub.webhook_endpoints")).toBe("42501");
});

test("secrets and sync bookkeeping are out of every request role's reach, as are the receiver's and worker's functions", async () => {
  for (const actor of ["anonymous", cast(f, f.a).tenantAdmin, cast(f, f.a).superAdmin] as Actor[]) {
    expect(await count(actor, "authhub_private.webhook_secrets")).toBe("42501");
    expect(await count(actor, "authhub_private.clerk_entities")).toBe("42501");
    expect(await attemptAs(db, actor, "select authhub_private.webhook_endpoint_for_delivery($1)", [endpointA])).toBe("42501");
    expect(await attemptAs(db, actor, "select authhub_private.accept_webhook($1, 'x', 'user.created', 'user:x', '{}')", [endpointA])).toBe("42501");
    expect(await attemptAs(db, actor, "select authhub_private.clerk_apply($1, $2, 'msg_1')", [f.a.id, endpointA])).toBe("42501");
    expect(await attemptAs(db, actor, "select authhub_private.store_delivery($1, 'x', 'user.created', 'user:x', '{}')", [endpointA])).toBe("42501");
    expect(await attemptAs(db, actor, "select authhub_private.accept_reconciled_delivery($1, 'reconcile:x:0', 'user.created', 'user:x', '{}')", [endpointA])).toBe("42501");
    expect(await attemptAs(db, actor, "select * from authhub_private.clerk_drain($1, $2, 10)", [f.a.id, endpointA])).toBe("42501");
    expect(await attemptAs(db, actor, "select authhub_private.queue_clerk_drain($1, $2)", [f.a.id, endpointA])).toBe("42501");
    expect(await attemptAs(db, actor, "select authhub_private.sweep_clerk_deliveries()")).toBe("42501");
  }
  // Only tenant admins (or the operator) create endpoints.
  expect(await attemptAs(db, cast(f, f.a).orgAdmin, "select authhub_private.create_webhook_endpoint('x', 'https://x.example', null, 'v1.a.b.c')")).toBe("AH403");
  expect(await attemptAs(db, cast(f, f.a).tenantAdmin, "select authhub_private.create_webhook_endpoint('x', 'https://x.example', null, 'v1.a.b.c', $1)", [f.b.id])).toBe("AH403");
  // Both endpoints' secrets were audited, and the audit rows never hold them.
  const { rows } = await db.owner.query("select new from authhub.audit_events where table_name = 'webhook_secrets' and operation = 'INSERT'");
  expect(rows.length).toBeGreaterThanOrEqual(2);
  expect(rows.every((r) => r.new && typeof r.new.endpoint_id === "string")).toBe(true);
  expect(JSON.stringify(rows)).not.toContain("v1.s.e.c");
});

test("the receiver stores only for enabled endpoints of active tenants, never under reconciliation's ids, which are the worker's alone", async () => {
  const accept = (id: string, endpoint = endpointA) =>
    db.auth.query("select authhub_private.accept_webhook($1, $2, 'user.created', 'user:x', '{}') as stored", [endpoint, id]).then(
      (r) => r.rows[0].stored,
      (err: { code?: string }) => err.code,
    );
  expect(await accept("msg_enabled")).toBe(true);
  await db.owner.query("update authhub.webhook_endpoints set enabled = false where id = $1", [endpointA]);
  try {
    expect(await accept("msg_disabled")).toBe("AH404");
  } finally {
    await db.owner.query("update authhub.webhook_endpoints set enabled = true where id = $1", [endpointA]);
  }
  await db.owner.query("update authhub.tenants set status = 'suspended' where id = $1", [f.a.id]);
  try {
    expect(await accept("msg_suspended")).toBe("AH404");
  } finally {
    await db.owner.query("update authhub.tenants set status = 'active' where id = $1", [f.a.id]);
  }
  expect(await accept("reconcile:x:0")).toBe("AH403");
  await expect(db.auth.query("select authhub_private.accept_reconciled_delivery($1, 'reconcile:x:0', 'user.created', 'user:x', '{}')", [endpointA])).rejects.toMatchObject({
    code: "42501",
  });
  // The worker's role may, and only under reconciliation's ids.
  const asWorker = async (sql: string) => {
    const c = await db.owner.connect();
    try {
      await c.query("begin");
      await c.query("select set_config('role', 'authhub_worker', true)");
      return await c.query(sql, [endpointA]).then(
        (r) => r.rows[0].stored,
        (err: { code?: string }) => err.code,
      );
    } finally {
      await c.query("rollback");
      c.release();
    }
  };
  expect(await asWorker("select authhub_private.accept_reconciled_delivery($1, 'reconcile:x:1', 'user.created', 'user:x', '{}') as stored")).toBe(true);
  expect(await asWorker("select authhub_private.accept_reconciled_delivery($1, 'msg_worker', 'user.created', 'user:x', '{}') as stored")).toBe("AH422");
  expect(await asWorker("select authhub_private.accept_webhook($1, 'msg_worker', 'user.created', 'user:x', '{}') as stored")).toBe("42501");
  const { rows } = await db.owner.query("select svix_id from authhub.webhook_deliveries where svix_id = any($1)", [
    ["msg_enabled", "msg_disabled", "msg_suspended", "reconcile:x:0", "reconcile:x:1", "msg_worker"],
  ]);
  expect(rows.map((r) => r.svix_id)).toEqual(["msg_enabled"]);
});

test("the webhook_deliveries__purge job deletes finished deliveries after 30 days, never pending ones", async () => {
  const { runTask } = await import("../helpers/worker.js");
  for (const id of ["msg_old_done", "msg_old_pending", "msg_new_done"]) {
    await db.auth.query("select authhub_private.accept_webhook($1, $2, 'user.created', 'user:x', '{}')", [endpointA, id]);
  }
  await db.owner.query(
    `update authhub.webhook_deliveries set state = case when svix_id = 'msg_old_pending' then 'pending' else 'done' end,
            processed_at = case when svix_id = 'msg_new_done' then now() else now() - interval '31 days' end
     where svix_id in ('msg_old_done', 'msg_old_pending', 'msg_new_done')`,
  );
  await runTask(db, "webhook_deliveries__purge");
  const { rows } = await db.owner.query("select svix_id from authhub.webhook_deliveries where svix_id = any($1) order by svix_id", [
    ["msg_old_done", "msg_old_pending", "msg_new_done"],
  ]);
  expect(rows.map((r) => r.svix_id)).toEqual(["msg_new_done", "msg_old_pending"]);
});

test("only a pending delivery waits, and an arriving user or organization finds what waits for it through its own index, not the endpoint's backlog", async () => {
  await db.auth.query("select authhub_private.accept_webhook($1, 'msg_wait', 'organizationMembership.created', 'membership:org_1:user_1', '{}')", [endpointA]);
  // The rule: a finished delivery waits for nothing.
  const code = await db.owner.query("update authhub.webhook_deliveries set state = 'done', waiting_for = '{organization:org_1}' where svix_id = 'msg_wait'").then(
    () => null,
    (err: { code: string }) => err.code,
  );
  expect(code).toBe("23514");
  // Control: a pending one may wait.
  expect((await db.owner.query("update authhub.webhook_deliveries set waiting_for = '{organization:org_1}' where svix_id = 'msg_wait'")).rowCount).toBe(1);
  // The wake's lookup (clerk_apply), planned generically as PL/pgSQL caches it, with statistics
  // that say almost nothing is pending (as between bursts): the small index, never the backlog's.
  const client = await db.owner.connect();
  try {
    await client.query("begin");
    // An endpoint's history: 2,000 finished deliveries.
    await client.query(
      `insert into authhub.webhook_deliveries (tenant_id, endpoint_id, svix_id, event_type, entity, body, state, processed_at)
       select $1, $2, 'msg_old_' || g, 'user.created', 'user:user_old_' || g, '{}', 'done', now() from generate_series(1, 2000) g`,
      [f.a.id, endpointA],
    );
    await client.query("analyze authhub.webhook_deliveries");
    await client.query("set local plan_cache_mode = force_generic_plan");
    await client.query(`prepare wake(uuid, uuid, text, text) as
      select w.svix_id from authhub.webhook_deliveries w
      where w.tenant_id = $1 and w.endpoint_id = $2 and w.waiting_for is not null and w.waiting_for @> array[$3] and w.svix_id <> $4
      for update skip locked`);
    const execute = `execute wake('${f.a.id}', '${endpointA}', 'organization:org_1', 'msg_x')`;
    const plan = (await client.query(`explain ${execute}`)).rows.map((r) => r["QUERY PLAN"]).join("\n");
    expect(plan).toMatch(/Index Scan using webhook_deliveries_waiting/);
    expect((await client.query(execute)).rows).toEqual([{ svix_id: "msg_wait" }]);
  } finally {
    await client.query("rollback");
    await client.query("deallocate all");
    client.release();
  }
  await db.owner.query("update authhub.webhook_deliveries set waiting_for = null where svix_id = 'msg_wait'");
});
