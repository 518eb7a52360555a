/**
 * The Data Sync API's one SQL write path, retail.sync (DESIGN §13; issue 16),
 * probed from SQL as store systems' keys: what a key may write beside it (no
 * order totals), products and their SKUs (a SKU moving between products, in any
 * order), rows missing required fields, a store's time zone change, the rejects
 * a key may record, versions and tombstones, customers' personal data in the
 * audit log, and the property that a shuffled, duplicated stream ends in the
 * same rows and rollups as the in-order stream.
 */
import { jest } from "@jest/globals";
import type pg from "pg";
import { beginRequestStatement, pgSettingsForApiKey } from "../../db/claims.js";
import { asActor, attemptQuery, rowsOf, type Actor, type TestDatabase } from "../helpers/db.js";
import type { Fixtures } from "../helpers/fixtures.js";
import { prng } from "../helpers/prng.js";
import { retailCast, useRetailDatabase, type RetailFixtures } from "./retail.fixtures.js";

jest.setTimeout(120_000);

let db: TestDatabase;
let f: Fixtures;
let r: RetailFixtures;

useRetailDatabase((database, fixtures, retail) => {
  db = database;
  f = fixtures;
  r = retail;
});

interface Result {
  externalId?: unknown;
  status: "applied" | "unchanged" | "stale" | "rejected";
  error?: { code: string; message: string; details?: { field: string; message: string }[] };
}

/** retail.sync inside the caller's transaction. */
async function sync(c: pg.PoolClient, entity: string, rows: unknown[]): Promise<Result[]> {
  return (await c.query<{ results: Result[] }>("select retail.sync($1, $2::jsonb) as results", [entity, JSON.stringify(rows)])).rows[0]!.results;
}

/** retail.sync as `actor`, committed (as a request's transaction is). */
function syncCommitted(actor: Actor, entity: string, rows: unknown[]): Promise<Result[]> {
  return asActor(db, actor, async (c) => {
    const results = await sync(c, entity, rows);
    await c.query("commit");
    return results;
  });
}

const statuses = (results: Result[]) => results.map((x) => x.status);

const line = (lineNo: number, sku: string, quantity: number, unitPriceMinor: number, extra: Record<string, unknown> = {}) => ({ lineNo, sku, quantity, unitPriceMinor, ...extra });
const orderRow = (externalId: string, version: number, data: Record<string, unknown> = {}, deleted = false) => ({
  externalId,
  version,
  ...(deleted ? { deleted: true } : {}),
  data: {
    number: `N-${externalId}`,
    status: "paid",
    currency: "EUR",
    placedAt: "2026-03-01T10:00:00+01:00",
    lines: [line(1, "TEA-1", 2, 450), line(2, "CUP-1", 1, 1200, { taxMinor: 228, discountMinor: 100 })],
    ...data,
  },
});
const productRow = (externalId: string, version: number, variants: { sku: string; priceMinor?: number }[], deleted = false) => ({
  externalId,
  version,
  ...(deleted ? { deleted: true } : {}),
  data: { title: `Product ${externalId}`, status: "active", published: true, variants: variants.map((v) => ({ sku: v.sku, priceMinor: v.priceMinor ?? 100, currency: "EUR" })) },
});

/** A store made for one test (its own data, committed), with a key bound to it. */
let storeCount = 0;
async function freshStore(timezone = "Europe/Berlin", currency = "EUR"): Promise<{ id: string; code: string; key: Actor; keyId: string }> {
  const code = `fresh-${++storeCount}`;
  const t = f.a;
  const id = (
    await db.owner.query<{ id: string }>("insert into authhub.organizations (tenant_id, slug, name, parent_id) values ($1, $2, $3, $4) returning id", [
      t.id,
      code,
      code,
      t.orgs.child,
    ])
  ).rows[0]!.id;
  await db.owner.query("insert into retail.stores (tenant_id, id, name, timezone, currency) values ($1, $2, $3, $4, $5)", [t.id, id, code, timezone, currency]);
  const keyId = (
    await db.owner.query<{ id: string }>("select (authhub_private.issue_api_key($1, 'Till', '{sync:write,retail:read}', $2, null, null, $3, 'v1.x.y.z', $4)).id as id", [
      `ak_fresh${String(storeCount).padStart(17, "0")}`,
      id,
      "f".repeat(63) + String(storeCount % 10),
      t.id,
    ])
  ).rows[0]!.id;
  return { id, code, keyId, key: { apiKey: { apiKeyId: keyId, tenantId: t.id, orgId: id } } };
}

describe("order totals are computed from the lines only", () => {
  test("a store's key cannot write an order's totals, by UPDATE or INSERT", async () => {
    const { berlinKey } = retailCast(f, r.a);
    await asActor(db, berlinKey, async (c) => {
      expect((await attemptQuery(c, "update retail.orders set total_minor = 1 where external_id = 'o-berlin'")).code).toBe("42501");
      expect((await attemptQuery(c, "update retail.orders set subtotal_minor = 1, discount_minor = 0, tax_minor = 0 where external_id = 'o-berlin'")).code).toBe("42501");
      expect(
        (
          await attemptQuery(
            c,
            "insert into retail.orders (store_id, external_id, number, status, currency, placed_at, total_minor) values ($1, 'o-forged', 'N-forged', 'paid', 'EUR', now(), 999999)",
            [r.a.stores.berlin],
          )
        ).code,
      ).toBe("42501");
    });
    const { rows } = await db.owner.query("select total_minor from retail.orders where tenant_id = $1 and external_id = 'o-berlin'", [f.a.id]);
    expect(rows).toEqual([{ total_minor: "1000" }]);
  });

  test("a synced order's totals are its lines' (subtotal - discount + tax), whatever else the row says", async () => {
    const { berlinKey } = retailCast(f, r.a);
    await asActor(db, berlinKey, async (c) => {
      const results = await sync(c, "orders", [orderRow("o-totals", 1, { totalMinor: 1 })]);
      // totalMinor is not a field of an order's data the hub takes: the row applies, the totals are computed.
      expect(statuses(results)).toEqual(["applied"]);
      const [o] = await rowsOf(c, "select subtotal_minor, discount_minor, tax_minor, total_minor from retail.orders where external_id = 'o-totals'");
      expect(o).toEqual({ subtotal_minor: "2100", discount_minor: "100", tax_minor: "228", total_minor: "2228" });
      // A new version with other lines: the totals follow the lines.
      expect(statuses(await sync(c, "orders", [orderRow("o-totals", 2, { lines: [line(1, "TEA-1", 3, 450)] })]))).toEqual(["applied"]);
      const [o2] = await rowsOf(c, "select total_minor from retail.orders where external_id = 'o-totals'");
      expect(o2).toEqual({ total_minor: "1350" });
    });
  });
});

describe("products", () => {
  test("a product batch applies: the product, its variants replaced as a set", async () => {
    const { berlinKey } = retailCast(f, r.a);
    await asActor(db, berlinKey, async (c) => {
      expect(statuses(await sync(c, "products", [productRow("p-new", 1, [{ sku: "NEW-1" }, { sku: "NEW-2" }])]))).toEqual(["applied"]);
      expect(statuses(await sync(c, "products", [productRow("p-new", 2, [{ sku: "NEW-2", priceMinor: 250 }, { sku: "NEW-3" }])]))).toEqual(["applied"]);
      const variants = await rowsOf(
        c,
        "select v.sku, v.price_minor from retail.variants v join retail.products p on p.tenant_id = v.tenant_id and p.store_id = v.store_id and p.id = v.product_id where p.external_id = 'p-new' order by v.sku",
      );
      expect(variants).toEqual([
        { sku: "NEW-2", price_minor: "250" },
        { sku: "NEW-3", price_minor: "100" },
      ]);
    });
  });

  /** The variants of a store as sku → the external id of its product. */
  const skuOwners = (c: pg.PoolClient) =>
    rowsOf<{ sku: string; product: string }>(
      c,
      "select v.sku, p.external_id as product from retail.variants v join retail.products p on p.tenant_id = v.tenant_id and p.store_id = v.store_id and p.id = v.product_id where p.external_id like 'mv-%' order by v.sku",
    );

  test("a SKU moving between products ends with its new product, whatever order the rows arrive in", async () => {
    const { berlinKey } = retailCast(f, r.a);
    // The store's history: S and T on two products, then S moves from mv-1 to mv-2.
    const p1v1 = productRow("mv-1", 1, [{ sku: "MV-S" }]);
    const p2v1 = productRow("mv-2", 1, [{ sku: "MV-T" }]);
    const p1v2 = productRow("mv-1", 2, []);
    const p2v2 = productRow("mv-2", 2, [{ sku: "MV-S", priceMinor: 300 }, { sku: "MV-T" }]);
    const orders = [
      [p1v1, p2v1, p1v2, p2v2],
      [p1v1, p2v1, p2v2, p1v2],
      [p2v2, p1v1, p2v1, p1v2],
      [p2v2, p1v2, p1v1, p2v1],
      [p1v2, p2v2, p1v1, p2v1],
    ];
    for (const sequence of orders) {
      await asActor(db, berlinKey, async (c) => {
        for (const row of sequence) await sync(c, "products", [row]);
        expect([sequence.map((x) => `${x.externalId}@${x.version}`).join(" "), await skuOwners(c)]).toEqual([
          sequence.map((x) => `${x.externalId}@${x.version}`).join(" "),
          [
            { sku: "MV-S", product: "mv-2" },
            { sku: "MV-T", product: "mv-2" },
          ],
        ]);
        const [price] = await rowsOf(c, "select price_minor from retail.variants where sku = 'MV-S'");
        expect(price).toEqual({ price_minor: "300" });
      });
    }
  });

  test("two product batches of a store at once: a SKU moving between them is not lost whichever commits first", async () => {
    const store = await freshStore();
    await syncCommitted(store.key, "products", [productRow("mv-1", 1, [{ sku: "MV-S" }]), productRow("mv-2", 1, [{ sku: "MV-T" }])]);
    // The move's two rows arrive in two requests at once: mv-2 takes S, mv-1 lets it go.
    const taker = await db.auth.connect();
    const leaver = await db.auth.connect();
    try {
      const apiKey = { apiKeyId: store.keyId, tenantId: f.a.id, orgId: store.id };
      for (const c of [taker, leaver]) await c.query(beginRequestStatement(pgSettingsForApiKey(apiKey, "test-trace-0001")));
      const leaverPid = (await leaver.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0]!.pid;
      await sync(taker, "products", [productRow("mv-2", 2, [{ sku: "MV-S" }, { sku: "MV-T" }])]);
      const leaving = sync(leaver, "products", [productRow("mv-1", 2, [])]);
      // The taker commits only once the leaver waits for it (on a lock: the variant's row, or the store's product batches).
      for (let i = 0; i < 600; i++) {
        const { rows } = await db.owner.query<{ waiting: boolean }>("select exists (select 1 from pg_locks where pid = $1 and not granted) as waiting", [leaverPid]);
        if (rows[0]!.waiting) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await taker.query("commit");
      expect(statuses(await leaving)).toEqual(["applied"]);
      await leaver.query("commit");
    } finally {
      taker.release();
      leaver.release();
    }
    const { rows } = await db.owner.query(
      "select v.sku, p.external_id as product from retail.variants v join retail.products p on p.tenant_id = v.tenant_id and p.store_id = v.store_id and p.id = v.product_id where v.store_id = $1 order by v.sku",
      [store.id],
    );
    expect(rows).toEqual([
      { sku: "MV-S", product: "mv-2" },
      { sku: "MV-T", product: "mv-2" },
    ]);
  });

  test("a deleted product's SKUs go, unless another live product lists them", async () => {
    const { berlinKey } = retailCast(f, r.a);
    await asActor(db, berlinKey, async (c) => {
      await sync(c, "products", [productRow("mv-1", 1, [{ sku: "MV-S" }, { sku: "MV-U" }]), productRow("mv-2", 1, [{ sku: "MV-T" }])]);
      // mv-2 lists S too (the store's move is half-sent), then mv-1 is deleted: S stays, with mv-2; U goes.
      await sync(c, "products", [productRow("mv-2", 2, [{ sku: "MV-S" }, { sku: "MV-T" }])]);
      expect(statuses(await sync(c, "products", [productRow("mv-1", 2, [], true)]))).toEqual(["applied"]);
      expect(await skuOwners(c)).toEqual([
        { sku: "MV-S", product: "mv-2" },
        { sku: "MV-T", product: "mv-2" },
      ]);
    });
  });
});

describe("rows missing required fields are rejected, each with a reason naming the field", () => {
  test("no externalId, no version, no data: rejected (not inserted anew on every sync), and the valid rows apply", async () => {
    const { berlinKey } = retailCast(f, r.a);
    await asActor(db, berlinKey, async (c) => {
      const { externalId: _dropped, ...noId } = orderRow("o-x", 1);
      const { version: _v, ...noVersion } = orderRow("o-no-version", 1);
      const noData = { externalId: "o-no-data", version: 1 };
      const before = await rowsOf(c, "select count(*)::int as n from retail.orders");
      for (let i = 0; i < 2; i++) {
        const results = await sync(c, "orders", [noId, noVersion, noData, orderRow(`o-fine-${i}`, 1)]);
        expect(statuses(results)).toEqual(["rejected", "rejected", "rejected", "applied"]);
        expect(results[0]!.error).toMatchObject({ code: "invalid_input", details: [{ field: "externalId", message: "is required" }] });
        expect(results[1]!.error!.details).toEqual([{ field: "version", message: "is required (a whole number of at least 0)" }]);
        expect(results[2]!.error!.details).toEqual([{ field: "data", message: "must be an object" }]);
      }
      const after = await rowsOf(c, "select count(*)::int as n from retail.orders");
      expect(after[0]!.n).toBe((before[0]!.n as number) + 2);
      expect(await rowsOf(c, "select count(*)::int as n from retail.orders where external_id is null")).toEqual([{ n: 0 }]);
    });
  });

  test("each entity names its missing data fields", async () => {
    const { berlinKey } = retailCast(f, r.a);
    const fields = (results: Result[]) => results.map((x) => (x.error?.details ?? []).map((d) => d.field).sort());
    await asActor(db, berlinKey, async (c) => {
      expect(fields(await sync(c, "products", [{ externalId: "p-empty", version: 1, data: {} }]))).toEqual([["data.status", "data.title", "data.variants"]]);
      expect(fields(await sync(c, "products", [{ externalId: "p-v", version: 1, data: { title: "T", status: "active", variants: [{}] } }]))).toEqual([
        ["data.variants[0].currency", "data.variants[0].priceMinor", "data.variants[0].sku"],
      ]);
      expect(fields(await sync(c, "customers", [{ externalId: "c-empty", version: 1, data: {} }]))).toEqual([["data.email"]]);
      expect(fields(await sync(c, "inventory", [{ externalId: "TEA-berlin", version: 1, data: {} }]))).toEqual([["data.onHand"]]);
      expect(fields(await sync(c, "orders", [{ externalId: "o-empty", version: 1, data: { lines: [{}] } }]))).toEqual([
        ["data.currency", "data.lines[0].lineNo", "data.lines[0].quantity", "data.lines[0].sku", "data.lines[0].unitPriceMinor", "data.number", "data.placedAt", "data.status"],
      ]);
      expect(await rowsOf(c, "select count(*)::int as n from retail.products where external_id in ('p-empty', 'p-v')")).toEqual([{ n: 0 }]);
    });
  });
});

describe("a store's time zone", () => {
  test("changing it moves its orders' local days, and the rollups follow", async () => {
    const store = await freshStore("Europe/Berlin");
    // 02:00 UTC: 1 March in Berlin, 28 February in New York.
    expect(statuses(await syncCommitted(store.key, "orders", [orderRow("o-tz", 1, { placedAt: "2026-03-01T02:00:00Z" })]))).toEqual(["applied"]);
    const day = async () =>
      (await db.owner.query<{ d: string }>("select local_date::text as d from retail.orders where store_id = $1 and external_id = 'o-tz'", [store.id])).rows[0]!.d;
    const totals = async () => {
      await db.owner.query("select retail_private.fold_rollups($1, 1000)", [f.a.id]);
      return (await db.owner.query("select day::text, orders, revenue_minor from retail.daily_store_totals where store_id = $1 order by day", [store.id])).rows;
    };
    expect(await day()).toBe("2026-03-01");
    expect(await totals()).toEqual([{ day: "2026-03-01", orders: 1, revenue_minor: "2228" }]);

    // The store's admin (the seller's, here) moves the store to New York.
    const { sellerAdmin } = retailCast(f, r.a);
    await asActor(db, sellerAdmin, async (c) => {
      expect((await c.query("update retail.stores set timezone = 'America/New_York' where id = $1", [store.id])).rowCount).toBe(1);
      await c.query("commit");
    });
    expect(await day()).toBe("2026-02-28");
    expect(await totals()).toEqual([{ day: "2026-02-28", orders: 1, revenue_minor: "2228" }]);
  });
});

describe("the rejects a caller records", () => {
  const insertReject = "insert into retail.sync_rejects (store_id, entity, external_id, version, error, api_key_id) values ($1, 'orders', 'x', 1, '{}', $2)";

  test("a key records rejects only under its own id, for its own store or for none", async () => {
    const { tokyoKey, berlinKey } = retailCast(f, r.a);
    const tokyoId = r.a.keys.tokyoSync.id;
    const berlinId = r.a.keys.berlinSync.id;
    await asActor(db, tokyoKey, async (c) => {
      expect((await attemptQuery(c, insertReject, [r.a.stores.tokyo, tokyoId])).rowCount).toBe(1);
      expect((await attemptQuery(c, insertReject, [null, tokyoId])).rowCount).toBe(1);
      // Another store, or another key's name, or no key's: refused.
      expect((await attemptQuery(c, insertReject, [r.a.stores.berlin, tokyoId])).code).toBe("42501");
      expect((await attemptQuery(c, insertReject, [r.a.stores.tokyo, berlinId])).code).toBe("42501");
      expect((await attemptQuery(c, insertReject, [r.a.stores.tokyo, null])).code).toBe("42501");
      // Another tenant's store: not one the key may sync (and its foreign key is (tenant_id, store_id), the tenant the key's).
      expect((await attemptQuery(c, insertReject, [r.b.stores.tokyo, tokyoId])).code).toBe("42501");
    });
    await asActor(db, berlinKey, async (c) => {
      expect((await attemptQuery(c, insertReject, [r.a.stores.tokyo, berlinId])).code).toBe("42501");
    });
  });

  test("a key without sync:write records none; a user records none under a key's id", async () => {
    const { readerKey, tenantAdmin, member } = retailCast(f, r.a);
    await asActor(db, readerKey, async (c) => {
      expect((await attemptQuery(c, insertReject, [null, r.a.keys.tenantReader.id])).code).toBe("42501");
      expect((await attemptQuery(c, insertReject, [r.a.stores.berlin, r.a.keys.tenantReader.id])).code).toBe("42501");
    });
    await asActor(db, tenantAdmin, async (c) => {
      expect((await attemptQuery(c, insertReject, [r.a.stores.berlin, r.a.keys.berlinSync.id])).code).toBe("42501");
      expect((await attemptQuery(c, insertReject, [r.a.stores.berlin, null])).rowCount).toBe(1);
    });
    await asActor(db, member, async (c) => {
      expect((await attemptQuery(c, insertReject, [null, null])).code).toBe("42501");
    });
  });

  test("the sync itself still records a key's rejects, a row naming a store it may not write without a store", async () => {
    const { berlinKey } = retailCast(f, r.a);
    await asActor(db, berlinKey, async (c) => {
      const results = await sync(c, "orders", [{ ...orderRow("o-elsewhere", 1), store: "tokyo" }, orderRow("o-bad", 1, { status: "nope" })]);
      expect(results.map((x) => x.error?.code)).toEqual(["forbidden", "invalid_input"]);
      const rejects = await rowsOf(c, "select store_id, external_id, api_key_id from retail.sync_rejects where external_id in ('o-elsewhere', 'o-bad') order by external_id");
      expect(rejects).toEqual([
        { store_id: r.a.stores.berlin, external_id: "o-bad", api_key_id: r.a.keys.berlinSync.id },
        { store_id: null, external_id: "o-elsewhere", api_key_id: r.a.keys.berlinSync.id },
      ]);
    });
  });
});

describe("versions and tombstones (issue 16, item 2)", () => {
  test("version is bumped on every change, by a sync, an edit or a recomputed total; a replay changes nothing", async () => {
    const { berlinKey, writer } = retailCast(f, r.a);
    const version = async (c: pg.PoolClient, sql: string) => Number((await rowsOf<{ version: string }>(c, sql))[0]!.version);
    await asActor(db, berlinKey, async (c) => {
      await sync(c, "orders", [orderRow("o-ver", 1)]);
      const q = "select version from retail.orders where external_id = 'o-ver'";
      const v1 = await version(c, q);
      expect(statuses(await sync(c, "orders", [orderRow("o-ver", 1)]))).toEqual(["unchanged"]);
      expect(await version(c, q)).toBe(v1);
      // A new version whose lines differ: the order's fields and its totals change; each change bumps.
      await sync(c, "orders", [orderRow("o-ver", 2, { status: "fulfilled", lines: [line(1, "TEA-1", 5, 450)] })]);
      expect(await version(c, q)).toBeGreaterThan(v1);
      const lineVersion = await version(c, "select l.version from retail.order_lines l join retail.orders o on o.id = l.order_id where o.external_id = 'o-ver' and l.line_no = 1");
      expect(lineVersion).toBe(2);
      await sync(c, "customers", [{ externalId: "c-ver", version: 1, data: { email: "a@b.test" } }]);
      await sync(c, "customers", [{ externalId: "c-ver", version: 2, data: { email: "a@b.test", name: "A" } }]);
      expect(await version(c, "select version from retail.customers where external_id = 'c-ver'")).toBe(2);
      await sync(c, "inventory", [{ externalId: "INV-1", version: 1, data: { onHand: 3 } }]);
      await sync(c, "inventory", [{ externalId: "INV-1", version: 2, data: { onHand: 4 } }]);
      expect(await version(c, "select version from retail.inventory_levels where sku = 'INV-1'")).toBe(2);
      await sync(c, "products", [productRow("p-ver", 1, [{ sku: "VER-1" }])]);
      await sync(c, "products", [productRow("p-ver", 2, [{ sku: "VER-1", priceMinor: 999 }])]);
      expect(await version(c, "select version from retail.products where external_id = 'p-ver'")).toBe(2);
      expect(await version(c, "select version from retail.variants where sku = 'VER-1'")).toBe(2);
    });
    // An admin's edit of every table bumps each row's version by one.
    await asActor(db, writer, async (c) => {
      for (const [table, set] of [
        ["stores", "name = 'Berlin Mitte'"],
        ["customers", "name = 'Changed'"],
        ["orders", "status = 'fulfilled'"],
        ["order_lines", "title = 'Changed'"],
      ] as const) {
        const where = table === "stores" ? "id = $1" : "store_id = $1";
        const before = await rowsOf<{ version: string }>(c, `select version from retail.${table} where ${where} order by 1`, [r.a.stores.berlin]);
        await c.query(`update retail.${table} set ${set} where ${where}`, [r.a.stores.berlin]);
        const after = await rowsOf<{ version: string }>(c, `select version from retail.${table} where ${where} order by 1`, [r.a.stores.berlin]);
        expect([table, after.map((x) => Number(x.version))]).toEqual([table, before.map((x) => Number(x.version) + 1)]);
      }
    });
  });

  test("a deletion leaves a tombstone that a late older row cannot undo, for rows held and never held", async () => {
    const { berlinKey } = retailCast(f, r.a);
    await asActor(db, berlinKey, async (c) => {
      for (const [entity, row] of [
        ["orders", (v: number, deleted = false) => orderRow("o-tomb", v, {}, deleted)],
        ["products", (v: number, deleted = false) => productRow("p-tomb", v, [{ sku: "TOMB-1" }], deleted)],
        ["customers", (v: number, deleted = false) => ({ externalId: "c-tomb", version: v, ...(deleted ? { deleted: true } : {}), data: { email: "t@b.test" } })],
        ["inventory", (v: number, deleted = false) => ({ externalId: "TOMB-1", version: v, ...(deleted ? { deleted: true } : {}), data: { onHand: 1, location: "back" } })],
      ] as const) {
        // Held: created at 1, deleted at 3; a late 2 is stale and the row stays deleted.
        expect([entity, statuses(await sync(c, entity, [row(1)]))]).toEqual([entity, ["applied"]]);
        expect(statuses(await sync(c, entity, [row(3, true)]))).toEqual(["applied"]);
        expect(statuses(await sync(c, entity, [row(2)]))).toEqual(["stale"]);
        expect(statuses(await sync(c, entity, [row(3, true)]))).toEqual(["unchanged"]);
        expect(statuses(await sync(c, entity, [row(4)]))).toEqual(["applied"]);
      }
      const live = await rowsOf(
        c,
        `select (select deleted_at is null from retail.orders where external_id = 'o-tomb') as o, (select deleted_at is null from retail.products where external_id = 'p-tomb') as p,
                (select deleted_at is null from retail.customers where external_id = 'c-tomb') as c, (select deleted_at is null from retail.inventory_levels where sku = 'TOMB-1' and location = 'back') as i`,
      );
      expect(live).toEqual([{ o: true, p: true, c: true, i: true }]);
      // Never held: the deletion comes first; the older creation arriving later is stale and makes nothing.
      expect(statuses(await sync(c, "orders", [orderRow("o-ghost", 5, {}, true)]))).toEqual(["applied"]);
      expect(statuses(await sync(c, "orders", [orderRow("o-ghost", 4)]))).toEqual(["stale"]);
      expect(statuses(await sync(c, "inventory", [{ externalId: "GHOST-1", version: 5, deleted: true, data: { location: "back" } }]))).toEqual(["applied"]);
      expect(statuses(await sync(c, "inventory", [{ externalId: "GHOST-1", version: 4, data: { onHand: 9, location: "back" } }]))).toEqual(["stale"]);
      expect(
        await rowsOf(
          c,
          "select (select count(*) from retail.orders where external_id = 'o-ghost')::int as o, (select count(*) from retail.inventory_levels where sku = 'GHOST-1')::int as i",
        ),
      ).toEqual([{ o: 0, i: 0 }]);
      // In one batch: the deletion and an older row, in either order.
      expect(
        statuses(
          await sync(c, "customers", [
            { externalId: "c-one", version: 2, deleted: true },
            { externalId: "c-one", version: 1, data: { email: "o@b.test" } },
          ]),
        ),
      ).toEqual(["applied", "stale"]);
      expect(await rowsOf(c, "select count(*)::int as n from retail.customers where external_id = 'c-one' and deleted_at is null")).toEqual([{ n: 0 }]);
    });
  });

  test("customers' events (e-mail and name) are in the audit log for tenant admins only", async () => {
    const { tenantAdmin, storeAdmin, sellerAdmin, superAdmin } = retailCast(f, r.a);
    const tables = (actor: Actor) =>
      asActor(db, actor, async (c) =>
        (await rowsOf<{ table_name: string }>(c, "select distinct table_name from authhub.audit_events where organization_id = $1 order by 1", [r.a.stores.berlin])).map(
          (x) => x.table_name,
        ),
      );
    // Control: the customer's events exist, with its e-mail.
    const { rows } = await db.owner.query("select new ->> 'email' as email from authhub.audit_events where table_name = 'customers' and organization_id = $1", [r.a.stores.berlin]);
    expect(rows).toContainEqual({ email: "ada@berlin.test" });
    for (const admin of [tenantAdmin, superAdmin]) expect(await tables(admin)).toEqual(expect.arrayContaining(["customers", "orders", "products"]));
    for (const admin of [storeAdmin, sellerAdmin]) {
      const seen = await tables(admin);
      expect(seen).toEqual(expect.arrayContaining(["orders", "products"]));
      expect(seen).not.toContain("customers");
    }
    // The other tenant's admin sees none of tenant A's events.
    expect(await tables(retailCast(f, r.b).tenantAdmin)).toEqual([]);
  });
});

interface StreamRow {
  entity: "products" | "inventory" | "customers" | "orders";
  row: Record<string, unknown>;
}

/** A store's history of changes, in order: versions rising per row, deletions, SKUs moving between products. */
function history(random: () => number): StreamRow[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const skus = ["S-1", "S-2", "S-3", "S-4", "S-5", "S-6"];
  const out: StreamRow[] = [];
  const versions = new Map<string, number>();
  const next = (key: string) => {
    const v = (versions.get(key) ?? 0) + 1 + Math.floor(random() * 3);
    versions.set(key, v);
    return v;
  };
  // Products: each SKU on one product at a time; moves happen as the store would send them (two rows).
  const owner = new Map<string, string>(skus.map((s, i) => [s, `pp-${i % 3}`]));
  const productRowOf = (p: string, deleted = false) => {
    const listed = skus.filter((s) => owner.get(s) === p);
    return {
      entity: "products" as const,
      row: {
        ...productRow(
          p,
          next(`p:${p}`),
          listed.map((sku) => ({ sku, priceMinor: 100 + skus.indexOf(sku) })),
        ),
        ...(deleted ? { deleted: true } : {}),
      },
    };
  };
  for (const p of ["pp-0", "pp-1", "pp-2"]) out.push(productRowOf(p));
  for (let step = 0; step < 24; step++) {
    const kind = random();
    if (kind < 0.2) {
      const sku = pick(skus);
      const from = owner.get(sku)!;
      const to = pick(["pp-0", "pp-1", "pp-2"].filter((p) => p !== from));
      owner.set(sku, to);
      out.push(productRowOf(from), productRowOf(to));
    } else if (kind < 0.35) {
      const c = pick(["cc-0", "cc-1", "cc-2"]);
      const deleted = random() < 0.2;
      out.push({
        entity: "customers",
        row: { externalId: c, version: next(`c:${c}`), ...(deleted ? { deleted: true } : {}), data: { email: `${c}-${step}@shop.test`, name: `Name ${step}` } },
      });
    } else if (kind < 0.5) {
      const sku = pick(skus);
      const deleted = random() < 0.15;
      out.push({
        entity: "inventory",
        row: {
          externalId: sku,
          version: next(`i:${sku}`),
          ...(deleted ? { deleted: true } : {}),
          data: { onHand: Math.floor(random() * 50), location: pick(["default", "back"]) },
        },
      });
    } else {
      const o = pick(["oo-0", "oo-1", "oo-2", "oo-3", "oo-4"]);
      const deleted = random() < 0.15;
      const lines = Array.from({ length: 1 + Math.floor(random() * 3) }, (_, i) =>
        line(i + 1, pick(skus), 1 + Math.floor(random() * 4), 100 + Math.floor(random() * 900), { taxMinor: Math.floor(random() * 50) }),
      );
      out.push({
        entity: "orders",
        row: {
          ...orderRow(o, next(`o:${o}`), {
            status: pick(["pending", "paid", "fulfilled", "cancelled", "paid"]),
            placedAt: pick(["2026-03-01T10:00:00+01:00", "2026-03-01T23:30:00Z", "2026-03-02T00:30:00+01:00"]),
            customerExternalId: pick(["cc-0", "cc-1", "cc-2"]),
            lines,
          }),
          ...(deleted ? { deleted: true } : {}),
        },
      });
    }
  }
  return out;
}

/**
 * Everything live a store holds that the stream decides, by the store's own keys
 * (no hub ids, counters or times). Tombstones are left out: a row deleted before
 * the hub ever held it leaves a tombstone in retail_private.sync_tombstones, one
 * deleted later a tombstoned row; neither is live data, and both refuse older rows.
 */
async function storeState(storeId: string) {
  const q = async (sql: string) => (await db.owner.query(sql, [storeId])).rows;
  return {
    products: await q("select external_id, title, status, published, source_version from retail.products where store_id = $1 and deleted_at is null order by external_id"),
    variants: await q(
      "select v.sku, p.external_id as product, v.price_minor, v.currency from retail.variants v join retail.products p on p.tenant_id = v.tenant_id and p.store_id = v.store_id and p.id = v.product_id where v.store_id = $1 order by v.sku",
    ),
    inventory: await q("select sku, location, on_hand, source_version from retail.inventory_levels where store_id = $1 and deleted_at is null order by sku, location"),
    customers: await q("select external_id, email, name, source_version from retail.customers where store_id = $1 and deleted_at is null order by external_id"),
    orders: await q(
      `select o.external_id, o.number, o.status, o.currency, o.placed_at, o.local_date::text, o.customer_external_id,
              case when c.deleted_at is null then c.external_id end as customer,
              o.subtotal_minor, o.discount_minor, o.tax_minor, o.total_minor, o.source_version
       from retail.orders o left join retail.customers c on c.tenant_id = o.tenant_id and c.store_id = o.store_id and c.id = o.customer_id
       where o.store_id = $1 and o.deleted_at is null order by o.external_id`,
    ),
    lines: await q(
      `select o.external_id, l.line_no, l.sku, l.quantity, l.unit_price_minor, l.tax_minor, l.total_minor
       from retail.order_lines l join retail.orders o on o.tenant_id = l.tenant_id and o.store_id = l.store_id and o.id = l.order_id
       where l.store_id = $1 and o.deleted_at is null order by 1, 2`,
    ),
    storeTotals: await q("select day::text, currency, orders, units, revenue_minor from retail.daily_store_totals where store_id = $1 order by day, currency"),
    productTotals: await q("select day::text, sku, units, revenue_minor from retail.daily_product_totals where store_id = $1 order by day, sku"),
  };
}

/** Applies a stream in batches of one entity each, as a store's system would send it. */
async function apply(key: Actor, stream: StreamRow[], batchSize: (i: number) => number) {
  let i = 0;
  let batch = 0;
  while (i < stream.length) {
    const entity = stream[i]!.entity;
    const rows: Record<string, unknown>[] = [];
    const size = batchSize(batch++);
    while (i < stream.length && stream[i]!.entity === entity && rows.length < size) rows.push(stream[i++]!.row);
    const results = await syncCommitted(key, entity, rows);
    expect(results.filter((x) => x.status === "rejected")).toEqual([]);
  }
}

describe("a shuffled, duplicated stream (issue 16, item 3: a property)", () => {
  test.each([1, 2, 3])("ends in the same rows and rollups as the in-order stream (seed %i)", async (seed) => {
    const random = prng(seed);
    const stream = history(random);
    const inOrder = await freshStore("Europe/Berlin");
    const shuffled = await freshStore("Europe/Berlin");
    await apply(inOrder.key, stream, () => 1);
    // Shuffle, with about a third of the rows sent twice.
    const noisy = [...stream, ...stream.filter(() => random() < 0.35)];
    for (let k = noisy.length - 1; k > 0; k--) {
      const j = Math.floor(random() * (k + 1));
      [noisy[k], noisy[j]] = [noisy[j]!, noisy[k]!];
    }
    await apply(shuffled.key, noisy, () => 1 + Math.floor(random() * 6));
    await db.owner.query("select retail_private.fold_rollups($1, 100000)", [f.a.id]);
    const expected = await storeState(inOrder.id);
    expect(expected.orders.length).toBeGreaterThan(0);
    expect(await storeState(shuffled.id)).toEqual(expected);
  });
});

describe("the rollup sweep", () => {
  test("folds again the days a failed or superseded fold left dirty (marked over a minute ago), and leaves fresh marks to their own jobs", async () => {
    const { runTask } = await import("../helpers/worker.js");
    const berlin = r.a.stores.berlin;
    const potsdam = r.a.stores.potsdam;
    const rollup = async (store: string) =>
      (await db.owner.query("select day::text, orders, revenue_minor::text from retail.daily_store_totals where store_id = $1 order by day", [store])).rows;
    const [berlinBefore, potsdamBefore] = [await rollup(berlin), await rollup(potsdam)];
    expect(berlinBefore.length).toBeGreaterThan(0);
    // As a fold that died would leave them: the rollups gone stale and the days still marked,
    // Berlin's long ago and Potsdam's just now, and no fold job queued for them.
    await db.owner.query("delete from retail.daily_store_totals where store_id = any($1)", [[berlin, potsdam]]);
    await db.owner.query(
      `insert into retail_private.rollup_dirty (tenant_id, store_id, day, marked_at)
       select tenant_id, store_id, local_date, case when store_id = $2 then now() - interval '5 minutes' else now() end
       from retail.orders where store_id = any($1) group by 1, 2, 3
       on conflict (tenant_id, store_id, day) do update set marked_at = excluded.marked_at`,
      [[berlin, potsdam], berlin],
    );
    await db.owner.query("select graphile_worker.remove_job('retail-rollups:' || $1)", [f.a.id]);

    const potsdamMarks = "select count(*)::int as n from retail_private.rollup_dirty where store_id = $1";
    const potsdamMarked = (await db.owner.query(potsdamMarks, [potsdam])).rows[0].n;
    expect(potsdamMarked).toBeGreaterThan(0);
    // Only the stale mark's tenant gets a fold (it folds every dirty day of the tenant, Potsdam's too).
    await runTask(db, "retail_rollups__sweep");
    expect(await rollup(berlin)).toEqual(berlinBefore);
    expect(await rollup(potsdam)).toEqual(potsdamBefore);
    expect((await db.owner.query("select count(*)::int as n from retail_private.rollup_dirty where store_id = any($1)", [[berlin, potsdam]])).rows[0].n).toBe(0);

    // A fresh mark alone queues nothing: its writer's own job is due.
    await db.owner.query(
      "insert into retail_private.rollup_dirty (tenant_id, store_id, day) select tenant_id, store_id, local_date from retail.orders where store_id = $1 group by 1, 2, 3",
      [potsdam],
    );
    expect((await db.owner.query<{ n: number }>("select retail_private.sweep_rollups() as n")).rows[0]!.n).toBe(0);
    await db.owner.query("delete from retail_private.rollup_dirty where store_id = $1", [potsdam]);
  });

  test("is the worker's alone", async () => {
    const cast = retailCast(f, r.a);
    for (const actor of [cast.tenantAdmin, cast.storeAdmin, cast.berlinKey]) {
      await asActor(db, actor, async (c) => {
        expect((await attemptQuery(c, "select retail_private.sweep_rollups()")).code).toBe("42501");
      });
    }
  });
});
