/**
 * Who reads and writes what in the retail hub, from SQL (DESIGN §12; issue 16):
 * every retail table, acting as each role in a rolled-back transaction, across
 * two tenants of the same shape and across the stores of one. Each "sees" is
 * the exact set of stores whose rows came back; each denial is a SQLSTATE or no
 * row affected, backed by the owner's control that the rows exist.
 *
 * The cast (test/db/retail.fixtures.ts): a super admin and a tenant admin; the
 * ORG_ADMIN of a seller with two stores (berlin, potsdam) and the ORG_ADMIN of
 * berlin alone; users holding custom roles (retail:read for berlin, retail:read
 * and retail:write for berlin, retail:read and catalog:write for potsdam,
 * retail:read tenant-wide) and a user holding none; keys bound to berlin
 * (sync:write, retail:read) and to tokyo (sync:write), a tenant-wide sync key,
 * a tenant-wide retail:read key; anonymous.
 */
import { jest } from "@jest/globals";
import { asActor, attemptAs, type Actor, type TestDatabase } from "../helpers/db.js";
import type { Fixtures } from "../helpers/fixtures.js";
import { retailCast, STORE_CODES, useRetailDatabase, type RetailFixtures, type StoreCode } from "./retail.fixtures.js";

jest.setTimeout(120_000);

let db: TestDatabase;
let f: Fixtures;
let r: RetailFixtures;

useRetailDatabase((database, fixtures, retail) => {
  db = database;
  f = fixtures;
  r = retail;
});

type CastName = keyof ReturnType<typeof retailCast>;
const ALL: StoreCode[] = [...STORE_CODES];

/** The label of a store id: "A:berlin", "B:tokyo"… */
function storeLabel(id: string): string {
  for (const [tenant, rt] of [
    ["A", r.a],
    ["B", r.b],
  ] as const) {
    for (const code of STORE_CODES) if (rt.stores[code] === id) return `${tenant}:${code}`;
  }
  return `unknown:${id}`;
}
const labels = (tenant: "A" | "B", codes: StoreCode[]) => codes.map((c) => `${tenant}:${c}`).sort();

/** The stores whose rows of `table` the actor sees, or the SQLSTATE refusing the read. */
async function seenStores(actor: Actor, table: string): Promise<string[] | string> {
  const column = table === "stores" ? "id" : "store_id";
  return asActor(db, actor, async (c) => {
    try {
      const { rows } = await c.query<{ store: string }>(`select distinct ${column} as store from retail.${table}`);
      return rows.map((x) => storeLabel(x.store)).sort();
    } catch (err) {
      return (err as { code: string }).code;
    }
  });
}

const DATA_TABLES = ["stores", "products", "variants", "inventory_levels", "customers", "orders", "order_lines"] as const;
const ROLLUPS = ["daily_store_totals", "daily_product_totals"] as const;

/** What each of tenant A's cast sees: the data tables, the rollups, the hub's edits of store-owned fields, the rejects. */
const SEES: Record<Exclude<CastName, "anonymous">, { data: StoreCode[]; rollups: StoreCode[]; edits: StoreCode[]; rejects: StoreCode[] }> = {
  superAdmin: { data: ALL, rollups: ALL, edits: ALL, rejects: ALL },
  tenantAdmin: { data: ALL, rollups: ALL, edits: ALL, rejects: ALL },
  sellerAdmin: { data: ["berlin", "potsdam"], rollups: ["berlin", "potsdam"], edits: ["berlin", "potsdam"], rejects: ["berlin", "potsdam"] },
  storeAdmin: { data: ["berlin"], rollups: ["berlin"], edits: ["berlin"], rejects: ["berlin"] },
  reader: { data: ["berlin"], rollups: ["berlin"], edits: ["berlin"], rejects: ["berlin"] },
  writer: { data: ["berlin"], rollups: ["berlin"], edits: ["berlin"], rejects: ["berlin"] },
  cataloguer: { data: ["potsdam"], rollups: ["potsdam"], edits: ["potsdam"], rejects: ["potsdam"] },
  tenantReader: { data: ALL, rollups: ALL, edits: ALL, rejects: ALL },
  member: { data: [], rollups: [], edits: [], rejects: [] },
  berlinKey: { data: ["berlin"], rollups: ["berlin"], edits: ["berlin"], rejects: ["berlin"] },
  // sync:write alone reads back what the key writes (its store's rows and rejects), not the rollups nor the hub's edits.
  tokyoKey: { data: ["tokyo"], rollups: [], edits: [], rejects: ["tokyo"] },
  tenantSyncKey: { data: ALL, rollups: [], edits: [], rejects: ALL },
  readerKey: { data: ALL, rollups: ALL, edits: ALL, rejects: ALL },
};

describe("reading", () => {
  test("the data exists in every table for every store of both tenants (the control)", async () => {
    for (const table of [...DATA_TABLES, ...ROLLUPS, "store_owned_edits", "sync_rejects"]) {
      const column = table === "stores" ? "id" : "store_id";
      const { rows } = await db.owner.query<{ store: string }>(`select distinct ${column} as store from retail.${table}`);
      expect([table, rows.map((x) => storeLabel(x.store)).sort()]).toEqual([table, [...labels("A", ALL), ...labels("B", ALL)].sort()]);
    }
  });

  test.each(Object.keys(SEES) as (keyof typeof SEES)[])("%s sees exactly its stores' rows in every table, and nothing of the other tenant", async (name) => {
    const actor = retailCast(f, r.a)[name];
    const expected = SEES[name];
    for (const table of DATA_TABLES) expect([table, await seenStores(actor, table)]).toEqual([table, labels("A", expected.data)]);
    for (const table of ROLLUPS) expect([table, await seenStores(actor, table)]).toEqual([table, labels("A", expected.rollups)]);
    expect(["store_owned_edits", await seenStores(actor, "store_owned_edits")]).toEqual(["store_owned_edits", labels("A", expected.edits)]);
    expect(["sync_rejects", await seenStores(actor, "sync_rejects")]).toEqual(["sync_rejects", labels("A", expected.rejects)]);
  });

  test("the other tenant's cast sees its own stores the same way, none of tenant A's", async () => {
    const b = retailCast(f, r.b);
    for (const table of [...DATA_TABLES, ...ROLLUPS]) {
      expect([table, await seenStores(b.tenantAdmin, table)]).toEqual([table, labels("B", ALL)]);
      expect([table, await seenStores(b.storeAdmin, table)]).toEqual([table, labels("B", ["berlin"])]);
      expect([table, await seenStores(b.berlinKey, table)]).toEqual([table, labels("B", ["berlin"])]);
    }
  });

  test("a tenant A identity or key naming a tenant B store finds nothing there", async () => {
    const a = retailCast(f, r.a);
    for (const actor of [a.superAdmin, a.tenantAdmin, a.tenantSyncKey, a.readerKey]) {
      const n = await asActor(db, actor, async (c) => (await c.query("select 1 from retail.orders where store_id = $1", [r.b.stores.berlin])).rowCount);
      expect(n).toBe(0);
    }
  });

  test("anonymous reads no retail table but the currency list; no request role reads retail_private", async () => {
    for (const table of [...DATA_TABLES, ...ROLLUPS, "store_owned_edits", "sync_rejects", "field_ownership"]) {
      expect([table, await attemptAs(db, "anonymous", `select * from retail.${table}`)]).toEqual([table, "42501"]);
    }
    expect(await attemptAs(db, "anonymous", "select * from retail.currencies where code = 'EUR'")).toBe(1);
    const a = retailCast(f, r.a);
    for (const actor of [a.superAdmin, a.tenantAdmin, a.berlinKey, "anonymous" as const]) {
      for (const table of ["rollup_dirty", "sync_tombstones"]) {
        expect([table, await attemptAs(db, actor, `select * from retail_private.${table}`)]).toEqual([table, "42501"]);
      }
    }
  });

  test("every signed-in caller reads the currency list and who owns which field", async () => {
    const a = retailCast(f, r.a);
    for (const actor of [a.member, a.tokyoKey]) {
      expect(await attemptAs(db, actor, "select * from retail.currencies where code in ('EUR', 'JPY')")).toBe(2);
      expect(await attemptAs(db, actor, "select * from retail.field_ownership where entity = 'orders' and field = 'status'")).toBe(1);
    }
  });
});

describe("writing the store's data", () => {
  interface Target {
    tenant: string;
    store: string;
    product: string;
    order: string;
  }
  let targets: Record<string, Target>;

  beforeAll(async () => {
    targets = {};
    for (const [tenant, rt] of [
      ["A", r.a],
      ["B", r.b],
    ] as const) {
      for (const code of STORE_CODES) {
        const store = rt.stores[code];
        const { rows } = await db.owner.query<{ product: string; order: string }>(
          "select (select id from retail.products where store_id = $1) as product, (select id from retail.orders where store_id = $1) as order",
          [store],
        );
        targets[`${tenant}:${code}`] = { tenant: rt.tenant.id, store, product: rows[0]!.product, order: rows[0]!.order };
      }
    }
  });

  /** Per table: the statements a write test attempts on one store (the update and the delete on the rows `where` names), and the permission they need. */
  const TABLES: { table: string; permission: "catalog:write" | "retail:write"; insert: string; set: string; where: string; params: (t: Target) => unknown[] }[] = [
    {
      table: "products",
      permission: "catalog:write",
      insert: "insert into retail.products (tenant_id, store_id, title) values ($1, $2, 'New')",
      set: "title = 'Renamed'",
      where: "tenant_id = $1 and store_id = $2",
      params: (t) => [t.tenant, t.store],
    },
    {
      table: "variants",
      permission: "catalog:write",
      insert: "insert into retail.variants (tenant_id, store_id, product_id, sku, price_minor, currency) values ($1, $2, $3, 'NEW-1', 1, 'EUR')",
      set: "price_minor = 999",
      where: "tenant_id = $1 and store_id = $2 and product_id = $3",
      params: (t) => [t.tenant, t.store, t.product],
    },
    {
      table: "inventory_levels",
      permission: "catalog:write",
      insert: "insert into retail.inventory_levels (tenant_id, store_id, sku, on_hand) values ($1, $2, 'NEW-1', 1)",
      set: "on_hand = 99, reserved = 1",
      where: "tenant_id = $1 and store_id = $2",
      params: (t) => [t.tenant, t.store],
    },
    {
      // The fixture's customer has an order: deleting it is refused by the foreign key (23503) where the policy allows it.
      table: "customers",
      permission: "retail:write",
      insert: "insert into retail.customers (tenant_id, store_id, email) values ($1, $2, 'new@shop.test')",
      set: "name = 'Renamed'",
      where: "tenant_id = $1 and store_id = $2",
      params: (t) => [t.tenant, t.store],
    },
    {
      table: "orders",
      permission: "retail:write",
      insert: "insert into retail.orders (tenant_id, store_id, number, status, currency, placed_at) values ($1, $2, 'N-new', 'paid', 'EUR', now())",
      set: "status = 'fulfilled'",
      where: "tenant_id = $1 and store_id = $2",
      params: (t) => [t.tenant, t.store],
    },
    {
      table: "order_lines",
      permission: "retail:write",
      insert: "insert into retail.order_lines (tenant_id, store_id, order_id, line_no, sku, quantity, unit_price_minor) values ($1, $2, $3, 9, 'NEW-1', 1, 1)",
      set: "quantity = 3",
      where: "tenant_id = $1 and store_id = $2 and order_id = $3",
      params: (t) => [t.tenant, t.store, t.order],
    },
  ];
  const update = (spec: (typeof TABLES)[number]) => `update retail.${spec.table} set ${spec.set} where ${spec.where}`;
  const deletion = (spec: (typeof TABLES)[number]) => `delete from retail.${spec.table} where ${spec.where}`;

  /** Which of tenant A's stores each actor may write, by permission. */
  const WRITES: Record<Exclude<CastName, "anonymous">, Record<"catalog:write" | "retail:write", StoreCode[]>> = {
    superAdmin: { "catalog:write": ALL, "retail:write": ALL },
    tenantAdmin: { "catalog:write": ALL, "retail:write": ALL },
    sellerAdmin: { "catalog:write": ["berlin", "potsdam"], "retail:write": ["berlin", "potsdam"] },
    storeAdmin: { "catalog:write": ["berlin"], "retail:write": ["berlin"] },
    reader: { "catalog:write": [], "retail:write": [] },
    writer: { "catalog:write": [], "retail:write": ["berlin"] },
    cataloguer: { "catalog:write": ["potsdam"], "retail:write": [] },
    tenantReader: { "catalog:write": [], "retail:write": [] },
    member: { "catalog:write": [], "retail:write": [] },
    // A store system's key writes all of its store's data (sync:write), nothing of another store.
    berlinKey: { "catalog:write": ["berlin"], "retail:write": ["berlin"] },
    tokyoKey: { "catalog:write": ["tokyo"], "retail:write": ["tokyo"] },
    tenantSyncKey: { "catalog:write": ALL, "retail:write": ALL },
    readerKey: { "catalog:write": [], "retail:write": [] },
  };

  const everyStore = () => [...labels("A", ALL), "B:berlin"];

  test.each(Object.keys(WRITES) as (keyof typeof WRITES)[])("%s inserts, updates and deletes exactly in the stores it may write", async (name) => {
    const actor = retailCast(f, r.a)[name];
    for (const spec of TABLES) {
      const allowed = labels("A", WRITES[name][spec.permission]);
      for (const label of everyStore()) {
        const params = spec.params(targets[label]!);
        const may = allowed.includes(label);
        const inserted = await attemptAs(db, actor, spec.insert, params);
        const updated = await attemptAs(db, actor, update(spec), params);
        const deleted = await attemptAs(db, actor, deletion(spec), params);
        // The owner's control: the rows the update and the delete name are there, so a 0 is the policy's.
        const present = (await db.owner.query(`select 1 from retail.${spec.table} where ${spec.where}`, params)).rowCount ?? 0;
        expect([spec.table, label, "present", present > 0]).toEqual([spec.table, label, "present", true]);
        expect([spec.table, label, "insert", inserted]).toEqual([spec.table, label, "insert", may ? 1 : "42501"]);
        expect([spec.table, label, "update", updated]).toEqual([spec.table, label, "update", may ? present : 0]);
        const expectedDelete = may ? (spec.table === "customers" ? "23503" : present) : 0;
        expect([spec.table, label, "delete", deleted]).toEqual([spec.table, label, "delete", expectedDelete]);
      }
    }
  });

  test("anonymous writes nothing", async () => {
    for (const spec of TABLES) {
      const params = spec.params(targets["A:berlin"]!);
      for (const sql of [spec.insert, update(spec), deletion(spec)]) expect([spec.table, await attemptAs(db, "anonymous", sql, params)]).toEqual([spec.table, "42501"]);
    }
  });

  test("nobody moves a row to another store or tenant, nor writes its ids, versions' source or tombstone as a user", async () => {
    const a = retailCast(f, r.a);
    const t = targets["A:berlin"]!;
    for (const actor of [a.superAdmin, a.tenantAdmin, a.berlinKey]) {
      expect(await attemptAs(db, actor, "update retail.orders set store_id = $2 where store_id = $1", [t.store, r.a.stores.potsdam])).toBe("42501");
      expect(await attemptAs(db, actor, "update retail.orders set tenant_id = $2 where store_id = $1", [t.store, f.b.id])).toBe("42501");
      expect(await attemptAs(db, actor, "update retail.order_lines set order_id = order_id where store_id = $1", [t.store])).toBe("42501");
    }
    // Synced bookkeeping is the store system's (its key), not a person's.
    for (const actor of [a.superAdmin, a.tenantAdmin, a.storeAdmin]) {
      expect(await attemptAs(db, actor, "update retail.orders set source_version = 99 where store_id = $1", [t.store])).toBe("42501");
      expect(await attemptAs(db, actor, "update retail.products set deleted_at = now() where store_id = $1", [t.store])).toBe("42501");
      expect(await attemptAs(db, actor, "update retail.customers set external_id = 'x' where store_id = $1", [t.store])).toBe("42501");
    }
    // Totals are computed: nobody writes them, not even a store's key (migration 000015).
    for (const actor of [a.superAdmin, a.tenantAdmin, a.berlinKey, a.tenantSyncKey]) {
      expect(await attemptAs(db, actor, "update retail.orders set total_minor = 1 where store_id = $1", [t.store])).toBe("42501");
      // A line's total is a generated column: PostgreSQL refuses any value for it.
      expect(await attemptAs(db, actor, "update retail.order_lines set total_minor = 1 where store_id = $1", [t.store])).toBe("428C9");
    }
  });

  test("an edit is validated by the database: a named check or domain refuses bad values", async () => {
    const { tenantAdmin } = retailCast(f, r.a);
    const t = targets["A:berlin"]!;
    const bad: [string, unknown[], string][] = [
      ["update retail.order_lines set quantity = 0 where store_id = $1", [t.store], "23514"],
      ["update retail.orders set status = 'lost' where store_id = $1", [t.store], "23514"],
      ["update retail.orders set currency = 'XYZ' where store_id = $1", [t.store], "23503"],
      ["update retail.variants set price_minor = -1 where store_id = $1", [t.store], "23514"],
      ["update retail.variants set sku = 'bad sku' where store_id = $1", [t.store], "23514"],
      ["update retail.stores set timezone = 'Mars/Base' where id = $1", [t.store], "23514"],
    ];
    for (const [sql, params, code] of bad) expect([sql, await attemptAs(db, tenantAdmin, sql, params)]).toEqual([sql, code]);
  });
});

describe("stores", () => {
  const STORE_WRITERS: Record<Exclude<CastName, "anonymous">, StoreCode[]> = {
    superAdmin: ALL,
    tenantAdmin: ALL,
    sellerAdmin: ["berlin", "potsdam"],
    storeAdmin: ["berlin"],
    reader: [],
    writer: ["berlin"],
    cataloguer: [],
    tenantReader: [],
    member: [],
    // A store system's key syncs its store's data; the store's settings are its admins'.
    berlinKey: [],
    tokyoKey: [],
    tenantSyncKey: [],
    readerKey: [],
  };

  test.each(Object.keys(STORE_WRITERS) as (keyof typeof STORE_WRITERS)[])(
    "%s changes the settings of exactly the stores it may (retail:write); nobody deletes one directly",
    async (name) => {
      const actor = retailCast(f, r.a)[name];
      for (const code of STORE_CODES) {
        const n = await attemptAs(db, actor, "update retail.stores set name = 'Renamed', status = 'closed' where id = $1", [r.a.stores[code]]);
        expect([code, n]).toEqual([code, STORE_WRITERS[name].includes(code) ? 1 : 0]);
        expect(await attemptAs(db, actor, "delete from retail.stores where id = $1", [r.a.stores[code]])).toBe("42501");
      }
      expect(await attemptAs(db, actor, "update retail.stores set name = 'Mine' where id = $1", [r.b.stores.berlin])).toBe(0);
    },
  );

  test("a store's code and id are not editable; its code follows its organization's slug", async () => {
    const { tenantAdmin } = retailCast(f, r.a);
    expect(await attemptAs(db, tenantAdmin, "update retail.stores set code = 'other' where id = $1", [r.a.stores.berlin])).toBe("42501");
    expect(await attemptAs(db, tenantAdmin, "update retail.stores set id = $2 where id = $1", [r.a.stores.berlin, r.a.stores.potsdam])).toBe("42501");
    const code = await asActor(db, tenantAdmin, async (c) => {
      await c.query("update authhub.organizations set slug = 'berlin-mitte' where id = $1", [r.a.stores.berlin]);
      return (await c.query<{ code: string }>("select code from retail.stores where id = $1", [r.a.stores.berlin])).rows[0]!.code;
    });
    expect(code).toBe("berlin-mitte");
  });

  test("making an organization a store takes retail:write where it is; a key or a reader cannot", async () => {
    const a = retailCast(f, r.a);
    const insert = "insert into retail.stores (tenant_id, id, name) values ($1, $2, 'New store')";
    expect(await attemptAs(db, a.tenantAdmin, insert, [f.a.id, f.a.orgs.grandchild])).toBe(1);
    expect(await attemptAs(db, a.sellerAdmin, insert, [f.a.id, f.a.orgs.grandchild])).toBe(1);
    expect(await attemptAs(db, a.sellerAdmin, insert, [f.a.id, f.a.orgs.sibling])).toBe("42501");
    for (const actor of [a.storeAdmin, a.reader, a.member, a.berlinKey, a.tenantSyncKey]) expect(await attemptAs(db, actor, insert, [f.a.id, f.a.orgs.grandchild])).toBe("42501");
    expect(await attemptAs(db, a.tenantAdmin, insert, [f.b.id, f.b.orgs.grandchild])).toBe("42501");
  });
});

describe("derived and global tables", () => {
  test("nobody writes the rollups, the record of hub edits or the global lists; rejects are never changed nor removed", async () => {
    const a = retailCast(f, r.a);
    const t = r.a.stores.berlin;
    const statements: [string, unknown[]][] = [
      ["insert into retail.daily_store_totals (tenant_id, store_id, day, currency, orders, units, revenue_minor) values ($1, $2, '2026-01-01', 'EUR', 1, 1, 1)", [f.a.id, t]],
      ["update retail.daily_store_totals set revenue_minor = 0 where store_id = $1", [t]],
      ["delete from retail.daily_product_totals where store_id = $1", [t]],
      ["update retail.store_owned_edits set fields = '{}' where store_id = $1", [t]],
      ["delete from retail.store_owned_edits where store_id = $1", [t]],
      ["update retail.sync_rejects set error = '{}' where store_id = $1", [t]],
      ["delete from retail.sync_rejects where store_id = $1", [t]],
      ["update retail.field_ownership set owner = 'hub'", []],
      ["insert into retail.currencies (code, minor_units, name) values ('XXX', 2, 'X')", []],
    ];
    for (const actor of [a.superAdmin, a.tenantAdmin, a.berlinKey, a.tenantSyncKey]) {
      for (const [sql, params] of statements) expect([sql, await attemptAs(db, actor, sql, params)]).toEqual([sql, "42501"]);
    }
    // Control: the rows are there.
    const { rows } = await db.owner.query(
      "select (select count(*) from retail.daily_store_totals where store_id = $1)::int as totals, (select count(*) from retail.sync_rejects where store_id = $1)::int as rejects",
      [t],
    );
    expect(rows[0]).toEqual({ totals: 1, rejects: 1 });
  });
});
