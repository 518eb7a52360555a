/**
 * Who sees which rows, for every table and every role, across two tenants and a
 * three-level organization tree (fixtures.ts). Each expectation names exactly
 * the visible rows, so every row not named is a proven denial; the control
 * test shows as owner that all of them exist.
 */
import { asActor, sqlErrorCode, type Actor, type TestDatabase } from "../helpers/db.js";
import { cast, useFixtureDatabase, type Fixtures } from "../helpers/fixtures.js";

let db: TestDatabase;
let f: Fixtures;

useFixtureDatabase((database, fixtures) => {
  db = database;
  f = fixtures;
});

const visible = (actor: Actor, sql: string) => asActor(db, actor, async (c) => (await c.query<{ k: string }>(sql)).rows.map((r) => r.k).sort());
const tenants = (actor: Actor) => visible(actor, "select id::text as k from authhub.tenants");
const users = (actor: Actor) => visible(actor, "select id::text as k from authhub.users");
const orgs = (actor: Actor) => visible(actor, "select id::text as k from authhub.organizations");
const memberships = (actor: Actor) => visible(actor, "select organization_id || '/' || user_id as k from authhub.memberships");
const sorted = (...ids: string[]) => [...ids].sort();

test("control: as owner, every fixture row exists", async () => {
  const count = async (t: string) => Number((await db.owner.query(`select count(*) from authhub.${t}`)).rows[0].count);
  expect(await count("tenants")).toBe(2);
  expect(await count("users")).toBe(11);
  expect(await count("organizations")).toBe(8);
  expect(await count("memberships")).toBe(8);
});

describe("a user (BR-005)", () => {
  test("sees their own tenant, profile, memberships and organizations only", async () => {
    const { member } = cast(f, f.a);
    expect(await tenants(member)).toEqual([f.a.id]);
    expect(await users(member)).toEqual([f.a.users.member]);
    expect(await orgs(member)).toEqual([f.a.orgs.grandchild]);
    expect(await memberships(member)).toEqual([`${f.a.orgs.grandchild}/${f.a.users.member}`]);
  });

  test("in another organization sees that one, not the member's", async () => {
    const { outsider } = cast(f, f.a);
    expect(await orgs(outsider)).toEqual([f.a.orgs.sibling]);
    expect(await users(outsider)).toEqual([f.a.users.outsider]);
  });

  test("in tenant B sees only tenant B's rows", async () => {
    const { member } = cast(f, f.b);
    expect(await tenants(member)).toEqual([f.b.id]);
    expect(await users(member)).toEqual([f.b.users.member]);
    expect(await orgs(member)).toEqual([f.b.orgs.grandchild]);
  });
});

describe("an org admin (BR-003)", () => {
  test("sees its organization and the subtree below, and their members", async () => {
    const { orgAdmin } = cast(f, f.a);
    expect(await orgs(orgAdmin)).toEqual(sorted(f.a.orgs.child, f.a.orgs.grandchild));
    expect(await users(orgAdmin)).toEqual(sorted(f.a.users.orgAdmin, f.a.users.member, f.a.users.suspended));
    expect(await memberships(orgAdmin)).toEqual(
      sorted(`${f.a.orgs.child}/${f.a.users.orgAdmin}`, `${f.a.orgs.grandchild}/${f.a.users.member}`, `${f.a.orgs.grandchild}/${f.a.users.suspended}`),
    );
  });

  test("does not see the parent, a sibling tree, or the other tenant", async () => {
    const seen = await orgs(cast(f, f.a).orgAdmin);
    for (const id of [f.a.orgs.root, f.a.orgs.sibling, ...Object.values(f.b.orgs)]) expect(seen).not.toContain(id);
  });
});

describe("a tenant admin (BR-003)", () => {
  test("sees everything in its tenant", async () => {
    const { tenantAdmin } = cast(f, f.a);
    expect(await tenants(tenantAdmin)).toEqual([f.a.id]);
    expect(await users(tenantAdmin)).toEqual(sorted(...Object.values(f.a.users), f.superAdmin));
    expect(await orgs(tenantAdmin)).toEqual(sorted(...Object.values(f.a.orgs)));
    expect((await memberships(tenantAdmin)).length).toBe(4);
  });

  test("sees nothing of the other tenant (BR-001)", async () => {
    const { tenantAdmin } = cast(f, f.b);
    const seenUsers = await users(tenantAdmin);
    expect(seenUsers).toEqual(sorted(...Object.values(f.b.users)));
    for (const id of Object.values(f.a.users)) expect(seenUsers).not.toContain(id);
    expect(await tenants(tenantAdmin)).toEqual([f.b.id]);
  });
});

describe("a super admin", () => {
  test("sees every tenant's rows", async () => {
    const { superAdmin } = cast(f, f.a);
    expect(await tenants(superAdmin)).toEqual(sorted(f.a.id, f.b.id));
    expect((await users(superAdmin)).length).toBe(11);
    expect((await orgs(superAdmin)).length).toBe(8);
    expect((await memberships(superAdmin)).length).toBe(8);
  });
});

describe("authority is confirmed by the database, not by the token", () => {
  test("a token claiming TENANT_ADMIN for a plain user gets a user's view", async () => {
    const forged = { ...cast(f, f.a).member, level: "TENANT_ADMIN" as const };
    expect(await users(forged)).toEqual([f.a.users.member]);
    expect(await orgs(forged)).toEqual([f.a.orgs.grandchild]);
  });

  test("a token claiming SUPER_ADMIN for a tenant admin stays inside its tenant", async () => {
    const forged = { ...cast(f, f.b).tenantAdmin, level: "SUPER_ADMIN" as const };
    expect(await tenants(forged)).toEqual([f.b.id]);
    expect(await users(forged)).toEqual(sorted(...Object.values(f.b.users)));
  });

  test("a token naming another tenant for a user sees nothing at all", async () => {
    const crossed = { ...cast(f, f.b).tenantAdmin, tenantId: f.a.id };
    expect(await tenants(crossed)).toEqual([]);
    expect(await users(crossed)).toEqual([]);
    expect(await orgs(crossed)).toEqual([]);
    expect(await memberships(crossed)).toEqual([]);
  });

  test("a token for an unknown user sees nothing", async () => {
    const ghost = { userId: "00000000-0000-4000-8000-000000000000", tenantId: f.a.id, level: "TENANT_ADMIN" as const };
    expect(await users(ghost)).toEqual([]);
    expect(await tenants(ghost)).toEqual([]);
  });
});

describe("suspension (BR-006)", () => {
  test("a suspended user sees nothing, not even themselves", async () => {
    const { suspended } = cast(f, f.a);
    expect(await users(suspended)).toEqual([]);
    expect(await orgs(suspended)).toEqual([]);
    expect(await memberships(suspended)).toEqual([]);
    expect(await tenants(suspended)).toEqual([]);
    // Control: the suspended user's rows exist.
    const { rowCount } = await db.owner.query("select 1 from authhub.memberships where user_id = $1", [f.a.users.suspended]);
    expect(rowCount).toBe(1);
  });

  test("the users of a suspended tenant see nothing; a super admin still does", async () => {
    await db.owner.query("update authhub.tenants set status = 'suspended' where id = $1", [f.b.id]);
    try {
      const { tenantAdmin, member } = cast(f, f.b);
      expect(await users(tenantAdmin)).toEqual([]);
      expect(await tenants(tenantAdmin)).toEqual([]);
      expect(await orgs(member)).toEqual([]);
      expect(await tenants(cast(f, f.a).superAdmin)).toContain(f.b.id);
    } finally {
      await db.owner.query("update authhub.tenants set status = 'active' where id = $1", [f.b.id]);
    }
  });
});

describe("live authority", () => {
  test("a removed membership loses access on the next transaction", async () => {
    const { orgAdmin } = cast(f, f.a);
    expect(await orgs(orgAdmin)).toContain(f.a.orgs.grandchild);
    await db.owner.query("delete from authhub.memberships where organization_id = $1 and user_id = $2", [f.a.orgs.child, f.a.users.orgAdmin]);
    try {
      expect(await orgs(orgAdmin)).toEqual([]);
      expect(await users(orgAdmin)).toEqual([f.a.users.orgAdmin]);
    } finally {
      await db.owner.query("insert into authhub.memberships (tenant_id, organization_id, user_id, level) values ($1, $2, $3, 'ORG_ADMIN')", [
        f.a.id,
        f.a.orgs.child,
        f.a.users.orgAdmin,
      ]);
    }
  });

  test("a demoted tenant admin keeps only a user's view", async () => {
    const { tenantAdmin } = cast(f, f.a);
    await db.owner.query("update authhub.users set level = 'USER' where id = $1", [f.a.users.tenantAdmin]);
    try {
      expect(await users(tenantAdmin)).toEqual([f.a.users.tenantAdmin]);
      expect(await orgs(tenantAdmin)).toEqual([]);
    } finally {
      await db.owner.query("update authhub.users set level = 'TENANT_ADMIN' where id = $1", [f.a.users.tenantAdmin]);
    }
  });
});

describe("anonymous", () => {
  test("reads no table", async () => {
    for (const table of ["tenants", "users", "organizations", "memberships"]) {
      const code = await asActor(db, "anonymous", (c) => sqlErrorCode(c, `select * from authhub.${table}`));
      expect([table, code]).toEqual([table, "42501"]);
    }
  });

  test("reads an active tenant's public branding by slug, and nothing for a suspended or unknown one", async () => {
    await db.owner.query("update authhub.tenants set display_name = 'Tenant A Inc.', primary_color = '#112233' where id = $1", [f.a.id]);
    await db.owner.query("update authhub.tenants set status = 'suspended' where id = $1", [f.b.id]);
    try {
      const branding = (slug: string) => asActor(db, "anonymous", async (c) => (await c.query("select (authhub.tenant_branding($1)).*", [slug])).rows[0]);
      expect(await branding("tenant-a")).toEqual({ slug: "tenant-a", display_name: "Tenant A Inc.", logo_url: null, primary_color: "#112233" });
      expect(await branding("tenant-b")).toEqual({ slug: null, display_name: null, logo_url: null, primary_color: null });
      expect(await branding("nope")).toEqual({ slug: null, display_name: null, logo_url: null, primary_color: null });
    } finally {
      await db.owner.query("update authhub.tenants set status = 'active' where id = $1", [f.b.id]);
    }
  });

  test("cannot call the authority helpers", async () => {
    const code = await asActor(db, "anonymous", (c) => sqlErrorCode(c, "select authhub_private.is_tenant_admin()"));
    expect(code).toBe("42501");
  });
});
