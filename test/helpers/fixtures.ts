/**
 * Two tenants with the same shape, written as the owner, so every policy test
 * can check both what a role may do in its own tenant and that the other
 * tenant's identical rows stay out of reach.
 *
 *   root ─ child ─ grandchild        sibling
 *
 * Users per tenant: tenantAdmin (TENANT_ADMIN), orgAdmin (ORG_ADMIN of child,
 * so it manages child and grandchild), member (USER of grandchild), outsider
 * (USER of sibling), suspended (USER of grandchild, suspended). Tenant A also
 * has superAdmin (SUPER_ADMIN).
 */
import type { Identity, RoleLevel } from "../../db/claims.js";
import { createTestDatabase, type TestDatabase } from "./db.js";

export interface TenantFixture {
  id: string;
  slug: string;
  orgs: { root: string; child: string; grandchild: string; sibling: string };
  users: { tenantAdmin: string; orgAdmin: string; member: string; outsider: string; suspended: string };
}

export interface Fixtures {
  a: TenantFixture;
  b: TenantFixture;
  superAdmin: string;
}

async function seedTenant(db: TestDatabase, slug: string): Promise<TenantFixture> {
  const q = async (sql: string, params: unknown[]) => (await db.owner.query<{ id: string }>(sql, params)).rows[0]!.id;
  const id = await q("insert into authhub.tenants (slug, name) values ($1, $2) returning id", [slug, `Tenant ${slug}`]);
  const org = (s: string, parent: string | null) =>
    q("insert into authhub.organizations (tenant_id, slug, name, parent_id) values ($1, $2, $3, $4) returning id", [id, s, s, parent]);
  const root = await org("root", null);
  const child = await org("child", root);
  const grandchild = await org("grandchild", child);
  const sibling = await org("sibling", null);
  const user = (name: string, level: RoleLevel, status = "active") =>
    q("insert into authhub.users (tenant_id, email, display_name, level, status) values ($1, $2, $3, $4, $5) returning id", [id, `${name}@${slug}.test`, name, level, status]);
  const users = {
    tenantAdmin: await user("tenant-admin", "TENANT_ADMIN"),
    orgAdmin: await user("org-admin", "USER"),
    member: await user("member", "USER"),
    outsider: await user("outsider", "USER"),
    suspended: await user("suspended", "USER", "suspended"),
  };
  const member = (orgId: string, userId: string, level: RoleLevel) =>
    db.owner.query("insert into authhub.memberships (tenant_id, organization_id, user_id, level) values ($1, $2, $3, $4)", [id, orgId, userId, level]);
  await member(child, users.orgAdmin, "ORG_ADMIN");
  await member(grandchild, users.member, "USER");
  await member(sibling, users.outsider, "USER");
  await member(grandchild, users.suspended, "USER");
  return { id, slug, orgs: { root, child, grandchild, sibling }, users };
}

export async function seedFixtures(db: TestDatabase): Promise<Fixtures> {
  const a = await seedTenant(db, "tenant-a");
  const b = await seedTenant(db, "tenant-b");
  const superAdmin = (
    await db.owner.query<{ id: string }>("insert into authhub.users (tenant_id, email, level) values ($1, 'root@tenant-a.test', 'SUPER_ADMIN') returning id", [a.id])
  ).rows[0]!.id;
  return { a, b, superAdmin };
}

/** The identity a token for this user would carry. */
export function identity(tenant: TenantFixture, userId: string, level: RoleLevel): Identity {
  return { userId, tenantId: tenant.id, level };
}

/** The standard cast of a tenant, as identities. */
export function cast(f: Fixtures, t: TenantFixture) {
  return {
    tenantAdmin: identity(t, t.users.tenantAdmin, "TENANT_ADMIN"),
    orgAdmin: identity(t, t.users.orgAdmin, "ORG_ADMIN"),
    member: identity(t, t.users.member, "USER"),
    outsider: identity(t, t.users.outsider, "USER"),
    suspended: identity(t, t.users.suspended, "USER"),
    superAdmin: identity(f.a, f.superAdmin, "SUPER_ADMIN"),
  };
}

/**
 * For a test file: a fresh database with the fixtures seeded before its tests,
 * dropped after them. `ready` receives both once they exist.
 */
export function useFixtureDatabase(ready: (db: TestDatabase, f: Fixtures) => void | Promise<void>): void {
  let db: TestDatabase | undefined;
  beforeAll(async () => {
    db = await createTestDatabase();
    await ready(db, await seedFixtures(db));
  });
  afterAll(async () => {
    await db?.close();
  });
}
