/**
 * Nothing lost on a crash (issue 15, item 3), with real processes: a server
 * (its worker inline, as `npm start` runs it) on one database is SIGKILLed
 * while GraphQL mutations, signed Open API creates and syncs, and Clerk
 * webhook deliveries are in flight, a rollup fold and a webhook drain are
 * running, and a GraphQL and an Open API write are held mid-transaction. After
 * a restart: every write the client saw acknowledged is there and whole
 * (a store with its organization, an order with its lines), none that was cut
 * off is there in part, the audit log matches the data row for row and its
 * chain verifies, and the restarted worker finishes what the dead one held.
 */
import { randomBytes } from "node:crypto";
import { jest } from "@jest/globals";
import pg from "pg";
import { signRequest } from "../../client/index.js";
import { parseMasterKey } from "../../server/auth/masterKey.js";
import { issueApiKey } from "../../server/openapi/issue.js";
import { createWebhookEndpoint } from "../../server/webhooks/endpoints.js";
import type { TestDatabase } from "../helpers/db.js";
import { useFixtureDatabase, type Fixtures } from "../helpers/fixtures.js";
import { clerkUserEvent, cliJson, databaseEnv, deliverWebhook, eventually, killChildren, startServer, type RunningServer } from "../helpers/process.js";

jest.setTimeout(300_000);

let db: TestDatabase;
let f: Fixtures;
useFixtureDatabase((database, fixtures) => {
  db = database;
  f = fixtures;
});
/** The load's clients run while this holds. */
let running = true;
/** A superuser's view of every session (the server's, as authhub_authenticator, are hidden from the owner). */
let root: pg.Pool;
afterAll(async () => {
  running = false;
  killChildren();
  await root?.end();
});

const masterKey = randomBytes(32).toString("base64");
let env: NodeJS.ProcessEnv;
let server: RunningServer;
let token: string;
let key: { keyId: string; secret: string };
/** Tenant B's store system: its orders sync through the crash (tenant A's fold job must not be superseded meanwhile). */
let keyB: { keyId: string; secret: string };
let storeB: string;
let endpoint: { id: string; path: string; secret: string };
let storeId: string;

/** What a client sent and whether it saw success (false: an error answer; null: no answer, cut off by the crash). */
interface Sent {
  kind: string;
  name: string;
  acked: boolean | null;
  /** The answer's status and body, for a failure's message. */
  answer?: string;
}
const sent: Sent[] = [];
const acked = (kind: string) => sent.filter((s) => s.kind === kind && s.acked === true).map((s) => s.name);
/** Per kind: how many were acknowledged, refused and cut off, and the first refusals (for a failing expectation's message). */
const tally = () => {
  const out: Record<string, { acked: number; refused: number; cutOff: number; refusals: string[] }> = {};
  for (const s of sent) {
    const t = (out[s.kind] ??= { acked: 0, refused: 0, cutOff: 0, refusals: [] });
    if (s.acked === true) t.acked++;
    else if (s.acked === false) {
      t.refused++;
      if (t.refusals.length < 3) t.refusals.push(s.answer ?? "");
    } else t.cutOff++;
  }
  return out;
};
/** Waits for `check`; when it never holds, fails with the tally. */
async function until(what: string, check: () => Promise<boolean> | boolean, ms: number) {
  if (await eventually(check, ms)) return;
  const { rows: sleeping } = await root.query(
    "select wait_event, left(query, 160) as query from pg_stat_activity where datname = $1 and state <> 'idle' and pid <> pg_backend_pid()",
    [db.name],
  );
  throw new Error(
    `not within ${ms} ms: ${what}\n${JSON.stringify({ sent: tally(), sleeping, held: sent.filter((x) => x.kind === "held"), stderr: server.stderr().slice(-1000) }, null, 2)}`,
  );
}

function graphql(query: string, bearer = token) {
  return fetch(`${server.base}/graphql`, { method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${bearer}` }, body: JSON.stringify({ query }) });
}
function signed(method: string, url: string, body: unknown, headers: Record<string, string> = {}, k = key) {
  const raw = JSON.stringify(body);
  return fetch(`${server.base}${url}`, {
    method,
    headers: { ...signRequest({ keyId: k.keyId, secret: k.secret, method, url, body: raw }), "Content-Type": "application/json", ...headers },
    body: raw,
  });
}
const deliver = (event: unknown, id: string) => deliverWebhook(server.base, endpoint, event, id);

/** Sends one write and records whether it was acknowledged: `ok` reads the answer (a fetch that fails means no answer). */
async function attempt(kind: string, name: string, send: () => Promise<Response>, ok: (res: Response, body: unknown) => boolean): Promise<void> {
  const entry: Sent = { kind, name, acked: null };
  sent.push(entry);
  try {
    const res = await send();
    const body = (await res.json()) as unknown;
    entry.acked = ok(res, body);
    if (!entry.acked) entry.answer = `${res.status} ${JSON.stringify(body).slice(0, 300)}`;
  } catch (err) {
    entry.acked = null;
    entry.answer = String((err as { cause?: unknown }).cause ?? err);
  }
}

const clerkUser = (id: string, email: string) => clerkUserEvent("user.created", id, email);
const clerkOrg = (id: string, slug: string) => ({
  type: "organization.created",
  object: "event",
  timestamp: Date.now(),
  data: { id, object: "organization", name: `Org ${slug}`, slug, updated_at: Date.now() },
});
const clerkMembership = (org: string, user: string) => ({
  type: "organizationMembership.created",
  object: "event",
  timestamp: Date.now(),
  data: {
    id: `orgmem_${org}_${user}`,
    object: "organization_membership",
    role: "org:member",
    organization: { id: org },
    public_user_data: { user_id: user },
    updated_at: Date.now(),
  },
});
const order = (externalId: string, placedAt = "2026-03-01T10:00:00+01:00", store = "crash-shop") => ({
  externalId,
  version: 1,
  store,
  data: {
    number: externalId,
    status: "paid",
    currency: "EUR",
    placedAt,
    lines: [
      { lineNo: 1, sku: "TEA-1", quantity: 2, unitPriceMinor: 450 },
      { lineNo: 2, sku: "CUP-1", quantity: 1, unitPriceMinor: 1200 },
    ],
  },
});

/** Test-only triggers holding chosen writes mid-transaction (dropped before the restart). */
async function holdWrites() {
  await db.owner.query(`
    create function authhub_private.test_crash_hold() returns trigger language plpgsql as $$
    begin
      perform pg_sleep(60);
      return new;
    end $$;
    create trigger test_crash_hold before insert on authhub.users
      for each row when (new.email like 'held-%') execute function authhub_private.test_crash_hold();
    create trigger test_crash_hold before insert on retail.daily_store_totals
      for each row when (new.day = '2026-04-01') execute function authhub_private.test_crash_hold();`);
}
async function releaseHolds() {
  // Their client is gone: the held transactions would end with their sleep; end them now.
  await root.query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and wait_event = 'PgSleep' and pid <> pg_backend_pid()", [db.name]);
  await db.owner.query(`
    drop trigger test_crash_hold on authhub.users;
    drop trigger test_crash_hold on retail.daily_store_totals;
    drop function authhub_private.test_crash_hold();`);
}
/** How many of the database's backends sleep in the test trigger whose statement mentions `text`. */
async function heldIn(text: string): Promise<number> {
  const { rows } = await root.query<{ n: number }>("select count(*)::int as n from pg_stat_activity where datname = $1 and wait_event = 'PgSleep' and query ilike $2", [
    db.name,
    `%${text}%`,
  ]);
  return rows[0]!.n;
}

/**
 * Audit rows match the data one to one, per table of the tenant: the newest
 * event of every row key is the row as it is (an insert or update whose `new`
 * the row contains; a delete of a row that is gone), and every row has one.
 */
async function auditMismatches(tenantId: string): Promise<Record<string, Record<string, number>>> {
  const tables = ["authhub.users", "authhub.organizations", "authhub.memberships", "retail.stores", "retail.customers", "retail.orders", "retail.order_lines"];
  const out: Record<string, Record<string, number>> = {};
  for (const table of tables) {
    const { rows } = await db.owner.query<Record<string, number>>(
      `with latest as (
         select distinct on (e.row_key) e.row_key, e.operation, e.new
         from authhub.audit_events e
         where e.tenant_id = $1 and e.table_name = $2 and e.row_key is not null
         order by e.row_key, e.id desc
       ), live as (select to_jsonb(t) as r from ${table} t where t.tenant_id = $1)
       select (select count(*) from live where not exists (select 1 from latest l where live.r @> l.row_key))::int as unaudited,
              (select count(*) from latest l where l.operation <> 'DELETE' and not exists (select 1 from live where live.r @> l.row_key))::int as audited_but_missing,
              (select count(*) from latest l where l.operation = 'DELETE' and exists (select 1 from live where live.r @> l.row_key))::int as deleted_but_present,
              (select count(*) from latest l join live on live.r @> l.row_key where l.operation <> 'DELETE' and not live.r @> l.new)::int as differing`,
      [tenantId, table.split(".")[1]],
    );
    const bad = Object.fromEntries(Object.entries(rows[0]!).filter(([, n]) => n !== 0));
    if (Object.keys(bad).length) out[table] = bad;
  }
  return out;
}

beforeAll(async () => {
  root = new pg.Pool({ connectionString: process.env.AUTHHUB_TEST_ROOT_URL, max: 2 });
  env = databaseEnv(db, masterKey, {
    AUTHHUB_GRAPHQL_RATE_LIMIT_USER: "100000",
    AUTHHUB_GRAPHQL_RATE_LIMIT_TENANT: "100000",
    // The held writes outlast the default ten seconds on a loaded machine.
    AUTHHUB_STATEMENT_TIMEOUT_MS: "120000",
    AUTHHUB_IDLE_IN_TRANSACTION_TIMEOUT_MS: "120000",
  });
  server = await startServer(env);
  token = (await cliJson<{ token: string }>(["token", "--tenant", "tenant-a", "--email", "tenant-admin@tenant-a.test", "--ttl", "3600"], env)).token;
  key = await issueApiKey(db.owner, parseMasterKey(masterKey), {
    name: "crash",
    scopes: ["user:read", "user:write", "org:read", "org:write", "sync:write"],
    tenantId: f.a.id,
    rateLimitPerMinute: 100_000,
  });
  endpoint = await createWebhookEndpoint(db.owner, parseMasterKey(masterKey), { name: "Clerk", issuer: "https://clerk.crash.example", tenantId: f.a.id });
  const made = (await (
    await graphql('mutation { createStore(input: { code: "crash-shop", name: "Crash shop", timezone: "Europe/Berlin", currency: "EUR" }) { store { rowId } } }')
  ).json()) as {
    data: { createStore: { store: { rowId: string } } };
  };
  storeId = made.data.createStore.store.rowId;
  const tokenB = (await cliJson<{ token: string }>(["token", "--tenant", "tenant-b", "--email", "tenant-admin@tenant-b.test", "--ttl", "3600"], env)).token;
  const madeB = (await (
    await graphql('mutation { createStore(input: { code: "crash-shop-b", name: "B", timezone: "UTC", currency: "EUR" }) { store { rowId } } }', tokenB)
  ).json()) as {
    data: { createStore: { store: { rowId: string } } };
  };
  storeB = madeB.data.createStore.store.rowId;
  keyB = await issueApiKey(db.owner, parseMasterKey(masterKey), { name: "crash-b", scopes: ["sync:write"], tenantId: f.b.id, rateLimitPerMinute: 100_000 });
  await holdWrites();
});

test("SIGKILL mid-write: acknowledged writes are there and whole, cut-off ones are not there in part, the audit log matches and verifies, the worker finishes", async () => {
  const gqlOk = (res: Response, body: unknown) => res.status === 200 && !(body as { errors?: unknown }).errors;
  const orderOk = (res: Response, body: unknown) => res.status === 200 && (body as { results?: { status: string }[] }).results?.[0]?.status === "applied";
  /** One client: writes one after another until the crash. */
  const loop = (fn: (i: number) => Promise<void>) =>
    (async () => {
      for (let i = 0; running; i++) await fn(i);
    })();

  // Orders first, until the worker has folded them all.
  let ordering = true;
  const orders = (async () => {
    for (let i = 0; ordering; i++) {
      await attempt("order", `crash-o-${i}`, () => signed("POST", "/open/v1/sync/orders", { rows: [order(`crash-o-${i}`)] }, { "Idempotency-Key": `crash-${i}` }), orderOk);
    }
  })();
  await until("orders acknowledged", () => acked("order").length >= 5, 60_000);
  ordering = false;
  await orders;
  const dirty = async () => (await db.owner.query("select 1 from retail_private.rollup_dirty where tenant_id = $1", [f.a.id])).rowCount === 0;
  expect(await eventually(dirty, 30_000)).toBe(true);
  // Then one more order, on a day whose fold the test trigger holds: the worker dies in the middle of that fold.
  await attempt(
    "order",
    "crash-o-held-day",
    () => signed("POST", "/open/v1/sync/orders", { rows: [order("crash-o-held-day", "2026-04-01T10:00:00+02:00")] }, { "Idempotency-Key": "crash-held-day" }),
    orderOk,
  );
  expect(acked("order")).toContain("crash-o-held-day");
  await until("the fold held", async () => (await heldIn("fold_rollups")) === 1, 30_000);
  // And one on another day while it runs: graphile-worker gives the running job's key to a new job and spends its
  // attempts; the new one folds that day and skips the held one's.
  await attempt(
    "order",
    "crash-o-next-day",
    () => signed("POST", "/open/v1/sync/orders", { rows: [order("crash-o-next-day", "2026-03-02T10:00:00+01:00")] }, { "Idempotency-Key": "crash-next-day" }),
    orderOk,
  );
  expect(acked("order")).toContain("crash-o-next-day");
  const superseded = async () =>
    (
      await db.owner.query(
        "select 1 from graphile_worker.jobs where task_identifier = 'retail_rollups__fold' and locked_at is not null and key is null and attempts >= max_attempts",
      )
    ).rowCount === 1;
  await until("the held fold superseded", superseded, 10_000);

  // Writes held mid-transaction when the process dies: a GraphQL mutation, an Open API create, and (below) a webhook drain.
  const held = [
    attempt("held", "held-gql", () => graphql('mutation { createUser(input: { user: { email: "held-gql@crash.test" } }) { user { rowId } } }'), gqlOk),
    attempt(
      "held",
      "held-open",
      () => signed("POST", "/open/v1/users", { email: "held-open@crash.test" }),
      (res) => res.status === 201,
    ),
  ];
  await until("a GraphQL and an Open API write held", async () => (await heldIn("users")) === 2, 30_000);

  // The load: a client or two per surface.
  const loops = [
    loop((i) => attempt("gql-user", `gql-${i}@crash.test`, () => graphql(`mutation { createUser(input: { user: { email: "gql-${i}@crash.test" } }) { user { rowId } } }`), gqlOk)),
    loop((i) =>
      attempt(
        "gql-store",
        `gql-store-${i}`,
        () => graphql(`mutation { createStore(input: { code: "gql-store-${i}", name: "Store ${i}", timezone: "Asia/Tokyo", currency: "JPY" }) { store { rowId } } }`),
        gqlOk,
      ),
    ),
    loop((i) =>
      attempt(
        "open-user",
        `open-${i}@crash.test`,
        () => signed("POST", "/open/v1/users", { email: `open-${i}@crash.test` }),
        (res) => res.status === 201,
      ),
    ),
    loop((i) =>
      attempt(
        "open-org",
        `open-org-${i}`,
        () => signed("POST", "/open/v1/organizations", { slug: `open-org-${i}`, name: `Org ${i}` }),
        (res) => res.status === 201,
      ),
    ),
    loop((i) =>
      attempt(
        "order-b",
        `crash-ob-${i}`,
        () => signed("POST", "/open/v1/sync/orders", { rows: [order(`crash-ob-${i}`, undefined, "crash-shop-b")] }, { "Idempotency-Key": `crash-b-${i}` }, keyB),
        orderOk,
      ),
    ),
    // A user, an organization, then the user's membership in it: each delivery sent once the ones it needs were acknowledged.
    loop((i) =>
      attempt(
        "clerk",
        `msg_crash_${i}`,
        () =>
          deliver(
            i % 3 === 0
              ? clerkUser(`user_crash_${i}`, `clerk-${i}@crash.test`)
              : i % 3 === 1
                ? clerkOrg(`org_crash_${i}`, `clerk-org-${i}`)
                : clerkMembership(`org_crash_${i - 1}`, `user_crash_${i - 2}`),
            `msg_crash_${i}`,
          ),
        (res) => res.status === 202 || res.status === 200,
      ),
    ),
  ];
  await until(
    "writes acknowledged on every surface",
    () => acked("clerk").length >= 15 && acked("gql-store").length >= 3 && acked("open-user").length >= 3 && acked("open-org").length >= 3 && acked("order-b").length >= 3,
    60_000,
  );

  held.push(
    attempt(
      "held",
      "msg_held",
      () => deliver(clerkUser("user_held", "held-clerk@crash.test"), "msg_held"),
      (res) => res.status === 202,
    ),
  );
  await until("a drain held", async () => (await heldIn("clerk_drain")) === 1, 30_000);
  // The held delivery was acknowledged (stored); only its drain is held.
  await held[2];
  expect(sent.find((s) => s.name === "msg_held")?.acked).toBe(true);
  await new Promise((r) => setTimeout(r, 300));

  const killedAt = Date.now();
  server.child.kill("SIGKILL");
  await server.exited;
  running = false;
  await Promise.all([...loops, ...held]);
  const cutOff = sent.filter((s) => s.acked === null);
  expect(cutOff.length).toBeGreaterThanOrEqual(2);
  expect(sent.filter((s) => s.kind === "held").map((s) => s.acked)).toEqual([null, null, true]);
  await releaseHolds();

  // Before any restart: what was acknowledged is there.
  const q = async (sql: string, params: unknown[]) => (await db.owner.query<{ v: string }>(sql, params)).rows.map((r) => r.v);
  expect((await q("select email as v from authhub.users where email = any($1)", [acked("gql-user")])).sort()).toEqual(acked("gql-user").sort());
  expect((await q("select email as v from authhub.users where email = any($1)", [acked("open-user")])).sort()).toEqual(acked("open-user").sort());
  expect((await q("select slug as v from authhub.organizations where slug = any($1)", [acked("open-org")])).sort()).toEqual(acked("open-org").sort());
  expect((await q("select code as v from retail.stores where code = any($1)", [acked("gql-store")])).sort()).toEqual(acked("gql-store").sort());
  for (const kind of ["order", "order-b"])
    expect((await q("select external_id as v from retail.orders where external_id = any($1)", [acked(kind)])).sort()).toEqual(acked(kind).sort());
  expect((await q("select svix_id as v from authhub.webhook_deliveries where svix_id = any($1)", [acked("clerk")])).sort()).toEqual(acked("clerk").sort());
  // Nothing is there in part: every store has its organization and the reverse, every order its two lines.
  expect(await q("select o.slug as v from authhub.organizations o join retail.stores s on s.tenant_id = o.tenant_id and s.id = o.id where o.slug <> s.code", [])).toEqual([]);
  expect(
    await q(
      "select o.slug as v from authhub.organizations o where o.tenant_id = $1 and o.slug like 'gql-store-%' and not exists (select 1 from retail.stores s where s.tenant_id = o.tenant_id and s.id = o.id)",
      [f.a.id],
    ),
  ).toEqual([]);
  expect(
    await q(
      "select o.external_id as v from retail.orders o where (select count(*) from retail.order_lines l where l.tenant_id = o.tenant_id and l.store_id = o.store_id and l.order_id = o.id) <> 2",
      [],
    ),
  ).toEqual([]);
  // The writes held mid-transaction left nothing.
  expect(await q("select email as v from authhub.users where email like 'held-%'", [])).toEqual([]);
  expect({ ...(await auditMismatches(f.a.id)), ...(await auditMismatches(f.b.id)) }).toEqual({});
  // The dead worker still holds jobs (the fold, the drain): graphile-worker alone would wait four hours.
  expect((await db.owner.query("select 1 from graphile_worker.jobs where locked_at is not null")).rowCount).toBeGreaterThanOrEqual(1);

  // Restart: the same database, a new process.
  server = await startServer(env);
  // The worker finishes what was queued: every delivery applied (or failed for a reason recorded), no job left
  // locked or due, the rollups folded from every paid order.
  const settled = async () => {
    const pending = await db.owner.query("select 1 from authhub.webhook_deliveries where state = 'pending'");
    const jobs = await db.owner.query("select 1 from graphile_worker.jobs where locked_at is not null or (run_at <= now() and attempts < max_attempts)");
    return pending.rowCount === 0 && jobs.rowCount === 0;
  };
  expect(await eventually(settled, 90_000)).toBe(true);
  const { rows: deliveries } = await db.owner.query<{ state: string; n: number }>("select state, count(*)::int as n from authhub.webhook_deliveries group by state");
  expect(deliveries.filter((d) => d.state !== "done")).toEqual([]);
  expect(await q("select email as v from authhub.users where email like 'held-%'", [])).toEqual(["held-clerk@crash.test"]);
  const ackedUsers = sent.filter((s) => s.kind === "clerk" && s.acked && Number(s.name.split("_").at(-1)) % 3 === 0).length;
  expect(Number((await q("select count(*)::text as v from authhub.users where external_id like 'user_crash_%'", []))[0])).toBeGreaterThanOrEqual(ackedUsers);
  const rollup = async (store: string) =>
    (
      await db.owner.query<{ paid: number; folded: number }>(
        `select (select count(*)::int from retail.orders where store_id = $1 and status = 'paid') as paid,
                (select coalesce(sum(orders), 0)::int from retail.daily_store_totals where store_id = $1) as folded`,
        [store],
      )
    ).rows[0]!;
  // Both stores: the one whose fold died with the worker, and the one whose orders synced through the crash.
  for (const store of [storeId, storeB]) expect(await eventually(async () => ((r) => r.paid > 0 && r.folded === r.paid)(await rollup(store)), 30_000)).toBe(true);

  // The audit log still matches, is sealed and verifies.
  expect({ ...(await auditMismatches(f.a.id)), ...(await auditMismatches(f.b.id)) }).toEqual({});
  await db.owner.query("select graphile_worker.add_job('audit_events__seal', '{}'::json, job_key := 'crash-seal')");
  expect(await eventually(async () => (await db.owner.query("select 1 from graphile_worker.jobs where key = 'crash-seal'")).rowCount === 0, 60_000)).toBe(true);
  const verified = await cliJson<{ ok: boolean; seals: number }>(["audit", "verify", "--tenant", "tenant-a"], env);
  expect(verified.ok).toBe(true);
  expect(verified.seals).toBeGreaterThanOrEqual(1);
  const { rows: coverage } = await db.owner.query<{ sealed: number; events: number }>(
    `select (select coalesce(sum(event_count), 0)::int from authhub_private.audit_seals where tenant_id = $1) as sealed,
            (select count(*)::int from authhub.audit_events where tenant_id = $1
               and transaction_id < (select max(to_transaction) from authhub_private.audit_seals where tenant_id = $1)) as events`,
    [f.a.id],
  );
  expect(coverage[0]!.sealed).toBe(coverage[0]!.events);
  expect(
    (await db.owner.query("select 1 from authhub.audit_events where tenant_id = $1 and occurred_at < to_timestamp($2 / 1000.0)", [f.a.id, killedAt])).rowCount,
  ).toBeLessThanOrEqual(coverage[0]!.sealed);
  expect(await server.stop("SIGTERM")).toBe(0);
});
