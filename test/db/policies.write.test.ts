/**
 * Who may change what. Every attempt runs as a request role in a rolled-back
 * transaction; an allowed write is checked by what it returns, a denied one by
 * its SQLSTATE or by affecting no row, and each "no row" is backed by a control
 * query as owner proving the target exists.
 */
import { asActor, attemptAs, rowsOf, type Actor, type TestDatabase } from "../helpers/db.js";
import { cast, useFixtureDatabase, type Fixtures } from "../helpers/fixtures.js";

let db: TestDatabase;
let f: Fixtures;

useFixtureDatabase((database, fixtures) => {
  db = database;
  f = fixtures;
});

/** Rows affected, or the SQLSTATE when the statement is refused. */
const attempt = (actor: Actor, sql: string, params: unknown[] = []) => attemptAs(db, actor, sql, params);

const exists = async (table: string, id: string) => (await db.owner.query(`select 1 from authhub.${table} where id = $1`, [id])).rowCount === 1;

describe("tenants", () => {
  test("a tenant admin renames and re-brands its own tenant", async () => {
    const { tenantAdmin } = cast(f, f.a);
    expect(await attempt(tenantAdmin, "update authhub.tenants set name = 'Renamed', primary_color = '#abcdef', allowed_domains = '{a.test}' where id = $1", [f.a.id])).toBe(1);
  });

  test("a tenant admin cannot touch another tenant (BR-001)", async () => {
    expect(await attempt(cast(f, f.a).tenantAdmin, "update authhub.tenants set name = 'Mine now' where id = $1", [f.b.id])).toBe(0);
    expect(await exists("tenants", f.b.id)).toBe(true);
  });

  test("a tenant admin cannot change slug or status, create or delete tenants (BR-002)", async () => {
    const { tenantAdmin } = cast(f, f.a);
    expect(await attempt(tenantAdmin, "update authhub.tenants set status = 'suspended' where id = $1", [f.a.id])).toBe("42501");
    expect(await attempt(tenantAdmin, "update authhub.tenants set slug = 'other' where id = $1", [f.a.id])).toBe("42501");
    expect(await attempt(tenantAdmin, "insert into authhub.tenants (slug, name) values ('new', 'New')")).toBe("42501");
    expect(await attempt(tenantAdmin, "delete from authhub.tenants where id = $1", [f.a.id])).toBe("42501");
  });

  test("users and org admins cannot change their tenant (no tenant:config)", async () => {
    for (const actor of [cast(f, f.a).member, cast(f, f.a).orgAdmin]) {
      expect(await attempt(actor, "update authhub.tenants set name = 'x' where id = $1", [f.a.id])).toBe(0);
    }
    const { rows } = await db.owner.query("select name from authhub.tenants where id = $1", [f.a.id]);
    expect(rows[0].name).toBe("Tenant tenant-a");
  });

  test("a super admin creates, suspends and deletes tenants", async () => {
    const { superAdmin } = cast(f, f.a);
    await asActor(db, superAdmin, async (c) => {
      const [t] = await rowsOf<{ id: string }>(c, "insert into authhub.tenants (slug, name) values ('fresh', 'Fresh') returning id");
      expect((await c.query("update authhub.tenants set status = 'suspended' where id = $1", [f.b.id])).rowCount).toBe(1);
      expect((await c.query("delete from authhub.tenants where id = $1", [t!.id])).rowCount).toBe(1);
    });
  });

  test("bad branding is refused by the database with a named check", async () => {
    const { tenantAdmin } = cast(f, f.a);
    const bad: [string, unknown][] = [
      ["primary_color = $2", "red"],
      ["logo_url = $2", "http://insecure.example.com/logo.png"],
      ["logo_url = $2", "javascript:alert(1)"],
      ["allowed_domains = $2", ["Not A Domain"]],
      ["name = $2", " padded "],
      ["name = $2", ""],
    ];
    for (const [set, value] of bad) {
      expect([set, await attempt(tenantAdmin, `update authhub.tenants set ${set} where id = $1`, [f.a.id, value])]).toEqual([set, "23514"]);
    }
    const { rows } = await db.owner.query("select primary_color, logo_url from authhub.tenants where id = $1", [f.a.id]);
    expect(rows[0]).toEqual({ primary_color: null, logo_url: null });
  });
});

describe("users", () => {
  test("a user renames themselves but not others, and cannot raise their own level (BR-005)", async () => {
    const { member } = cast(f, f.a);
    expect(await attempt(member, "update authhub.users set display_name = 'Me' where id = $1", [f.a.users.member])).toBe(1);
    expect(await attempt(member, "update authhub.users set display_name = 'You' where id = $1", [f.a.users.outsider])).toBe(0);
    expect(await exists("users", f.a.users.outsider)).toBe(true);
    expect(await attempt(member, "update authhub.users set level = 'TENANT_ADMIN' where id = $1", [f.a.users.member])).toBe("42501");
    expect(await attempt(member, "update authhub.users set email = 'x@y.test' where id = $1", [f.a.users.member])).toBe("42501");
    expect(await attempt(member, "insert into authhub.users (email) values ('n@a.test')")).toBe("42501");
    expect(await attempt(member, "delete from authhub.users where id = $1", [f.a.users.member])).toBe(0);
    expect(await exists("users", f.a.users.member)).toBe(true);
  });

  test("a tenant admin creates, edits and deletes users of its tenant", async () => {
    const { tenantAdmin } = cast(f, f.a);
    await asActor(db, tenantAdmin, async (c) => {
      const [u] = await rowsOf<{ tenant_id: string; email: string }>(
        c,
        "insert into authhub.users (email, display_name) values ('New.Person@Example.COM', 'New') returning tenant_id, email",
      );
      // tenant_id defaults to the caller's tenant; e-mail is stored lower-cased.
      expect(u).toEqual({ tenant_id: f.a.id, email: "new.person@example.com" });
      expect((await c.query("update authhub.users set level = 'TENANT_ADMIN' where id = $1", [f.a.users.member])).rowCount).toBe(1);
      expect((await c.query("update authhub.users set status = 'suspended' where id = $1", [f.a.users.outsider])).rowCount).toBe(1);
      expect((await c.query("delete from authhub.users where id = $1", [f.a.users.suspended])).rowCount).toBe(1);
    });
  });

  test("a tenant admin cannot create a user in, or edit a user of, another tenant (BR-001)", async () => {
    const { tenantAdmin } = cast(f, f.a);
    expect(await attempt(tenantAdmin, "insert into authhub.users (tenant_id, email) values ($1, 'spy@b.test')", [f.b.id])).toBe("42501");
    expect(await attempt(tenantAdmin, "update authhub.users set display_name = 'x' where id = $1", [f.b.users.member])).toBe(0);
    expect(await attempt(tenantAdmin, "delete from authhub.users where id = $1", [f.b.users.member])).toBe(0);
    expect(await exists("users", f.b.users.member)).toBe(true);
  });

  test("no one can move a user to another tenant", async () => {
    for (const actor of [cast(f, f.a).tenantAdmin, cast(f, f.a).superAdmin]) {
      expect(await attempt(actor, "update authhub.users set tenant_id = $2 where id = $1", [f.a.users.member, f.b.id])).toBe("42501");
    }
  });

  test("a tenant admin cannot create, promote to, or touch a super admin (BR-002)", async () => {
    const { tenantAdmin } = cast(f, f.a);
    expect(await attempt(tenantAdmin, "insert into authhub.users (email, level) values ('boss@a.test', 'SUPER_ADMIN')")).toBe("42501");
    expect(await attempt(tenantAdmin, "update authhub.users set level = 'SUPER_ADMIN' where id = $1", [f.a.users.member])).toBe("42501");
    expect(await attempt(tenantAdmin, "update authhub.users set status = 'suspended' where id = $1", [f.superAdmin])).toBe(0);
    expect(await attempt(tenantAdmin, "delete from authhub.users where id = $1", [f.superAdmin])).toBe(0);
    expect(await exists("users", f.superAdmin)).toBe(true);
  });

  test("an org admin cannot create or edit users (only their memberships)", async () => {
    const { orgAdmin } = cast(f, f.a);
    expect(await attempt(orgAdmin, "insert into authhub.users (email) values ('n@a.test')")).toBe("42501");
    expect(await attempt(orgAdmin, "update authhub.users set display_name = 'x' where id = $1", [f.a.users.member])).toBe(0);
    expect(await exists("users", f.a.users.member)).toBe(true);
  });

  test("a super admin manages users of any tenant", async () => {
    const { superAdmin } = cast(f, f.a);
    expect(await attempt(superAdmin, "insert into authhub.users (tenant_id, email) values ($1, 'ops@b.test')", [f.b.id])).toBe(1);
    expect(await attempt(superAdmin, "update authhub.users set level = 'TENANT_ADMIN' where id = $1", [f.b.users.member])).toBe(1);
  });

  test("invalid and duplicate data is refused by the database", async () => {
    const { tenantAdmin } = cast(f, f.a);
    expect(await attempt(tenantAdmin, "insert into authhub.users (email) values ('not-an-email')")).toBe("23514");
    expect(await attempt(tenantAdmin, "insert into authhub.users (email) values ('MEMBER@tenant-a.test')")).toBe("23505");
    expect(await attempt(tenantAdmin, "insert into authhub.users (email, level) values ('o@a.test', 'ORG_ADMIN')")).toBe("23514");
    expect(await attempt(tenantAdmin, "insert into authhub.users (email, external_id) values ('o@a.test', 'has space')")).toBe("23514");
  });
});

describe("escalation through a token that claims more than the database confirms (BR-002)", () => {
  const level = async (id: string) => (await db.owner.query("select level, status from authhub.users where id = $1", [id])).rows[0];

  test("a tenant admin cannot make itself a super admin", async () => {
    const { tenantAdmin } = cast(f, f.a);
    expect(await attempt(tenantAdmin, "update authhub.users set level = 'SUPER_ADMIN' where id = $1", [f.a.users.tenantAdmin])).toBe("42501");
    expect(await level(f.a.users.tenantAdmin)).toEqual({ level: "TENANT_ADMIN", status: "active" });
  });

  test("a user whose token claims TENANT_ADMIN renames itself but changes nothing else about itself", async () => {
    const forged = { ...cast(f, f.a).member, level: "TENANT_ADMIN" as const };
    expect(await attempt(forged, "update authhub.users set display_name = 'Still me' where id = $1", [f.a.users.member])).toBe(1);
    for (const set of ["level = 'TENANT_ADMIN'", "level = 'SUPER_ADMIN'", "status = 'suspended'", "email = 'new@tenant-a.test'", "external_id = 'idp_1'"]) {
      expect([set, await attempt(forged, `update authhub.users set ${set} where id = $1`, [f.a.users.member])]).toEqual([set, "42501"]);
    }
    expect(await level(f.a.users.member)).toEqual({ level: "USER", status: "active" });
  });

  test("a demoted tenant admin with its old token cannot promote itself back", async () => {
    // Tenant A keeps its super admin, so its tenant admin may be demoted.
    const { tenantAdmin } = cast(f, f.a);
    await db.owner.query("update authhub.users set level = 'USER' where id = $1", [f.a.users.tenantAdmin]);
    try {
      expect(await attempt(tenantAdmin, "update authhub.users set level = 'TENANT_ADMIN' where id = $1", [f.a.users.tenantAdmin])).toBe("42501");
      expect(await attempt(tenantAdmin, "update authhub.users set level = 'TENANT_ADMIN' where id = $1", [f.a.users.member])).toBe(0);
      expect(await level(f.a.users.tenantAdmin)).toEqual({ level: "USER", status: "active" });
    } finally {
      await db.owner.query("update authhub.users set level = 'TENANT_ADMIN' where id = $1", [f.a.users.tenantAdmin]);
    }
  });

  test("a tenant admin whose token claims SUPER_ADMIN cannot suspend, rename or reach beyond its tenant", async () => {
    const forged = { ...cast(f, f.a).tenantAdmin, level: "SUPER_ADMIN" as const };
    expect(await attempt(forged, "update authhub.tenants set status = 'suspended' where id = $1", [f.a.id])).toBe("42501");
    expect(await attempt(forged, "update authhub.tenants set slug = 'mine' where id = $1", [f.a.id])).toBe("42501");
    expect(await attempt(forged, "update authhub.tenants set name = 'Renamed' where id = $1", [f.a.id])).toBe(1);
    expect(await attempt(forged, "update authhub.tenants set name = 'x' where id = $1", [f.b.id])).toBe(0);
    expect(await attempt(forged, "insert into authhub.tenants (slug, name) values ('forged', 'Forged')")).toBe("42501");
    expect(await attempt(forged, "update authhub.users set level = 'SUPER_ADMIN' where id = $1", [f.a.users.tenantAdmin])).toBe("42501");
    const { rows } = await db.owner.query("select slug, status from authhub.tenants where id = $1", [f.a.id]);
    expect(rows[0]).toEqual({ slug: "tenant-a", status: "active" });
  });

  test("a user whose token claims ORG_ADMIN manages no organization", async () => {
    const forged = { ...cast(f, f.a).member, level: "ORG_ADMIN" as const };
    expect(await attempt(forged, "update authhub.organizations set name = 'x' where id = $1", [f.a.orgs.grandchild])).toBe(0);
    expect(await attempt(forged, "insert into authhub.memberships (organization_id, user_id, level) values ($1, $2, 'ORG_ADMIN')", [f.a.orgs.grandchild, f.a.users.outsider])).toBe(
      "42501",
    );
    expect(await exists("organizations", f.a.orgs.grandchild)).toBe(true);
  });
});

describe("organizations", () => {
  test("an org admin creates, renames and deletes inside its subtree", async () => {
    const { orgAdmin } = cast(f, f.a);
    await asActor(db, orgAdmin, async (c) => {
      const [o] = await rowsOf<{ id: string }>(c, "insert into authhub.organizations (slug, name, parent_id) values ('team', 'Team', $1) returning id", [f.a.orgs.grandchild]);
      expect((await c.query("update authhub.organizations set name = 'Renamed' where id = $1", [f.a.orgs.child])).rowCount).toBe(1);
      expect((await c.query("delete from authhub.organizations where id = $1", [o!.id])).rowCount).toBe(1);
    });
  });

  test("an org admin cannot create above or beside its subtree, nor at the top", async () => {
    const { orgAdmin } = cast(f, f.a);
    const insert = "insert into authhub.organizations (slug, name, parent_id) values ('x', 'X', $1)";
    expect(await attempt(orgAdmin, insert, [f.a.orgs.root])).toBe("42501");
    expect(await attempt(orgAdmin, insert, [f.a.orgs.sibling])).toBe("42501");
    expect(await attempt(orgAdmin, insert, [null])).toBe("42501");
  });

  test("an org admin cannot move an organization out of its subtree", async () => {
    const { orgAdmin } = cast(f, f.a);
    expect(await attempt(orgAdmin, "update authhub.organizations set parent_id = $2 where id = $1", [f.a.orgs.grandchild, f.a.orgs.sibling])).toBe("42501");
    expect(await attempt(orgAdmin, "update authhub.organizations set parent_id = null where id = $1", [f.a.orgs.grandchild])).toBe("42501");
  });

  test("moving an organization needs org:write tenant-wide: an org admin cannot move even inside its subtree", async () => {
    const { orgAdmin, tenantAdmin } = cast(f, f.a);
    await db.owner.query("insert into authhub.organizations (tenant_id, slug, name, parent_id) values ($1, 'leaf', 'Leaf', $2)", [f.a.id, f.a.orgs.grandchild]);
    try {
      const { rows } = await db.owner.query<{ id: string }>("select id from authhub.organizations where slug = 'leaf'");
      expect(await attempt(orgAdmin, "update authhub.organizations set parent_id = $2 where id = $1", [rows[0]!.id, f.a.orgs.child])).toBe("42501");
      expect(await attempt(tenantAdmin, "update authhub.organizations set parent_id = $2 where id = $1", [rows[0]!.id, f.a.orgs.child])).toBe(1);
    } finally {
      await db.owner.query("delete from authhub.organizations where slug = 'leaf'");
    }
  });

  test("an org admin of two trees cannot detach the top of one from its unmanaged parent", async () => {
    const { orgAdmin } = cast(f, f.a);
    await db.owner.query("insert into authhub.memberships (tenant_id, organization_id, user_id, level) values ($1, $2, $3, 'ORG_ADMIN')", [
      f.a.id,
      f.a.orgs.sibling,
      f.a.users.orgAdmin,
    ]);
    try {
      expect(await attempt(orgAdmin, "update authhub.organizations set parent_id = $2 where id = $1", [f.a.orgs.child, f.a.orgs.sibling])).toBe("42501");
      // Nor between its two trees.
      expect(await attempt(orgAdmin, "update authhub.organizations set parent_id = $2 where id = $1", [f.a.orgs.grandchild, f.a.orgs.sibling])).toBe("42501");
      const { rows } = await db.owner.query("select parent_id from authhub.organizations where id = $1", [f.a.orgs.child]);
      expect(rows[0].parent_id).toBe(f.a.orgs.root);
    } finally {
      await db.owner.query("delete from authhub.memberships where organization_id = $1 and user_id = $2", [f.a.orgs.sibling, f.a.users.orgAdmin]);
    }
  });

  test("an org admin cannot edit or delete its parent, a sibling tree, or the organization it administers", async () => {
    const { orgAdmin } = cast(f, f.a);
    expect(await attempt(orgAdmin, "update authhub.organizations set name = 'x' where id = $1", [f.a.orgs.root])).toBe(0);
    expect(await attempt(orgAdmin, "update authhub.organizations set name = 'x' where id = $1", [f.a.orgs.sibling])).toBe(0);
    expect(await attempt(orgAdmin, "delete from authhub.organizations where id = $1", [f.a.orgs.child])).toBe(0);
    expect(await attempt(orgAdmin, "delete from authhub.organizations where id = $1", [f.a.orgs.root])).toBe(0);
    for (const id of [f.a.orgs.root, f.a.orgs.sibling, f.a.orgs.child]) expect(await exists("organizations", id)).toBe(true);
  });

  test("a parent must be in the same tenant: another tenant's organization does not exist here", async () => {
    const { tenantAdmin } = cast(f, f.a);
    expect(await attempt(tenantAdmin, "update authhub.organizations set parent_id = $2 where id = $1", [f.a.orgs.sibling, f.b.orgs.root])).toBe("23503");
    expect(await attempt(tenantAdmin, "insert into authhub.organizations (slug, name, parent_id) values ('x', 'X', $1)", [f.b.orgs.root])).toBe("23503");
  });

  test("no cycles: an organization cannot move under its own descendant", async () => {
    const { tenantAdmin } = cast(f, f.a);
    expect(await attempt(tenantAdmin, "update authhub.organizations set parent_id = $2 where id = $1", [f.a.orgs.root, f.a.orgs.grandchild])).toBe("AH422");
    expect(await attempt(tenantAdmin, "update authhub.organizations set parent_id = id where id = $1", [f.a.orgs.root])).toBe("AH422");
  });

  test("an organization with children cannot be deleted", async () => {
    // restrict_violation on PostgreSQL 18; 15 reports it as foreign_key_violation. Both map to `conflict`.
    expect(["23001", "23503"]).toContain(await attempt(cast(f, f.a).tenantAdmin, "delete from authhub.organizations where id = $1", [f.a.orgs.root]));
    expect(await exists("organizations", f.a.orgs.root)).toBe(true);
  });

  test("a tenant admin cannot create in or edit another tenant, nor move an organization there", async () => {
    const { tenantAdmin } = cast(f, f.a);
    expect(await attempt(tenantAdmin, "insert into authhub.organizations (tenant_id, slug, name) values ($1, 'x', 'X')", [f.b.id])).toBe("42501");
    expect(await attempt(tenantAdmin, "update authhub.organizations set name = 'x' where id = $1", [f.b.orgs.root])).toBe(0);
    expect(await attempt(tenantAdmin, "update authhub.organizations set tenant_id = $2 where id = $1", [f.a.orgs.sibling, f.b.id])).toBe("42501");
    expect(await exists("organizations", f.b.orgs.root)).toBe(true);
  });

  test("a plain user creates and changes no organization", async () => {
    const { member } = cast(f, f.a);
    expect(await attempt(member, "insert into authhub.organizations (slug, name) values ('x', 'X')")).toBe("42501");
    expect(await attempt(member, "update authhub.organizations set name = 'x' where id = $1", [f.a.orgs.grandchild])).toBe(0);
    expect(await exists("organizations", f.a.orgs.grandchild)).toBe(true);
  });
});

describe("memberships", () => {
  test("an org admin adds, changes and removes memberships in its subtree", async () => {
    const { orgAdmin } = cast(f, f.a);
    await asActor(db, orgAdmin, async (c) => {
      await c.query("insert into authhub.memberships (organization_id, user_id) values ($1, $2)", [f.a.orgs.grandchild, f.a.users.outsider]);
      expect(
        (await c.query("update authhub.memberships set level = 'ORG_ADMIN' where organization_id = $1 and user_id = $2", [f.a.orgs.grandchild, f.a.users.member])).rowCount,
      ).toBe(1);
      expect((await c.query("delete from authhub.memberships where organization_id = $1 and user_id = $2", [f.a.orgs.grandchild, f.a.users.suspended])).rowCount).toBe(1);
    });
  });

  test("an org admin cannot add to or change memberships outside its subtree", async () => {
    const { orgAdmin } = cast(f, f.a);
    expect(await attempt(orgAdmin, "insert into authhub.memberships (organization_id, user_id) values ($1, $2)", [f.a.orgs.sibling, f.a.users.member])).toBe("42501");
    expect(await attempt(orgAdmin, "delete from authhub.memberships where organization_id = $1 and user_id = $2", [f.a.orgs.sibling, f.a.users.outsider])).toBe(0);
    const { rowCount } = await db.owner.query("select 1 from authhub.memberships where organization_id = $1 and user_id = $2", [f.a.orgs.sibling, f.a.users.outsider]);
    expect(rowCount).toBe(1);
  });

  test("an org admin cannot add a tenant admin or super admin to its subtree, nor change their memberships", async () => {
    const { orgAdmin } = cast(f, f.a);
    const insert = "insert into authhub.memberships (organization_id, user_id) values ($1, $2)";
    expect(await attempt(orgAdmin, insert, [f.a.orgs.grandchild, f.a.users.tenantAdmin])).toBe("42501");
    expect(await attempt(orgAdmin, insert, [f.a.orgs.grandchild, f.superAdmin])).toBe("42501");
    await db.owner.query("insert into authhub.memberships (tenant_id, organization_id, user_id) values ($1, $2, $3)", [f.a.id, f.a.orgs.grandchild, f.a.users.tenantAdmin]);
    try {
      const key = [f.a.orgs.grandchild, f.a.users.tenantAdmin];
      // Visible (who is in my organization), but not the org admin's to change or remove.
      expect(await attempt(orgAdmin, "select 1 from authhub.memberships where organization_id = $1 and user_id = $2", key)).toBe(1);
      expect(await attempt(orgAdmin, "update authhub.memberships set level = 'ORG_ADMIN' where organization_id = $1 and user_id = $2", key)).toBe(0);
      expect(await attempt(orgAdmin, "delete from authhub.memberships where organization_id = $1 and user_id = $2", key)).toBe(0);
      const { rows } = await db.owner.query("select level from authhub.memberships where organization_id = $1 and user_id = $2", key);
      expect(rows).toEqual([{ level: "USER" }]);
    } finally {
      await db.owner.query("delete from authhub.memberships where organization_id = $1 and user_id = $2", [f.a.orgs.grandchild, f.a.users.tenantAdmin]);
    }
  });

  test("a membership cannot name another tenant's user or organization", async () => {
    const { tenantAdmin } = cast(f, f.a);
    expect(await attempt(tenantAdmin, "insert into authhub.memberships (organization_id, user_id) values ($1, $2)", [f.a.orgs.root, f.b.users.member])).toBe("23503");
    expect(await attempt(tenantAdmin, "insert into authhub.memberships (tenant_id, organization_id, user_id) values ($1, $2, $3)", [f.b.id, f.b.orgs.root, f.b.users.member])).toBe(
      "42501",
    );
  });

  test("a membership level is USER or ORG_ADMIN; tenant-wide levels are refused", async () => {
    expect(
      await attempt(cast(f, f.a).tenantAdmin, "insert into authhub.memberships (organization_id, user_id, level) values ($1, $2, 'TENANT_ADMIN')", [
        f.a.orgs.root,
        f.a.users.member,
      ]),
    ).toBe("23514");
  });

  test("a plain user cannot add themselves anywhere", async () => {
    const { member } = cast(f, f.a);
    expect(await attempt(member, "insert into authhub.memberships (organization_id, user_id, level) values ($1, $2, 'ORG_ADMIN')", [f.a.orgs.root, f.a.users.member])).toBe(
      "42501",
    );
  });
});
