/**
 * Outbound events from SQL (issue 17, DESIGN.md §14): the outbox is written by
 * the changing transaction (and goes with it when it rolls back); endpoints,
 * events and the delivery log are tenant admins' (their tenant only); secrets
 * and the worker's functions are nobody's; the worker's functions keep an
 * entity's events in order, lease what they hand out, back off, fail a
 * delivery after 3 days and disable an endpoint failing that long.
 */
import type pg from "pg";
import { asActor, attemptAs, rowsOf, type Actor, type TestDatabase } from "../helpers/db.js";
import { cast, useFixtureDatabase, type Fixtures } from "../helpers/fixtures.js";

let db: TestDatabase;
let f: Fixtures;
/** Tenant A: everything; A's store (the sibling organization): retail only. Tenant B: everything. */
let endpointA: string;
let storeEndpointA: string;
let endpointB: string;
let storeA: string;

async function makeEndpoint(tenantId: string, url: string, types: string[], storeId: string | null = null): Promise<string> {
  return (
    await db.owner.query<{ id: string }>("select (e).id from (select authhub_private.create_event_endpoint($1, $2, null, $3, 'v1.s.e.c', $4) as e) x", [
      url,
      types,
      storeId,
      tenantId,
    ])
  ).rows[0]!.id;
}

/** As the owner, in one transaction that is committed. */
async function asOwner<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await db.owner.connect();
  try {
    await c.query("begin");
    const r = await fn(c);
    await c.query("commit");
    return r;
  } catch (err) {
    await c.query("rollback");
    throw err;
  } finally {
    c.release();
  }
}

useFixtureDatabase(async (database, fixtures) => {
  db = database;
  f = fixtures;
  storeA = f.a.orgs.sibling;
  await db.owner.query("insert into retail.stores (tenant_id, id, code, name) values ($1, $2, 'sibling', 'Sibling store')", [f.a.id, storeA]);
  endpointA = await makeEndpoint(f.a.id, "https://hooks.a.example/all", ["*"]);
  storeEndpointA = await makeEndpoint(f.a.id, "https://store.a.example/hook", ["retail.*"], storeA);
  endpointB = await makeEndpoint(f.b.id, "https://hooks.b.example/identity", ["identity.user.*"]);
});

const count = (actor: Actor, table: string) => attemptAs(db, actor, `select 1 from ${table}`);

describe("the outbox", () => {
  test("a change writes its event and deliveries in its own transaction: seen inside it, gone with its rollback", async () => {
    const admin = cast(f, f.a).tenantAdmin;
    const seen = await asActor(db, admin, async (c) => {
      await c.query("update authhub.users set display_name = 'Renamed' where id = $1", [f.a.users.member]);
      return {
        events: await rowsOf<{ type: string; entity: string; payload: Record<string, unknown> }>(c, "select type, entity, payload from authhub.events"),
        deliveries: await rowsOf<{ endpoint_id: string; state: string }>(c, "select endpoint_id, state from authhub.event_deliveries"),
      };
    });
    expect(seen.events).toHaveLength(1);
    const [event] = seen.events;
    expect(event!.type).toBe("identity.user.updated");
    expect(event!.entity).toBe(`user:${f.a.users.member}`);
    // The body as sent: the row as GraphQL names it, who did it, the request's trace.
    expect(event!.payload).toMatchObject({
      type: "identity.user.updated",
      tenantId: f.a.id,
      data: { rowId: f.a.users.member, displayName: "Renamed", tenantId: f.a.id, email: "member@tenant-a.test" },
      actor: { type: "user", id: f.a.users.tenantAdmin },
      traceId: "test-trace-0001",
    });
    expect(Object.keys(event!.payload).sort()).toEqual(["actor", "data", "id", "occurredAt", "tenantId", "traceId", "type"]);
    // Only the tenant-wide endpoint wants identity events; tenant B's never sees tenant A's.
    expect(seen.deliveries).toEqual([{ endpoint_id: endpointA, state: "pending" }]);
    // Rolled back with the change.
    expect((await db.owner.query("select 1 from authhub.events")).rowCount).toBe(0);
    expect((await db.owner.query("select 1 from authhub.event_deliveries")).rowCount).toBe(0);
  });

  test("a committed change leaves its event and one send job per endpoint per transaction", async () => {
    const jobsBefore = (await db.owner.query("select 1 from graphile_worker.jobs where task_identifier = 'event_deliveries__send'")).rowCount!;
    await asOwner(async (c) => {
      await c.query("update authhub.users set display_name = 'One' where tenant_id = $1 and id = $2", [f.b.id, f.b.users.member]);
      await c.query("update authhub.users set display_name = 'Two' where tenant_id = $1 and id = $2", [f.b.id, f.b.users.outsider]);
      // Not a type endpoint B asked for.
      await c.query("update authhub.organizations set name = 'Root B' where tenant_id = $1 and id = $2", [f.b.id, f.b.orgs.root]);
    });
    const { rows } = await db.owner.query<{ type: string; actor: unknown }>(
      "select e.type, e.payload -> 'actor' as actor from authhub.events e where e.tenant_id = $1 order by e.seq",
      [f.b.id],
    );
    expect(rows).toEqual([
      { type: "identity.user.updated", actor: { type: "system", name: "db:authhub_owner" } },
      { type: "identity.user.updated", actor: { type: "system", name: "db:authhub_owner" } },
    ]);
    expect((await db.owner.query("select 1 from authhub.event_deliveries where endpoint_id = $1", [endpointB])).rowCount).toBe(2);
    const jobsAfter = (await db.owner.query("select 1 from graphile_worker.jobs where task_identifier = 'event_deliveries__send'")).rowCount!;
    expect(jobsAfter - jobsBefore).toBe(1);
  });

  test("types, tombstones and stores: a store's endpoint gets its store's retail events, none its own sync made", async () => {
    const product = await asOwner(async (c) => {
      const id = (await c.query<{ id: string }>("insert into retail.products (tenant_id, store_id, title) values ($1, $2, 'Tea') returning id", [f.a.id, storeA])).rows[0]!.id;
      // The store's own sync (retail.sync marks its transaction so): a tombstone.
      await c.query("select set_config('retail.sync_store', 'on', true)");
      await c.query("update retail.products set deleted_at = now() where tenant_id = $1 and store_id = $2 and id = $3", [f.a.id, storeA, id]);
      return id;
    });
    const { rows } = await db.owner.query<{ endpoint_id: string; event_type: string; entity: string }>(
      "select endpoint_id, event_type, entity from authhub.event_deliveries where entity like 'product:%' order by seq, endpoint_id",
    );
    const key = `product:${storeA}:${product}`;
    const sorted = <T>(xs: T[]) => xs.map((x) => JSON.stringify(x)).sort();
    expect(sorted(rows)).toEqual(
      sorted([
        { endpoint_id: endpointA, event_type: "retail.product.created", entity: key },
        { endpoint_id: storeEndpointA, event_type: "retail.product.created", entity: key },
        // The sync's change: to the tenant-wide endpoint, not back to the store.
        { endpoint_id: endpointA, event_type: "retail.product.deleted", entity: key },
      ]),
    );
    // The store's endpoint never gets identity events; the tenant-wide one (the control) does.
    await db.owner.query("update authhub.users set display_name = 'Store check' where tenant_id = $1 and id = $2", [f.a.id, f.a.users.member]);
    const identity = await db.owner.query<{ endpoint_id: string }>("select endpoint_id from authhub.event_deliveries where entity = $1", [`user:${f.a.users.member}`]);
    expect(identity.rows).toEqual([{ endpoint_id: endpointA }]);
  });

  test("type patterns: * a segment, a final * the rest", async () => {
    const { rows } = await db.owner.query<Record<string, boolean>>(
      `select authhub_private.event_type_matches('retail.order.updated', '{retail.*}') as area,
              authhub_private.event_type_matches('retail.order.updated', '{*.*.deleted}') as other_kind,
              authhub_private.event_type_matches('identity.user.deleted', '{*.*.deleted}') as kind,
              authhub_private.event_type_matches('identity.user.deleted', '{*}') as everything,
              authhub_private.event_type_matches('retail.orderLine.created', '{retail.order.*}') as prefix_only`,
    );
    expect(rows[0]).toEqual({ area: true, other_kind: false, kind: true, everything: true, prefix_only: false });
  });
});

test("every enrolled table sends <area>.<entity>.<kind> with its row's key as the entity", async () => {
  const t = f.a.id;
  const types = await asOwner(async (c) => {
    const seqBefore = (await c.query<{ n: string }>("select coalesce(max(seq), 0)::text as n from authhub.events")).rows[0]!.n;
    const role = (await c.query<{ id: string }>("insert into authhub.roles (tenant_id, key, name, level) values ($1, 'ev-role', 'Ev role', 'ORG_ADMIN') returning id", [t]))
      .rows[0]!.id;
    const assignment = (
      await c.query<{ id: string }>("insert into authhub.role_assignments (tenant_id, user_id, role_id) values ($1, $2, $3) returning id", [t, f.a.users.member, role])
    ).rows[0]!.id;
    await c.query("delete from authhub.role_assignments where tenant_id = $1 and id = $2", [t, assignment]);
    await c.query("insert into authhub.memberships (tenant_id, organization_id, user_id) values ($1, $2, $3)", [t, f.a.orgs.root, f.a.users.outsider]);
    await c.query("update authhub.organizations set name = 'Root renamed' where tenant_id = $1 and id = $2", [t, f.a.orgs.root]);
    await c.query("update retail.stores set name = 'Sibling renamed' where tenant_id = $1 and id = $2", [t, storeA]);
    const product = (await c.query<{ id: string }>("insert into retail.products (tenant_id, store_id, title) values ($1, $2, 'Cup') returning id", [t, storeA])).rows[0]!.id;
    await c.query("insert into retail.variants (tenant_id, store_id, product_id, sku, price_minor, currency) values ($1, $2, $3, 'CUP-1', 900, 'USD')", [t, storeA, product]);
    await c.query("insert into retail.inventory_levels (tenant_id, store_id, sku, on_hand) values ($1, $2, 'CUP-1', 4)", [t, storeA]);
    await c.query("insert into retail.customers (tenant_id, store_id, email) values ($1, $2, 'ada@example.com')", [t, storeA]);
    const order = (
      await c.query<{ id: string }>("insert into retail.orders (tenant_id, store_id, number, currency, placed_at) values ($1, $2, 'E-1', 'USD', now()) returning id", [t, storeA])
    ).rows[0]!.id;
    await c.query("insert into retail.order_lines (tenant_id, store_id, order_id, line_no, sku, quantity, unit_price_minor) values ($1, $2, $3, 1, 'CUP-1', 2, 900)", [
      t,
      storeA,
      order,
    ]);
    return (
      await c.query<{ type: string; entity: string }>("select type, entity from authhub.events where tenant_id = $1 and seq > $2::bigint order by seq", [t, seqBefore])
    ).rows.map((r) => `${r.type} ${r.entity.split(":")[0]}:${r.entity.split(":").length - 1}`);
  });
  expect(types).toEqual([
    "identity.roleAssignment.created roleAssignment:1",
    "identity.roleAssignment.deleted roleAssignment:1",
    "identity.membership.created membership:2",
    "identity.organization.updated organization:1",
    "retail.store.updated store:1",
    "retail.product.created product:2",
    "retail.variant.created variant:2",
    "retail.inventoryLevel.created inventoryLevel:3",
    "retail.customer.created customer:2",
    "retail.order.created order:2",
    // The line's totals, computed into its order by an earlier trigger of the same statement:
    // a change of its own, numbered first (events only keep each entity's order).
    "retail.order.updated order:2",
    "retail.orderLine.created orderLine:3",
  ]);
});

describe("who may do what", () => {
  test("tenant admins see their tenant's endpoints, events and delivery log; other tenants, org admins and users see none", async () => {
    const a = cast(f, f.a);
    const b = cast(f, f.b);
    expect(await count(a.tenantAdmin, "authhub.event_endpoints")).toBe(2);
    expect(await count(b.tenantAdmin, "authhub.event_endpoints")).toBe(1);
    expect(await count(a.tenantAdmin, "authhub.event_deliveries")).toBeGreaterThan(0);
    expect(await attemptAs(db, b.tenantAdmin, "select 1 from authhub.event_deliveries where tenant_id = $1", [f.a.id])).toBe(0);
    expect(await attemptAs(db, b.tenantAdmin, "select 1 from authhub.events where tenant_id = $1", [f.a.id])).toBe(0);
    expect(await attemptAs(db, b.tenantAdmin, "select 1 from authhub.event_endpoints where id = $1", [endpointA])).toBe(0);
    for (const actor of [a.orgAdmin, a.member]) {
      expect(await count(actor, "authhub.event_endpoints")).toBe(0);
      expect(await count(actor, "authhub.events")).toBe(0);
      expect(await count(actor, "authhub.event_deliveries")).toBe(0);
    }
    // Control: the rows are there.
    expect((await db.owner.query("select 1 from authhub.event_endpoints where tenant_id = $1", [f.a.id])).rowCount).toBe(2);
  });

  test("only tenant admins create, change and remove endpoints, in their own tenant; url and bookkeeping are not theirs to write", async () => {
    const a = cast(f, f.a);
    const b = cast(f, f.b);
    const create = "select authhub_private.create_event_endpoint('https://x.example/h', '{*}', null, null, 'v1.s.e.c')";
    expect(await attemptAs(db, a.tenantAdmin, create)).toBe(1);
    for (const actor of [a.orgAdmin, a.member, "anonymous" as const]) {
      expect(await attemptAs(db, actor, create)).toBe(actor === "anonymous" ? "42501" : "AH403");
    }
    // Naming another tenant is refused, not quietly redirected.
    expect(await attemptAs(db, a.tenantAdmin, "select authhub_private.create_event_endpoint('https://x.example/h', '{*}', null, null, 'v1.s.e.c', $1)", [f.b.id])).toBe("AH403");
    // A store of another tenant is no store here.
    expect(await attemptAs(db, b.tenantAdmin, "select authhub_private.create_event_endpoint('https://x.example/h', '{*}', null, $1, 'v1.s.e.c')", [storeA])).toBe("AH422");
    expect(await attemptAs(db, a.tenantAdmin, "select authhub_private.create_event_endpoint('https://x.example/h', '{retail..x}', null, null, 'v1.s.e.c')")).toBe("23514");
    expect(await attemptAs(db, a.tenantAdmin, "update authhub.event_endpoints set event_types = '{retail.*}', enabled = false where id = $1", [endpointA])).toBe(1);
    expect(await attemptAs(db, a.tenantAdmin, "update authhub.event_endpoints set url = 'https://elsewhere.example' where id = $1", [endpointA])).toBe("42501");
    expect(await attemptAs(db, a.tenantAdmin, "update authhub.event_endpoints set failing_since = null where id = $1", [endpointA])).toBe("42501");
    expect(await attemptAs(db, a.tenantAdmin, "delete from authhub.event_endpoints where id = $1", [endpointA])).toBe(1);
    expect(await attemptAs(db, b.tenantAdmin, "update authhub.event_endpoints set enabled = false where id = $1", [endpointA])).toBe(0);
    expect(await attemptAs(db, b.tenantAdmin, "delete from authhub.event_endpoints where id = $1", [endpointA])).toBe(0);
    for (const actor of [a.orgAdmin, a.member]) {
      expect(await attemptAs(db, actor, "update authhub.event_endpoints set enabled = false")).toBe(0);
      expect(await attemptAs(db, actor, "delete from authhub.event_endpoints")).toBe(0);
    }
    // The outbox is written by SQL only.
    expect(await attemptAs(db, a.tenantAdmin, "update authhub.event_deliveries set state = 'delivered'")).toBe("42501");
    expect(await attemptAs(db, a.tenantAdmin, "delete from authhub.events")).toBe("42501");
  });

  test("secrets and the worker's functions are out of every request role's reach", async () => {
    for (const actor of ["anonymous", cast(f, f.a).tenantAdmin, cast(f, f.a).superAdmin] as Actor[]) {
      expect(await count(actor, "authhub_private.event_endpoint_secrets")).toBe("42501");
      expect(await attemptAs(db, actor, "select * from authhub_private.claim_event_deliveries($1, $2, 10)", [f.a.id, endpointA])).toBe("42501");
      expect(await attemptAs(db, actor, "select authhub_private.record_event_attempt($1, $2, gen_random_uuid(), 200, null)", [f.a.id, endpointA])).toBe("42501");
      expect(await attemptAs(db, actor, "select authhub_private.queue_event_delivery($1, $2, null)", [f.a.id, endpointA])).toBe("42501");
    }
  });
});

describe("the worker's side", () => {
  let tenant: string;
  let endpoint: string;
  const worker = async <T>(fn: (c: pg.PoolClient) => Promise<T>) =>
    asOwner(async (c) => {
      await c.query("set local role authhub_worker");
      return fn(c);
    });
  const claim = () =>
    worker(async (c) => rowsOf<{ event_id: string; attempt: number }>(c, "select event_id, attempt from authhub_private.claim_event_deliveries($1, $2, 10)", [tenant, endpoint]));
  const record = (eventId: string, status: number | null, error: string | null = null) =>
    worker(
      async (c) => (await c.query<{ o: string }>("select authhub_private.record_event_attempt($1, $2, $3, $4, $5) as o", [tenant, endpoint, eventId, status, error])).rows[0]!.o,
    );

  beforeAll(async () => {
    tenant = f.b.id;
    // A fresh endpoint with nothing pending, then two changes to one user and one to another.
    await db.owner.query("delete from authhub.event_endpoints where tenant_id = $1", [tenant]);
    endpoint = await makeEndpoint(tenant, "https://hooks.b.example/2", ["identity.user.*"]);
    for (const name of ["first", "second"]) await db.owner.query("update authhub.users set display_name = $2 where id = $1", [f.b.users.member, name]);
    await db.owner.query("update authhub.users set display_name = 'other' where id = $1", [f.b.users.outsider]);
  });

  test("an entity's events go one at a time, in order; a lease keeps a second worker off them", async () => {
    const first = await claim();
    // One per entity: the member's first change and the outsider's change.
    expect(first).toHaveLength(2);
    expect(first.every((d) => d.attempt === 1)).toBe(true);
    expect(await claim()).toEqual([]);
    const payloads = await db.owner.query<{ id: string; name: string }>("select id, payload #>> '{data,displayName}' as name from authhub.events where tenant_id = $1", [tenant]);
    const nameOf = new Map(payloads.rows.map((r) => [r.id, r.name]));
    expect(first.map((d) => nameOf.get(d.event_id)).sort()).toEqual(["first", "other"]);
    // The member's second change waits behind its first, which this worker holds.
    const jobs = async () => (await db.owner.query("select 1 from graphile_worker.jobs where task_identifier = 'event_deliveries__send'")).rowCount!;
    const blocked = () => worker(async (c) => (await c.query<{ b: boolean }>("select authhub_private.event_deliveries_blocked($1, $2) as b", [tenant, endpoint])).rows[0]!.b);
    expect(await blocked()).toBe(true);
    const jobsBefore = await jobs();
    for (const d of first) expect(await record(d.event_id, 204)).toBe("delivered");
    // Done with the heads: a send is queued for the member's next event (the outsider has none).
    expect(await jobs()).toBe(jobsBefore + 1);
    expect(await blocked()).toBe(false);
    const next = await claim();
    expect(next.map((d) => nameOf.get(d.event_id))).toEqual(["second"]);
    // A failure: due again after the backoff (5 s first), the endpoint marked failing.
    expect(await record(next[0]!.event_id, 500)).toBe("retry");
    const { rows } = await db.owner.query<{ wait: number; attempts: number; last_status: number; last_error: string; failing: boolean }>(
      `select extract(epoch from d.next_attempt_at - now())::float8 as wait, d.attempts, d.last_status, d.last_error, e.failing_since is not null as failing
       from authhub.event_deliveries d join authhub.event_endpoints e on e.tenant_id = d.tenant_id and e.id = d.endpoint_id
       where d.tenant_id = $1 and d.event_id = $2`,
      [tenant, next[0]!.event_id],
    );
    expect(rows[0]).toMatchObject({ attempts: 1, last_status: 500, last_error: "HTTP 500", failing: true });
    expect(rows[0]!.wait).toBeGreaterThan(3);
    expect(rows[0]!.wait).toBeLessThanOrEqual(10);
    expect(await claim()).toEqual([]);
    // A retry job is queued for then.
    expect(
      (await db.owner.query("select 1 from graphile_worker.jobs where task_identifier = 'event_deliveries__send' and run_at > now() + interval '2 seconds'")).rowCount,
    ).toBeGreaterThan(0);
  });

  test("a worker that dies holding a delivery: its lease runs out, the sweep queues a send, and it goes again", async () => {
    const t2 = f.a.id;
    const ep = await makeEndpoint(t2, "https://hooks.a.example/lease", ["identity.organization.*"]);
    await db.owner.query("update authhub.organizations set name = 'Leased' where tenant_id = $1 and id = $2", [t2, f.a.orgs.grandchild]);
    const take = () =>
      worker(async (c) => rowsOf<{ event_id: string; attempt: number }>(c, "select event_id, attempt from authhub_private.claim_event_deliveries($1, $2, 10)", [t2, ep]));
    const [held] = await take();
    expect(held!.attempt).toBe(1);
    // The worker is gone without recording anything; a minute later its lease has run out.
    expect(await take()).toEqual([]);
    await db.owner.query("update authhub.event_deliveries set leased_until = now() - interval '1 second', next_attempt_at = now() - interval '1 minute' where endpoint_id = $1", [
      ep,
    ]);
    const jobs = async () => (await db.owner.query("select 1 from graphile_worker.jobs where task_identifier = 'event_deliveries__send'")).rowCount!;
    const before = await jobs();
    expect(await worker(async (c) => (await c.query<{ n: number }>("select authhub_private.sweep_event_deliveries() as n")).rows[0]!.n)).toBeGreaterThanOrEqual(1);
    expect(await jobs()).toBeGreaterThan(before);
    const again = await take();
    expect(again).toEqual([{ event_id: held!.event_id, attempt: 2 }]);
    await db.owner.query("delete from authhub.event_endpoints where id = $1", [ep]);
  });

  test("a delivery refused for 3 days fails and the entity's next event goes; an endpoint failing that long is disabled with the reason", async () => {
    await db.owner.query("update authhub.users set display_name = 'third' where id = $1", [f.b.users.member]);
    // Three days on: the head's event is old, the endpoint has failed since then.
    await db.owner.query(
      "update authhub.event_deliveries set created_at = now() - interval '3 days 1 hour', next_attempt_at = now() where tenant_id = $1 and endpoint_id = $2 and state = 'pending' and attempts = 1",
      [tenant, endpoint],
    );
    await db.owner.query("update authhub.event_endpoints set failing_since = now() - interval '3 days 1 hour' where id = $1", [endpoint]);
    const head = await claim();
    expect(head).toHaveLength(1);
    expect(head[0]!.attempt).toBe(2);
    expect(await record(head[0]!.event_id, null, "ECONNREFUSED: connect ECONNREFUSED")).toBe("failed");
    const { rows } = await db.owner.query<{ enabled: boolean; disabled_reason: string | null }>("select enabled, disabled_reason from authhub.event_endpoints where id = $1", [
      endpoint,
    ]);
    expect(rows[0]!.enabled).toBe(false);
    expect(rows[0]!.disabled_reason).toMatch(/^Disabled by AuthHub: every delivery has failed since .*ECONNREFUSED/);
    // Visible as failed in the log, to the tenant's admin.
    const log = await asActor(db, cast(f, f.b).tenantAdmin, (c) =>
      rowsOf<{ state: string; last_error: string }>(c, "select state, last_error from authhub.event_deliveries where event_id = $1", [head[0]!.event_id]),
    );
    expect(log).toEqual([{ state: "failed", last_error: "ECONNREFUSED: connect ECONNREFUSED" }]);
    // Disabled: nothing is handed out, and new changes are not queued for it.
    expect(await claim()).toEqual([]);
    const before = (await db.owner.query("select 1 from authhub.event_deliveries where endpoint_id = $1", [endpoint])).rowCount;
    await db.owner.query("update authhub.users set display_name = 'fourth' where id = $1", [f.b.users.member]);
    expect((await db.owner.query("select 1 from authhub.event_deliveries where endpoint_id = $1", [endpoint])).rowCount).toBe(before);
    // Enabled again: the tenant admin may (in a transaction rolled back here), the owner does;
    // the reason goes, and the entity's next event (third) is due.
    const enabled = await attemptAs(db, cast(f, f.b).tenantAdmin, "update authhub.event_endpoints set enabled = true where id = $1", [endpoint]);
    expect(enabled).toBe(1);
    await db.owner.query("update authhub.event_endpoints set enabled = true where id = $1", [endpoint]);
    expect((await db.owner.query("select disabled_reason, failing_since from authhub.event_endpoints where id = $1", [endpoint])).rows[0]).toEqual({
      disabled_reason: null,
      failing_since: null,
    });
    const after = await claim();
    const names = await db.owner.query<{ name: string }>("select payload #>> '{data,displayName}' as name from authhub.events where id = $1", [after[0]!.event_id]);
    expect(names.rows.map((r) => r.name)).toEqual(["third"]);
  });

  test("retention: finished deliveries go after 30 days, and an event with them once none is left", async () => {
    const { rows: finished } = await db.owner.query<{ event_id: string }>("select event_id from authhub.event_deliveries where tenant_id = $1 and state <> 'pending'", [tenant]);
    expect(finished.length).toBeGreaterThan(1);
    const [old, ...recent] = finished.map((r) => r.event_id);
    await db.owner.query("update authhub.event_deliveries set finished_at = now() - interval '31 days' where tenant_id = $1 and event_id = $2", [tenant, old]);
    const purged = await worker(async (c) => (await c.query<{ n: number }>("select authhub_private.purge_event_deliveries(100) as n")).rows[0]!.n);
    expect(purged).toBe(1);
    expect((await db.owner.query("select 1 from authhub.events where tenant_id = $1 and id = $2", [tenant, old])).rowCount).toBe(0);
    // The recent ones, and every pending one, stay.
    expect((await db.owner.query("select 1 from authhub.event_deliveries where tenant_id = $1 and event_id = any($2)", [tenant, recent])).rowCount).toBe(recent.length);
    expect((await db.owner.query("select 1 from authhub.events where tenant_id = $1 and id = any($2)", [tenant, recent])).rowCount).toBe(recent.length);
  });
});
