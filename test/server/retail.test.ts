/**
 * The retail hub over its real surfaces (issue 16): createStore through
 * GraphQL; the Data Sync API signed as a store's system, with Stripe's
 * Idempotency-Key semantics and rejected rows kept; admin edits through
 * GraphQL with optimistic concurrency and the record of store-owned fields;
 * aggregates and the daily rollups (kept by the real worker) under each
 * caller's store visibility; the public catalogue with its cache headers and
 * rate limit; `authhub store create`.
 */
import { jest } from "@jest/globals";
import request from "supertest";
import { signRequest } from "../../client/index.js";
import { makePool } from "../../db/pools.js";
import { makeLogger } from "../../server/logger.js";
import { issueApiKey } from "../../server/openapi/issue.js";
import { startWorker } from "../../worker/runner.js";
import type { TestDatabase } from "../helpers/db.js";
import { cast, type Fixtures } from "../helpers/fixtures.js";
import { cliJson } from "../helpers/process.js";
import { startTestServer, useFixtureServer, type TestServer } from "../helpers/server.js";

jest.setTimeout(90_000);

let db: TestDatabase;
let f: Fixtures;
let srv: TestServer;
const stores: Record<string, string> = {};
let storeKey: { keyId: string; secret: string };

useFixtureServer((database, fixtures, server) => {
  db = database;
  f = fixtures;
  srv = server;
});

/** GraphQL as `who` (a fixture identity's token). */
async function gql(who: Parameters<TestServer["mint"]>[0] | null, query: string, variables: Record<string, unknown> = {}) {
  const req = request(srv.app).post("/graphql").set("Content-Type", "application/json").set("Accept", "application/json");
  if (who) req.set("Authorization", `Bearer ${await srv.mint(who)}`);
  const res = await req.send({ query, variables });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are read field by field, as a client would
  return res.body as { data?: Record<string, any> | null; errors?: { message: string; extensions?: Record<string, any> }[] };
}
const codes = (r: { errors?: { extensions?: Record<string, unknown> }[] }) => (r.errors ?? []).map((e) => e.extensions?.code);

/** A signed Open API request with the store's key. */
function signed(method: string, path: string, body?: unknown, headers: Record<string, string> = {}, key = storeKey) {
  const raw = body === undefined ? undefined : JSON.stringify(body);
  const agent = request(srv.app);
  let req = agent[method.toLowerCase() as "post"](path).set({ ...signRequest({ keyId: key.keyId, secret: key.secret, method, url: path, body: raw }), ...headers });
  if (raw !== undefined) req = req.set("Content-Type", "application/json").send(raw);
  return req;
}

const order = (externalId: string, version: number, extra: Record<string, unknown> = {}) => ({
  externalId,
  version,
  data: {
    number: `N-${externalId}`,
    status: "paid",
    currency: "EUR",
    placedAt: "2026-03-01T10:00:00+01:00",
    lines: [
      { lineNo: 1, sku: "TEA-1", quantity: 2, unitPriceMinor: 450 },
      { lineNo: 2, sku: "CUP-1", quantity: 1, unitPriceMinor: 1200, taxMinor: 228 },
    ],
    ...extra,
  },
});

beforeAll(async () => {
  const { tenantAdmin } = cast(f, f.a);
  // A seller (the fixtures' "child" organization) with a store below it, and one store outside it.
  const made = await gql(
    tenantAdmin,
    `mutation { a: createStore(input: { code: "berlin", name: "Berlin", timezone: "Europe/Berlin", currency: "EUR", parentId: "${f.a.orgs.child}" }) { store { rowId } }
                                        b: createStore(input: { code: "tokyo", name: "Tokyo", timezone: "Asia/Tokyo", currency: "JPY", parentId: "${f.a.orgs.sibling}" }) { store { rowId } } }`,
  );
  expect(made.errors).toBeUndefined();
  stores.berlin = made.data!.a.store.rowId;
  stores.tokyo = made.data!.b.store.rowId;
  const key = await issueApiKey(db.owner, srv.masterKey, { name: "Berlin till", tenantId: f.a.id, organizationId: stores.berlin, scopes: ["sync:write", "retail:read"] });
  storeKey = { keyId: key.keyId, secret: key.secret };
});

describe("stores", () => {
  test("createStore validates its time zone and currency in SQL, naming the field, and creates nothing", async () => {
    const { tenantAdmin } = cast(f, f.a);
    const badZone = await gql(tenantAdmin, 'mutation { createStore(input: { code: "mars", name: "Mars", timezone: "Mars/Base", currency: "EUR" }) { store { rowId } } }');
    expect(codes(badZone)).toEqual(["invalid_input"]);
    expect(badZone.errors![0]!.extensions!.details[0].field).toBe("timezone");
    const badCurrency = await gql(tenantAdmin, 'mutation { createStore(input: { code: "mars", name: "Mars", timezone: "UTC", currency: "XYZ" }) { store { rowId } } }');
    expect(badCurrency.errors![0]!.extensions!.details[0].field).toBe("currency");
    expect((await db.owner.query("select 1 from authhub.organizations where slug = 'mars'")).rowCount).toBe(0);
  });

  test("a seller's admin creates stores below the seller and sees exactly those; a member may not create one", async () => {
    const { orgAdmin, member } = cast(f, f.a);
    const made = await gql(
      orgAdmin,
      `mutation { createStore(input: { code: "potsdam", name: "Potsdam", timezone: "Europe/Berlin", currency: "EUR", parentId: "${f.a.orgs.child}" }) { store { rowId code } } }`,
    );
    expect(made.errors).toBeUndefined();
    const seen = await gql(orgAdmin, "{ stores(orderBy: CODE_ASC) { nodes { code } } }");
    expect(seen.data!.stores.nodes.map((s: { code: string }) => s.code)).toEqual(["berlin", "potsdam"]);
    expect(codes(await gql(member, 'mutation { createStore(input: { code: "nope", name: "Nope" }) { store { rowId } } }'))).toEqual(["forbidden"]);
    // Control: the tenant admin sees all three, the other tenant none of them.
    expect((await gql(cast(f, f.a).tenantAdmin, "{ stores { totalCount } }")).data!.stores.totalCount).toBe(3);
    expect((await gql(cast(f, f.b).tenantAdmin, "{ stores { totalCount } }")).data!.stores.totalCount).toBe(0);
  });
});

describe("the Data Sync API", () => {
  test("an Idempotency-Key is required; the same request answers the first answer and applies nothing twice; another body is 422", async () => {
    const rows = { rows: [order("o-100", 1), order("o-101", 1, { status: "nope" })] };
    expect((await signed("POST", "/open/v1/sync/orders", rows)).body).toMatchObject({ error: { code: "invalid_input", details: [{ field: "Idempotency-Key" }] } });
    const first = await signed("POST", "/open/v1/sync/orders", rows, { "Idempotency-Key": "batch-1" });
    expect(first.status).toBe(200);
    expect(first.body.results.map((r: { status: string }) => r.status)).toEqual(["applied", "rejected"]);
    expect(first.body.results[1].error.details).toContainEqual({ field: "data.status", message: "must be pending, paid, fulfilled, cancelled or refunded" });
    const audit = async () => (await db.owner.query("select count(*)::int as n from authhub.audit_events where table_name in ('orders', 'order_lines')")).rows[0].n as number;
    const before = await audit();
    const again = await signed("POST", "/open/v1/sync/orders", rows, { "Idempotency-Key": "batch-1" });
    expect(again.status).toBe(200);
    expect(again.headers["idempotent-replayed"]).toBe("true");
    expect(again.body).toEqual(first.body);
    expect(await audit()).toBe(before);
    expect((await db.owner.query("select count(*)::int as n from retail.sync_rejects where external_id = 'o-101'")).rows[0].n).toBe(1);
    const other = await signed("POST", "/open/v1/sync/orders", { rows: [order("o-102", 1)] }, { "Idempotency-Key": "batch-1" });
    expect(other.status).toBe(422);
    expect(other.body.error.code).toBe("idempotency_mismatch");
    expect((await db.owner.query("select 1 from retail.orders where external_id = 'o-102'")).rowCount).toBe(0);
  });

  test("while the first request with a key runs, a second one is 409 and changes nothing", async () => {
    await db.owner.query(`
      create function retail_private.test_slow() returns trigger language plpgsql as $$ begin perform pg_sleep(1.5); return new; end $$;
      create trigger test_slow before insert on retail.orders for each row when (new.external_id = 'o-slow') execute function retail_private.test_slow();`);
    try {
      const rows = { rows: [order("o-slow", 1)] };
      const first = signed("POST", "/open/v1/sync/orders", rows, { "Idempotency-Key": "slow-1" }).then((r) => r);
      await new Promise((r) => setTimeout(r, 500));
      const second = await signed("POST", "/open/v1/sync/orders", rows, { "Idempotency-Key": "slow-1" });
      expect(second.status).toBe(409);
      expect(second.body.error.code).toBe("conflict");
      expect((await first).status).toBe(200);
    } finally {
      await db.owner.query("drop trigger test_slow on retail.orders; drop function retail_private.test_slow()");
    }
    expect((await db.owner.query("select count(*)::int as n from retail.orders where external_id = 'o-slow'")).rows[0].n).toBe(1);
  });

  test("a store's key writes only its store, whatever the rows say; rejected rows are listed for it", async () => {
    const res = await signed(
      "POST",
      "/open/v1/sync/customers",
      {
        rows: [
          { externalId: "c-1", version: 1, data: { email: "ada@example.com", name: "Ada" } },
          { externalId: "c-2", version: 1, store: "tokyo", data: { email: "x@example.com" } },
        ],
      },
      { "Idempotency-Key": "cust-1" },
    );
    expect(res.body.results.map((r: { status: string }) => r.status)).toEqual(["applied", "rejected"]);
    expect(res.body.results[1].error.code).toBe("forbidden");
    expect((await db.owner.query("select count(*)::int as n from retail.customers where store_id = $1", [stores.tokyo])).rows[0].n).toBe(0);
    const rejects = await signed("GET", "/open/v1/sync/rejects?entity=customers");
    expect(rejects.status).toBe(200);
    // Its own rejects, including the row that named a store it may not write.
    expect(rejects.body.data.map((r: { externalId: string }) => r.externalId)).toEqual(expect.arrayContaining(["c-2"]));
  });

  test("the Open API document describes the sync routes", async () => {
    const doc = (await request(srv.app).get("/open/v1/openapi.json")).body as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(["/sync/{entity}", "/sync/rejects"]));
  });
});

describe("admin edits, aggregates and rollups", () => {
  test("an update naming a stale version is a conflict and changes nothing; the current one applies and bumps it; a store-owned field's edit is recorded", async () => {
    const { tenantAdmin } = cast(f, f.a);
    const { rows } = await db.owner.query<{ id: string; version: string }>("select id, version from retail.orders where external_id = 'o-100'");
    const id = rows[0]!.id;
    const update = (version: string) =>
      gql(
        tenantAdmin,
        `mutation { updateOrder(input: { tenantId: "${f.a.id}", storeId: "${stores.berlin}", rowId: "${id}", patch: { status: "fulfilled", version: "${version}" } }) { order { status version } } }`,
      );
    const stale = await update(String(Number(rows[0]!.version) - 1 || 99));
    expect(codes(stale)).toEqual(["conflict"]);
    expect((await db.owner.query("select status from retail.orders where id = $1", [id])).rows[0].status).toBe("paid");
    const current = await update(rows[0]!.version);
    expect(current.errors).toBeUndefined();
    expect(current.data!.updateOrder.order).toEqual({ status: "fulfilled", version: String(Number(rows[0]!.version) + 1) });
    const recorded = await gql(tenantAdmin, "{ storeOwnedEdits { nodes { entity fields actor } } }");
    expect(recorded.data!.storeOwnedEdits.nodes).toContainEqual({ entity: "orders", fields: ["status"], actor: `user:${f.a.users.tenantAdmin}` });
  });

  test("aggregates and the daily rollups follow each caller's store visibility; the worker keeps the rollups current", async () => {
    const owner = makePool(db.ownerUrl, { name: "worker", max: 3, acquireTimeoutMs: 10_000 });
    const worker = await startWorker({ ownerPool: owner, logger: makeLogger("silent"), masterKey: srv.masterKey, clerkApiUrl: "http://127.0.0.1:9" });
    try {
      const batch = { rows: [order("o-200", 1), order("o-201", 1, { status: "pending" }), order("o-202", 1, { placedAt: "2026-03-01T23:30:00Z" })] };
      expect((await signed("POST", "/open/v1/sync/orders", batch, { "Idempotency-Key": "rollup-1" })).status).toBe(200);
      const { tenantAdmin, orgAdmin } = cast(f, f.a);
      const totals = async (who: typeof tenantAdmin) =>
        (await gql(who, `{ dailyStoreTotals(condition: { storeId: "${stores.berlin}" }, orderBy: DAY_ASC) { nodes { day currency orders units revenueMinor } } }`)).data!
          .dailyStoreTotals.nodes as {
          day: string;
          orders: number;
        }[];
      let seen: { day: string; orders: number }[] = [];
      for (let i = 0; i < 200; i++) {
        seen = await totals(tenantAdmin);
        if (seen.reduce((n, d) => n + d.orders, 0) === 4) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      // Each order is 2 × 4.50 + 12.00 + 2.28 tax = 23.28 EUR, 3 units. Counted: o-100 (fulfilled), o-slow and
      // o-200 on the 1st; o-202, placed at 23:30Z, is 00:30 on the 2nd in Berlin. o-201 is pending.
      expect(seen).toEqual([
        { day: "2026-03-01", currency: "EUR", orders: 3, units: "9", revenueMinor: "6984" },
        { day: "2026-03-02", currency: "EUR", orders: 1, units: "3", revenueMinor: "2328" },
      ]);
      // The seller's admin sees Berlin's figures; another tenant's admin nothing.
      expect(await totals(orgAdmin)).toEqual(seen);
      expect((await gql(cast(f, f.b).tenantAdmin, "{ dailyStoreTotals { totalCount } orders { totalCount } }")).data).toEqual({
        dailyStoreTotals: { totalCount: 0 },
        orders: { totalCount: 0 },
      });
      // Aggregates under RLS: the seller's admin's sum is Berlin's, grouped by status.
      const agg = await gql(orgAdmin, "{ orders { aggregates { sum { totalMinor } } groupedAggregates(groupBy: [STATUS]) { keys distinctCount { rowId } } } }");
      expect(agg.errors).toBeUndefined();
      // Every Berlin order, whatever its status: o-100, o-slow, o-200, o-201, o-202.
      expect(agg.data!.orders.aggregates.sum.totalMinor).toBe("11640");
      expect(agg.data!.orders.groupedAggregates).toEqual(
        expect.arrayContaining([
          { keys: ["fulfilled"], distinctCount: { rowId: "1" } },
          { keys: ["paid"], distinctCount: { rowId: "3" } },
          { keys: ["pending"], distinctCount: { rowId: "1" } },
        ]),
      );
    } finally {
      await worker.stop();
      await owner.end();
    }
  });
});

describe("the public catalogue", () => {
  beforeAll(async () => {
    const params = [f.a.id, stores.berlin];
    await db.owner.query(
      `insert into retail.products (tenant_id, store_id, id, title, status, published) values
         ($1, $2, '00000000-0000-4000-8000-00000000aa01', 'Green tea', 'active', true),
         ($1, $2, '00000000-0000-4000-8000-00000000aa02', 'Draft tea', 'draft', true),
         ($1, $2, '00000000-0000-4000-8000-00000000aa03', 'Hidden tea', 'active', false)`,
      params,
    );
    await db.owner.query(
      `insert into retail.variants (tenant_id, store_id, product_id, sku, title, price_minor, currency) values
         ($1, $2, '00000000-0000-4000-8000-00000000aa01', 'TEA-1', '100 g', 450, 'EUR'),
         ($1, $2, '00000000-0000-4000-8000-00000000aa01', 'TEA-2', '250 g', 900, 'EUR')`,
      params,
    );
    await db.owner.query("insert into retail.inventory_levels (tenant_id, store_id, sku, on_hand) values ($1, $2, 'TEA-1', 5), ($1, $2, 'TEA-2', 0)", params);
  });

  test("shows published, active products with their variants' price and stock, nothing else, with ETag and Cache-Control", async () => {
    const res = await request(srv.app).get("/catalog/v1/tenant-a/products?store=berlin");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      data: [
        {
          id: "00000000-0000-4000-8000-00000000aa01",
          store: "berlin",
          title: "Green tea",
          variants: [
            { sku: "TEA-1", title: "100 g", priceMinor: 450, currency: "EUR", inStock: true },
            { sku: "TEA-2", title: "250 g", priceMinor: 900, currency: "EUR", inStock: false },
          ],
        },
      ],
      nextCursor: null,
    });
    expect(res.headers["cache-control"]).toBe("public, max-age=60");
    const etag = res.headers.etag!;
    expect((await request(srv.app).get("/catalog/v1/tenant-a/products?store=berlin").set("If-None-Match", etag)).status).toBe(304);
    expect(res.text).not.toMatch(/ada@example|onHand|customer/i);
    // Another tenant's slug shows nothing of tenant A; a bad parameter is refused.
    expect((await request(srv.app).get("/catalog/v1/tenant-b/products?store=berlin")).body.data).toEqual([]);
    expect((await request(srv.app).get("/catalog/v1/tenant-a/products?sort=price")).body.error.details).toEqual([{ field: "sort", message: "is not a known parameter" }]);
  });

  test("each client address has its own rate limit", async () => {
    const limited = await startTestServer(db, { AUTHHUB_CATALOG_RATE_LIMIT_IP: "2" });
    try {
      // The counter is shared with the other server's requests from this address: count from a fresh limit.
      const results: number[] = [];
      for (let i = 0; i < 4; i++) results.push((await request(limited.app).get("/catalog/v1/tenant-a/products")).status);
      expect(results).toContain(429);
    } finally {
      await limited.close();
    }
  });
});

test("`authhub store create` makes a store through the same SQL", async () => {
  const env = { NODE_ENV: "test", DATABASE_URL: db.ownerUrl, AUTHHUB_MASTER_KEY: Buffer.alloc(32, 7).toString("base64") };
  const made = await cliJson<{ code: string; timezone: string; currency: string; parent_id: string | null }>(
    ["store", "create", "--tenant", "tenant-a", "--code", "osaka", "--name", "Osaka", "--parent", "sibling", "--timezone", "Asia/Tokyo", "--currency", "JPY"],
    env,
  );
  expect(made).toMatchObject({ code: "osaka", timezone: "Asia/Tokyo", currency: "JPY", parent_id: f.a.orgs.sibling });
  const audit = await db.owner.query("select actor from authhub.audit_events where table_name = 'stores' and new ->> 'code' = 'osaka'");
  expect(audit.rows).toEqual([{ actor: "system:cli:store-create" }]);
});
