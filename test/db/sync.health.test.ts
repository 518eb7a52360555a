/**
 * Sync health as data (DESIGN §13; issue 17): retail.sync_statuses is kept by
 * the write path itself (a push counts as push, a source's key as pull), and
 * read only by the store's admins (ORG_ADMIN of the store or above it) and the
 * tenant's admins; custom retail roles, keys, members and other tenants see
 * nothing, and nobody writes it directly. Each denial is backed by the owner's
 * control query.
 */
import { jest } from "@jest/globals";
import type pg from "pg";
import { asActor, attemptQuery, rowsOf, type Actor, type TestDatabase } from "../helpers/db.js";
import { useFixtureDatabase, type Fixtures } from "../helpers/fixtures.js";
import { retailCast, seedRetail, type RetailFixtures } from "./retail.fixtures.js";

jest.setTimeout(120_000);

let db: TestDatabase;
let f: Fixtures;
let r: RetailFixtures;

const customerRow = (externalId: string, version: number, extra: Record<string, unknown> = {}) => ({ externalId, version, data: { email: `${externalId}@shop.test` }, ...extra });

async function syncCommitted(actor: Actor, entity: string, rows: unknown[]): Promise<{ status: string }[]> {
  return asActor(db, actor, async (c) => {
    const results = (await c.query<{ r: { status: string }[] }>("select retail.sync($1, $2::jsonb) as r", [entity, JSON.stringify(rows)])).rows[0]!.r;
    await c.query("commit");
    return results;
  });
}

useFixtureDatabase(async (database, fixtures) => {
  db = database;
  f = fixtures;
  r = await seedRetail(db, f);
  // Every store of both tenants pushes a little through its keys.
  for (const t of [r.a, r.b]) {
    const cast = retailCast(f, t);
    await syncCommitted(cast.berlinKey, "customers", [customerRow("h-1", 1), customerRow("h-2", 2), customerRow("h-bad", 1, { data: { email: "nope" } })]);
    await syncCommitted(cast.berlinKey, "customers", [customerRow("h-1", 1), customerRow("h-2", 1)]);
    await syncCommitted(cast.tokyoKey, "customers", [customerRow("t-1", 5)]);
    await syncCommitted(cast.tenantSyncKey, "customers", [{ ...customerRow("p-1", 7), store: "potsdam" }]);
  }
});

const visible = (c: pg.PoolClient) =>
  rowsOf<{ store_id: string; entity: string; source_kind: string }>(c, "select store_id, entity, source_kind from retail.sync_statuses order by store_id").then((rows) =>
    rows.map((x) => x.store_id),
  );

describe("the write path keeps the counts", () => {
  test("a push counts applied, unchanged, stale and rejected rows per store and entity, with the last version applied", async () => {
    const { rows } = await db.owner.query(
      "select applied_count::int as applied, unchanged_count::int as unchanged, stale_count::int as stale, rejected_count::int as rejected, last_version_applied::int as version, last_success_at is not null as ok, lag from retail.sync_statuses where tenant_id = $1 and store_id = $2 and entity = 'customers' and source_kind = 'push'",
      [f.a.id, r.a.stores.berlin],
    );
    expect(rows).toEqual([{ applied: 2, unchanged: 1, stale: 1, rejected: 1, version: 2, ok: true, lag: null }]);
    // A tenant-wide key's row counts for the store it named.
    const potsdam = await db.owner.query("select applied_count::int as applied from retail.sync_statuses where tenant_id = $1 and store_id = $2", [f.a.id, r.a.stores.potsdam]);
    expect(potsdam.rows).toEqual([{ applied: 1 }]);
    // The reject is kept as pushed.
    const rejects = await db.owner.query("select source_kind from retail.sync_rejects where tenant_id = $1 and store_id = $2 and external_id = 'h-bad'", [
      f.a.id,
      r.a.stores.berlin,
    ]);
    expect(rejects.rows).toEqual([{ source_kind: "push" }]);
  });

  test("a row naming a store the key may not write is counted nowhere", async () => {
    const { berlinKey } = retailCast(f, r.a);
    const results = await syncCommitted(berlinKey, "customers", [{ ...customerRow("x-1", 1), store: "tokyo" }]);
    expect(results.map((x) => x.status)).toEqual(["rejected"]);
    const { rows } = await db.owner.query("select rejected_count::int as n from retail.sync_statuses where tenant_id = $1 and store_id = $2 and source_kind = 'push'", [
      f.a.id,
      r.a.stores.tokyo,
    ]);
    expect(rows).toEqual([{ n: 0 }]);
  });
});

describe("who reads sync health", () => {
  test("tenant admins read every store of their tenant; super admins theirs", async () => {
    const a = retailCast(f, r.a);
    const all = [r.a.stores.berlin, r.a.stores.potsdam, r.a.stores.tokyo].sort();
    expect((await asActor(db, a.tenantAdmin, visible)).sort()).toEqual(all);
    expect((await asActor(db, a.superAdmin, visible)).sort()).toEqual(all);
    const b = retailCast(f, r.b);
    expect((await asActor(db, b.tenantAdmin, visible)).sort()).toEqual([r.b.stores.berlin, r.b.stores.potsdam, r.b.stores.tokyo].sort());
  });

  test("a seller's admins read the stores below them, a store's admin that store only", async () => {
    const a = retailCast(f, r.a);
    expect((await asActor(db, a.sellerAdmin, visible)).sort()).toEqual([r.a.stores.berlin, r.a.stores.potsdam].sort());
    expect(await asActor(db, a.storeAdmin, visible)).toEqual([r.a.stores.berlin]);
  });

  test("custom retail roles, members, keys (even the store's own) and anonymous callers read nothing", async () => {
    const a = retailCast(f, r.a);
    for (const actor of [a.reader, a.writer, a.cataloguer, a.tenantReader, a.member, a.berlinKey, a.tenantSyncKey, a.readerKey]) {
      expect(await asActor(db, actor, visible)).toEqual([]);
    }
    expect(await asActor(db, "anonymous", async (c) => (await attemptQuery(c, "select * from retail.sync_statuses")).code)).toBe("42501");
    // The control: the rows are there.
    const { rows } = await db.owner.query("select count(*)::int as n from retail.sync_statuses where tenant_id = $1", [f.a.id]);
    expect(rows[0].n).toBeGreaterThanOrEqual(3);
  });

  test("nobody writes the counters directly, not even a tenant admin or the store's key", async () => {
    const a = retailCast(f, r.a);
    for (const actor of [a.tenantAdmin, a.storeAdmin, a.berlinKey]) {
      await asActor(db, actor, async (c) => {
        expect((await attemptQuery(c, "update retail.sync_statuses set applied_count = 0")).code).toBe("42501");
        expect((await attemptQuery(c, "delete from retail.sync_statuses")).code).toBe("42501");
        expect(
          (await attemptQuery(c, "insert into retail.sync_statuses (tenant_id, store_id, entity, source_kind) values ($1, $2, 'orders', 'push')", [f.a.id, r.a.stores.berlin]))
            .code,
        ).toBe("42501");
      });
    }
    const { rows } = await db.owner.query("select applied_count::int as n from retail.sync_statuses where tenant_id = $1 and store_id = $2 and source_kind = 'push'", [
      f.a.id,
      r.a.stores.berlin,
    ]);
    expect(rows).toEqual([{ n: 2 }]);
  });

  test("a pull's cursor moves only by its source's own key: not a tenant admin, the store's admin or another store key", async () => {
    const a = retailCast(f, r.a);
    // tokyo's pull source, acting as tokyo's sync key.
    const sourceId = (
      await db.owner.query<{ id: string }>(
        "insert into retail_private.sync_sources (tenant_id, store_id, url_encrypted, api_key_id) values ($1, $2, 'v1.x.y.z', $3) returning id",
        [f.a.id, r.a.stores.tokyo, r.a.keys.tokyoSync.id],
      )
    ).rows[0]!.id;
    const cursor = async () =>
      (await db.owner.query<{ external_id: string }>("select external_id from retail_private.sync_source_cursors where tenant_id = $1 and source_id = $2", [f.a.id, sourceId]))
        .rows;
    const advance = (c: pg.PoolClient, externalId: string) =>
      attemptQuery(c, "select retail_private.sync_source_advance($1, 'customers', now(), $2, null)", [sourceId, externalId]);
    try {
      for (const actor of [a.tenantAdmin, a.storeAdmin, a.berlinKey]) {
        const refused = await asActor(db, actor, async (c) => {
          const result = await advance(c, "intruder");
          await c.query("commit").catch(() => undefined);
          return result.code;
        });
        expect(refused).toMatch(/^(42501|AH403)$/);
      }
      expect(await cursor()).toEqual([]);
      // The control: the source's own key moves it.
      await asActor(db, a.tokyoKey, async (c) => {
        expect((await advance(c, "t-1")).code).toBeNull();
        await c.query("commit");
      });
      expect(await cursor()).toEqual([{ external_id: "t-1" }]);
    } finally {
      await db.owner.query("delete from retail_private.sync_sources where id = $1", [sourceId]);
      await db.owner.query("delete from retail.sync_statuses where tenant_id = $1 and store_id = $2 and source_kind = 'pull'", [f.a.id, r.a.stores.tokyo]);
    }
  });
});
