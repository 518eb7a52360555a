/**
 * The retail cast for the database tests of the retail hub (issue 16): on top
 * of the identity fixtures, per tenant (the same shape in both)
 *
 *   child (a seller) ─ berlin, potsdam        sibling ─ tokyo
 *
 * three stores, their data written as the owner (a product with a variant, a
 * stock level, a customer, a paid order with two lines, the daily rollups
 * folded, a rejected row and a recorded hub edit per store), store admins,
 * holders of custom retail roles, and API keys. The identity fixtures'
 * orgAdmin is ORG_ADMIN of child: the admin of a seller with two stores.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Actor, TestDatabase } from "../helpers/db.js";
import { identity, useFixtureDatabase, type Fixtures, type TenantFixture } from "../helpers/fixtures.js";

export const STORE_CODES = ["berlin", "potsdam", "tokyo"] as const;
export type StoreCode = (typeof STORE_CODES)[number];

export interface RetailTenant {
  tenant: TenantFixture;
  stores: Record<StoreCode, string>;
  users: {
    /** ORG_ADMIN of berlin only. */
    storeAdmin: string;
    /** USER with a custom role holding retail:read for berlin. */
    reader: string;
    /** USER with retail:read and retail:write for berlin. */
    writer: string;
    /** USER with retail:read and catalog:write for potsdam. */
    cataloguer: string;
    /** USER with retail:read tenant-wide (a TENANT_ADMIN-level role). */
    tenantReader: string;
  };
  keys: {
    /** Bound to berlin: sync:write and retail:read. */
    berlinSync: KeyActor;
    /** Bound to tokyo: sync:write only. */
    tokyoSync: KeyActor;
    /** Tenant-wide: sync:write (names the store in each row). */
    tenantSync: KeyActor;
    /** Tenant-wide: retail:read only. */
    tenantReader: KeyActor;
  };
}

export interface KeyActor {
  id: string;
  actor: Actor;
}

export interface RetailFixtures {
  a: RetailTenant;
  b: RetailTenant;
}

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const keyId = () => `ak_${Array.from(randomBytes(22), (b) => BASE62[b % 62]).join("")}`;
const fingerprint = () => createHash("sha256").update(randomBytes(32)).digest("hex");

async function one(db: TestDatabase, sql: string, params: unknown[]): Promise<string> {
  return (await db.owner.query<{ id: string }>(sql, params)).rows[0]!.id;
}

async function seedRetailTenant(db: TestDatabase, t: TenantFixture): Promise<RetailTenant> {
  const org = (slug: string, parent: string) =>
    one(db, "insert into authhub.organizations (tenant_id, slug, name, parent_id) values ($1, $2, $3, $4) returning id", [t.id, slug, slug, parent]);
  const stores = { berlin: await org("berlin", t.orgs.child), potsdam: await org("potsdam", t.orgs.child), tokyo: await org("tokyo", t.orgs.sibling) };
  const settings: Record<StoreCode, [string, string]> = { berlin: ["Europe/Berlin", "EUR"], potsdam: ["Europe/Berlin", "EUR"], tokyo: ["Asia/Tokyo", "JPY"] };
  for (const code of STORE_CODES) {
    await db.owner.query("insert into retail.stores (tenant_id, id, name, timezone, currency) values ($1, $2, $3, $4, $5)", [t.id, stores[code], code, ...settings[code]]);
  }

  const user = (name: string) =>
    one(db, "insert into authhub.users (tenant_id, email, display_name, level) values ($1, $2, $3, 'USER') returning id", [t.id, `${name}@${t.slug}.test`, name]);
  const role = async (key: string, level: string, permissions: string[]) => {
    const id = await one(db, "insert into authhub.roles (tenant_id, key, name, level) values ($1, $2, $3, $4) returning id", [t.id, key, key, level]);
    for (const p of permissions) await db.owner.query("insert into authhub.role_permissions (tenant_id, role_id, permission_key) values ($1, $2, $3)", [t.id, id, p]);
    return id;
  };
  const assign = (userId: string, roleId: string, orgId: string | null) =>
    db.owner.query("insert into authhub.role_assignments (tenant_id, user_id, role_id, organization_id) values ($1, $2, $3, $4)", [t.id, userId, roleId, orgId]);
  const users = {
    storeAdmin: await user("store-admin"),
    reader: await user("reader"),
    writer: await user("writer"),
    cataloguer: await user("cataloguer"),
    tenantReader: await user("tenant-reader"),
  };
  await db.owner.query("insert into authhub.memberships (tenant_id, organization_id, user_id, level) values ($1, $2, $3, 'ORG_ADMIN')", [t.id, stores.berlin, users.storeAdmin]);
  await assign(users.reader, await role("retail-reader", "ORG_ADMIN", ["retail:read"]), stores.berlin);
  await assign(users.writer, await role("retail-writer", "ORG_ADMIN", ["retail:read", "retail:write"]), stores.berlin);
  await assign(users.cataloguer, await role("cataloguer", "ORG_ADMIN", ["retail:read", "catalog:write"]), stores.potsdam);
  await assign(users.tenantReader, await role("tenant-retail-reader", "TENANT_ADMIN", ["retail:read"]), null);

  const key = async (orgId: string | null, scopes: string[]): Promise<KeyActor> => {
    const id = await one(db, "select (authhub_private.issue_api_key($1, 'Store system', $2, $3, null, null, $4, 'v1.x.y.z', $5)).id as id", [
      keyId(),
      scopes,
      orgId,
      fingerprint(),
      t.id,
    ]);
    return { id, actor: { apiKey: { apiKeyId: id, tenantId: t.id, orgId } } };
  };
  const keys = {
    berlinSync: await key(stores.berlin, ["sync:write", "retail:read"]),
    tokyoSync: await key(stores.tokyo, ["sync:write"]),
    tenantSync: await key(null, ["sync:write"]),
    tenantReader: await key(null, ["retail:read"]),
  };

  // One of everything per store, as the owner.
  for (const code of STORE_CODES) {
    const s = stores[code];
    const currency = settings[code][1];
    const product = await one(db, "insert into retail.products (tenant_id, store_id, external_id, title, status, published) values ($1, $2, $3, $4, 'active', true) returning id", [
      t.id,
      s,
      `p-${code}`,
      `Tea of ${code}`,
    ]);
    await db.owner.query("insert into retail.variants (tenant_id, store_id, product_id, sku, price_minor, currency) values ($1, $2, $3, $4, 450, $5)", [
      t.id,
      s,
      product,
      `TEA-${code}`,
      currency,
    ]);
    await db.owner.query("insert into retail.inventory_levels (tenant_id, store_id, sku, on_hand) values ($1, $2, $3, 10)", [t.id, s, `TEA-${code}`]);
    const customer = await one(db, "insert into retail.customers (tenant_id, store_id, external_id, email, name) values ($1, $2, $3, $4, $5) returning id", [
      t.id,
      s,
      `c-${code}`,
      `ada@${code}.test`,
      `Ada of ${code}`,
    ]);
    const order = await one(
      db,
      "insert into retail.orders (tenant_id, store_id, external_id, number, status, currency, placed_at, customer_id) values ($1, $2, $3, $4, 'paid', $5, '2026-03-01T10:00:00Z', $6) returning id",
      [t.id, s, `o-${code}`, `N-${code}`, currency, customer],
    );
    await db.owner.query(
      "insert into retail.order_lines (tenant_id, store_id, order_id, line_no, sku, quantity, unit_price_minor) values ($1, $2, $3, 1, $4, 2, 450), ($1, $2, $3, 2, $4, 1, 100)",
      [t.id, s, order, `TEA-${code}`],
    );
    await db.owner.query("insert into retail.sync_rejects (tenant_id, store_id, entity, external_id, version, error) values ($1, $2, 'orders', 'bad', 1, '{}')", [t.id, s]);
    await db.owner.query("insert into retail.store_owned_edits (tenant_id, store_id, entity, row_key, fields, actor) values ($1, $2, 'products', '{}', '{title}', 'test')", [
      t.id,
      s,
    ]);
  }
  await db.owner.query("select retail_private.fold_rollups($1, 1000)", [t.id]);
  return { tenant: t, stores, users, keys };
}

export async function seedRetail(db: TestDatabase, f: Fixtures): Promise<RetailFixtures> {
  return { a: await seedRetailTenant(db, f.a), b: await seedRetailTenant(db, f.b) };
}

/** For a test file: useFixtureDatabase with the retail cast seeded on top of the identity fixtures; `ready` receives all three. */
export function useRetailDatabase(ready: (db: TestDatabase, f: Fixtures, r: RetailFixtures) => void): void {
  useFixtureDatabase(async (db, f) => ready(db, f, await seedRetail(db, f)));
}

/** The retail cast of a tenant as actors (users as their tokens would name them; keys as the Open API would). */
export function retailCast(f: Fixtures, r: RetailTenant) {
  const t = r.tenant;
  return {
    superAdmin: identity(f.a, f.superAdmin, "SUPER_ADMIN"),
    tenantAdmin: identity(t, t.users.tenantAdmin, "TENANT_ADMIN"),
    sellerAdmin: identity(t, t.users.orgAdmin, "ORG_ADMIN"),
    storeAdmin: identity(t, r.users.storeAdmin, "ORG_ADMIN"),
    reader: identity(t, r.users.reader, "USER"),
    writer: identity(t, r.users.writer, "USER"),
    cataloguer: identity(t, r.users.cataloguer, "USER"),
    tenantReader: identity(t, r.users.tenantReader, "USER"),
    member: identity(t, t.users.member, "USER"),
    berlinKey: r.keys.berlinSync.actor,
    tokyoKey: r.keys.tokyoSync.actor,
    tenantSyncKey: r.keys.tenantSync.actor,
    readerKey: r.keys.tenantReader.actor,
    anonymous: "anonymous" as const,
  };
}
