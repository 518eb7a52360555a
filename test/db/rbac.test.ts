/**
 * RBAC as data (issue 3): custom roles, tenant-wide and organization-scoped
 * assignments, the policies that read permissions, and every escalation rule.
 * Denials are backed by control queries as owner.
 */
import { asActor, attemptAs, attemptQuery, rowsOf, type Actor, type TestDatabase } from "../helpers/db.js";
import { cast, identity, useFixtureDatabase, type Fixtures } from "../helpers/fixtures.js";

let db: TestDatabase;
let f: Fixtures;

useFixtureDatabase((database, fixtures) => {
  db = database;
  f = fixtures;
});

const attempt = (actor: Actor, sql: string, params: unknown[] = []) => attemptAs(db, actor, sql, params);
const ids = (actor: Actor, sql: string, params: unknown[] = []) => asActor(db, actor, async (c) => (await c.query<{ id: string }>(sql, params)).rows.map((r) => r.id).sort());

/** Creates a role (as owner) with the given permissions; returns its id. */
async function role(tenantId: string, key: string, level: "ORG_ADMIN" | "TENANT_ADMIN", permissions: string[]): Promise<string> {
  const id = (await db.owner.query<{ id: string }>("insert into authhub.roles (tenant_id, key, name, level) values ($1, $2, $3, $4) returning id", [tenantId, key, key, level]))
    .rows[0]!.id;
  for (const p of permissions) {
    await db.owner.query("insert into authhub.role_permissions (tenant_id, role_id, permission_key) values ($1, $2, $3)", [tenantId, id, p]);
  }
  return id;
}

/** Assigns a role (as owner); returns a function that revokes it. */
async function assign(tenantId: string, userId: string, roleId: string, organizationId: string | null = null): Promise<() => Promise<void>> {
  const id = (
    await db.owner.query<{ id: string }>("insert into authhub.role_assignments (tenant_id, user_id, role_id, organization_id) values ($1, $2, $3, $4) returning id", [
      tenantId,
      userId,
      roleId,
      organizationId,
    ])
  ).rows[0]!.id;
  return async () => {
    await db.owner.query("delete from authhub.role_assignments where id = $1", [id]);
  };
}

let supportAgent: string;
let orgReader: string;
let roleManager: string;
beforeAll(async () => {
  supportAgent = await role(f.a.id, "support-agent", "ORG_ADMIN", ["user:read"]);
  orgReader = await role(f.a.id, "org-reader", "ORG_ADMIN", ["org:read", "membership:read", "user:read"]);
  roleManager = await role(f.a.id, "role-manager", "TENANT_ADMIN", ["role:read", "role:write", "user:read", "user:write"]);
});

describe("the catalogue", () => {
  test("every signed-in caller reads the permissions and level sets; nobody writes them", async () => {
    const { member, tenantAdmin } = cast(f, f.a);
    const keys = await asActor(db, member, (c) => rowsOf<{ key: string }>(c, "select key from authhub.permissions order by key"));
    expect(keys.map((k) => k.key)).toEqual(expect.arrayContaining(["user:read", "user:write", "role:write", "tenant:config", "audit:read"]));
    expect(await attempt(tenantAdmin, "insert into authhub.permissions (key, description, org_scopable) values ('x:y', 'x', true)")).toBe("42501");
    expect(await attempt(cast(f, f.a).superAdmin, "delete from authhub.level_permissions")).toBe("42501");
    expect(await attempt("anonymous", "select * from authhub.permissions")).toBe("42501");
  });
});

describe("a custom role holder", () => {
  test("support-agent (user:read, tenant-wide) reads every user of its tenant and changes nothing", async () => {
    const revoke = await assign(f.a.id, f.a.users.outsider, supportAgent);
    try {
      const agent = cast(f, f.a).outsider;
      expect(await ids(agent, "select id from authhub.users")).toEqual([...Object.values(f.a.users), f.superAdmin].sort());
      expect(await ids(agent, "select id from authhub.users where tenant_id = $1", [f.b.id])).toEqual([]);
      expect(await attempt(agent, "update authhub.users set display_name = 'x' where id = $1", [f.a.users.member])).toBe(0);
      expect(await attempt(agent, "delete from authhub.users where id = $1", [f.a.users.member])).toBe(0);
      expect(await attempt(agent, "insert into authhub.users (email) values ('new@tenant-a.test')")).toBe("42501");
      expect(await attempt(agent, "update authhub.organizations set name = 'x' where id = $1", [f.a.orgs.sibling])).toBe(0);
      // It holds user:read only: organizations beyond its own membership stay hidden.
      expect(await ids(agent, "select id from authhub.organizations")).toEqual([f.a.orgs.sibling]);
      const control = await db.owner.query("select display_name from authhub.users where id = $1", [f.a.users.member]);
      expect(control.rows[0].display_name).toBe("member");
    } finally {
      await revoke();
    }
  });

  test("support-agent for an organization reads only the members of that subtree", async () => {
    const revoke = await assign(f.a.id, f.a.users.outsider, supportAgent, f.a.orgs.child);
    try {
      const agent = cast(f, f.a).outsider;
      expect(await ids(agent, "select id from authhub.users")).toEqual([f.a.users.outsider, f.a.users.orgAdmin, f.a.users.member, f.a.users.suspended].sort());
    } finally {
      await revoke();
    }
  });

  test("org-reader for an organization reads its subtree, not its parent or siblings", async () => {
    const revoke = await assign(f.a.id, f.a.users.member, orgReader, f.a.orgs.child);
    try {
      const reader = cast(f, f.a).member;
      expect(await ids(reader, "select id from authhub.organizations")).toEqual([f.a.orgs.child, f.a.orgs.grandchild].sort());
      expect((await ids(reader, "select organization_id as id from authhub.memberships")).length).toBe(3);
    } finally {
      await revoke();
    }
  });

  test("a revoked assignment stops working on the next transaction", async () => {
    const revoke = await assign(f.a.id, f.a.users.outsider, supportAgent);
    const agent = cast(f, f.a).outsider;
    expect((await ids(agent, "select id from authhub.users")).length).toBe(6);
    await revoke();
    expect(await ids(agent, "select id from authhub.users")).toEqual([f.a.users.outsider]);
  });

  test("a suspended holder has nothing", async () => {
    const revoke = await assign(f.a.id, f.a.users.suspended, supportAgent);
    try {
      expect(await ids(cast(f, f.a).suspended, "select id from authhub.users")).toEqual([]);
    } finally {
      await revoke();
    }
  });
});

describe("a down-scoped token", () => {
  test("a tenant admin acting with a USER token exercises a user's rights only, and may still rename itself", async () => {
    const downScoped = { ...cast(f, f.a).tenantAdmin, level: "USER" as const };
    expect(await ids(downScoped, "select id from authhub.users")).toEqual([f.a.users.tenantAdmin]);
    // Control: with its full token the same update reaches the row.
    expect(await attempt(cast(f, f.a).tenantAdmin, "update authhub.users set display_name = 'Seen' where id = $1", [f.a.users.member])).toBe(1);
    expect(await attempt(downScoped, "update authhub.users set level = 'TENANT_ADMIN' where id = $1", [f.a.users.member])).toBe(0);
    expect(await attempt(downScoped, "update authhub.users set display_name = 'Me' where id = $1", [f.a.users.tenantAdmin])).toBe(1);
    expect(await attempt(downScoped, "update authhub.users set status = 'suspended' where id = $1", [f.a.users.tenantAdmin])).toBe("42501");
  });
});

describe("no escalation (BR-002)", () => {
  test("custom roles confer permissions, not a level: a role:write holder creates and edits no roles", async () => {
    const revoke = await assign(f.a.id, f.a.users.member, roleManager);
    try {
      const manager = cast(f, f.a).member;
      expect(await attempt(manager, "insert into authhub.roles (key, name, level) values ('helper', 'Helper', 'ORG_ADMIN')")).toBe("42501");
      expect(await attempt(manager, "update authhub.roles set name = 'x' where id = $1", [supportAgent])).toBe(0);
      expect(await attempt(manager, "insert into authhub.role_permissions (role_id, permission_key) values ($1, 'org:write')", [supportAgent])).toBe("42501");
      expect(await attempt(manager, "insert into authhub.role_assignments (user_id, role_id) values ($1, $2)", [f.a.users.outsider, supportAgent])).toBe("42501");
      const { rows } = await db.owner.query("select name from authhub.roles where id = $1", [supportAgent]);
      expect(rows[0].name).toBe("support-agent");
    } finally {
      await revoke();
    }
  });

  test("a user:write role sitting under TENANT_ADMIN manages plain users only, never promotes", async () => {
    const userManager = await role(f.a.id, "user-manager", "TENANT_ADMIN", ["user:read", "user:write"]);
    const revoke = await assign(f.a.id, f.a.users.member, userManager);
    try {
      const manager = cast(f, f.a).member;
      expect(await attempt(manager, "update authhub.users set display_name = 'Renamed' where id = $1", [f.a.users.outsider])).toBe(1);
      expect(await attempt(manager, "update authhub.users set level = 'TENANT_ADMIN' where id = $1", [f.a.users.member])).toBe("42501");
      expect(await attempt(manager, "update authhub.users set level = 'TENANT_ADMIN' where id = $1", [f.a.users.outsider])).toBe("42501");
      expect(await attempt(manager, "insert into authhub.users (email, level) values ('evil@tenant-a.test', 'TENANT_ADMIN')")).toBe("42501");
      expect(await attempt(manager, "update authhub.users set external_id = 'mine' where id = $1", [f.a.users.tenantAdmin])).toBe(0);
      expect(await attempt(manager, "delete from authhub.users where id = $1", [f.a.users.tenantAdmin])).toBe(0);
      const { rows } = await db.owner.query("select level, external_id from authhub.users where id = $1", [f.a.users.tenantAdmin]);
      expect(rows[0]).toEqual({ level: "TENANT_ADMIN", external_id: null });
    } finally {
      await revoke();
    }
  });

  test("a role cannot carry a permission above the level it sits under", async () => {
    const { tenantAdmin } = cast(f, f.a);
    await asActor(db, tenantAdmin, async (c) => {
      const [r] = await rowsOf<{ id: string }>(c, "insert into authhub.roles (key, name, level) values ('low', 'Low', 'ORG_ADMIN') returning id");
      expect((await attemptQuery(c, "insert into authhub.role_permissions (role_id, permission_key) values ($1, 'tenant:config')", [r!.id])).code).toBe("AH422");
      expect((await attemptQuery(c, "insert into authhub.role_permissions (role_id, permission_key) values ($1, 'user:write')", [r!.id])).code).toBe("AH422");
      expect((await attemptQuery(c, "insert into authhub.role_permissions (role_id, permission_key) values ($1, 'org:write')", [r!.id])).code).toBeNull();
    });
    // Lowering a role's level below its permissions is refused too.
    const high = await role(f.a.id, "high", "TENANT_ADMIN", ["tenant:config"]);
    expect(await attempt(tenantAdmin, "update authhub.roles set level = 'ORG_ADMIN' where id = $1", [high])).toBe("AH422");
  });

  test("a holder of role:write below TENANT_ADMIN cannot create or edit TENANT_ADMIN-level roles", async () => {
    const lead = await role(f.a.id, "team-lead", "ORG_ADMIN", ["role:read", "role:write", "user:read"]);
    const revoke = await assign(f.a.id, f.a.users.member, lead);
    try {
      const member = cast(f, f.a).member;
      expect(await attempt(member, "insert into authhub.roles (key, name, level) values ('boss', 'Boss', 'TENANT_ADMIN')")).toBe("42501");
      expect(await attempt(member, "update authhub.roles set name = 'Mine' where id = $1", [roleManager])).toBe(0);
      expect(await attempt(member, "delete from authhub.roles where id = $1", [roleManager])).toBe(0);
      const { rowCount } = await db.owner.query("select 1 from authhub.roles where id = $1 and key = 'role-manager' and name = 'role-manager'", [roleManager]);
      expect(rowCount).toBe(1);
    } finally {
      await revoke();
    }
  });

  test("nobody assigns a role carrying permissions they do not hold, or above their level", async () => {
    // The org admin (ORG_ADMIN of child) may assign org-level roles within its subtree...
    const { orgAdmin } = cast(f, f.a);
    const insert = "insert into authhub.role_assignments (user_id, role_id, organization_id) values ($1, $2, $3)";
    expect(await attempt(orgAdmin, insert, [f.a.users.member, supportAgent, f.a.orgs.grandchild])).toBe(1);
    // ...but not a TENANT_ADMIN-level role, not tenant-wide, and not outside its subtree.
    expect(await attempt(orgAdmin, insert, [f.a.users.member, roleManager, f.a.orgs.grandchild])).toBe("42501");
    expect(await attempt(orgAdmin, insert, [f.a.users.member, supportAgent, null])).toBe("42501");
    expect(await attempt(orgAdmin, insert, [f.a.users.outsider, supportAgent, f.a.orgs.sibling])).toBe("42501");
    expect(await attempt(orgAdmin, insert, [f.a.users.member, supportAgent, f.a.orgs.root])).toBe("42501");
    // A role whose permissions the assigner lacks at that scope (tenant:config is tenant-only; user:write is not in ORG_ADMIN's set).
    const writer = await role(f.a.id, "user-writer", "TENANT_ADMIN", ["user:write"]);
    expect(await attempt(orgAdmin, insert, [f.a.users.member, writer, f.a.orgs.grandchild])).toBe("42501");
    const { rowCount } = await db.owner.query("select 1 from authhub.role_assignments where user_id = $1", [f.a.users.member]);
    expect(rowCount).toBe(0);
  });

  test("an org admin cannot remove a tenant-wide assignment or one in a sibling tree", async () => {
    const revokeTenant = await assign(f.a.id, f.a.users.member, supportAgent);
    const revokeSibling = await assign(f.a.id, f.a.users.outsider, supportAgent, f.a.orgs.sibling);
    try {
      const { orgAdmin } = cast(f, f.a);
      expect(await attempt(orgAdmin, "delete from authhub.role_assignments where user_id = $1", [f.a.users.member])).toBe(0);
      expect(await attempt(orgAdmin, "delete from authhub.role_assignments where user_id = $1", [f.a.users.outsider])).toBe(0);
      const { rowCount } = await db.owner.query("select 1 from authhub.role_assignments where user_id = any($1)", [[f.a.users.member, f.a.users.outsider]]);
      expect(rowCount).toBe(2);
    } finally {
      await revokeTenant();
      await revokeSibling();
    }
  });

  test("a custom-role holder cannot give anyone an ORG_ADMIN membership, nor touch users ranked above it", async () => {
    const lead = await role(f.a.id, "membership-lead", "ORG_ADMIN", ["membership:read", "membership:write"]);
    const revoke = await assign(f.a.id, f.a.users.outsider, lead, f.a.orgs.child);
    try {
      const outsider = cast(f, f.a).outsider;
      const insert = "insert into authhub.memberships (organization_id, user_id, level) values ($1, $2, $3)";
      expect(await attempt(outsider, insert, [f.a.orgs.grandchild, f.a.users.outsider, "USER"])).toBe(1);
      expect(await attempt(outsider, insert, [f.a.orgs.grandchild, f.a.users.outsider, "ORG_ADMIN"])).toBe("42501");
      expect(await attempt(outsider, insert, [f.a.orgs.grandchild, f.a.users.tenantAdmin, "USER"])).toBe("42501");
    } finally {
      await revoke();
    }
  });

  test("a custom membership:write holder cannot demote or remove an org admin's membership", async () => {
    const lead = await role(f.a.id, "membership-lead-2", "ORG_ADMIN", ["membership:read", "membership:write"]);
    const revoke = await assign(f.a.id, f.a.users.outsider, lead, f.a.orgs.root);
    try {
      const outsider = cast(f, f.a).outsider;
      const key = [f.a.orgs.child, f.a.users.orgAdmin];
      expect(await attempt(outsider, "update authhub.memberships set level = 'USER' where organization_id = $1 and user_id = $2", key)).toBe(0);
      expect(await attempt(outsider, "delete from authhub.memberships where organization_id = $1 and user_id = $2", key)).toBe(0);
      // Plain memberships in its scope are its to manage.
      expect(await attempt(outsider, "delete from authhub.memberships where organization_id = $1 and user_id = $2", [f.a.orgs.grandchild, f.a.users.member])).toBe(1);
      const { rows } = await db.owner.query("select level from authhub.memberships where organization_id = $1 and user_id = $2", key);
      expect(rows).toEqual([{ level: "ORG_ADMIN" }]);
    } finally {
      await revoke();
    }
  });

  test("an org admin revokes only what it could grant", async () => {
    const revokeHigh = await assign(f.a.id, f.a.users.member, roleManager, f.a.orgs.grandchild);
    const revokeLow = await assign(f.a.id, f.a.users.member, supportAgent, f.a.orgs.grandchild);
    try {
      const { orgAdmin } = cast(f, f.a);
      expect(await attempt(orgAdmin, "delete from authhub.role_assignments where role_id = $1", [roleManager])).toBe(0);
      expect(await attempt(orgAdmin, "delete from authhub.role_assignments where role_id = $1", [supportAgent])).toBe(1);
      const { rowCount } = await db.owner.query("select 1 from authhub.role_assignments where role_id = $1", [roleManager]);
      expect(rowCount).toBe(1);
    } finally {
      await revokeHigh();
      await revokeLow();
    }
  });

  test("a tenant-wide org:write role renames anywhere but moves nothing (moving into one's own subtree would confer ORG_ADMIN)", async () => {
    const mover = await role(f.a.id, "mover", "ORG_ADMIN", ["org:read", "org:write"]);
    const revoke = await assign(f.a.id, f.a.users.orgAdmin, mover);
    try {
      const { orgAdmin } = cast(f, f.a);
      expect(await attempt(orgAdmin, "update authhub.organizations set name = 'Renamed' where id = $1", [f.a.orgs.sibling])).toBe(1);
      expect(await attempt(orgAdmin, "update authhub.organizations set parent_id = $2 where id = $1", [f.a.orgs.sibling, f.a.orgs.child])).toBe("42501");
      const { rows } = await db.owner.query("select parent_id from authhub.organizations where id = $1", [f.a.orgs.sibling]);
      expect(rows[0].parent_id).toBeNull();
    } finally {
      await revoke();
    }
  });

  test("a custom user:write holder cannot re-point, suspend or delete a user who holds authority, nor itself", async () => {
    const userAdmin = await role(f.a.id, "user-admin", "TENANT_ADMIN", ["user:read", "user:write"]);
    const revoke = await assign(f.a.id, f.a.users.member, userAdmin);
    try {
      const holder = cast(f, f.a).member;
      // The org admin holds an ORG_ADMIN membership: hands off.
      expect(await attempt(holder, "update authhub.users set external_id = 'idp|mine' where id = $1", [f.a.users.orgAdmin])).toBe(0);
      expect(await attempt(holder, "update authhub.users set status = 'suspended' where id = $1", [f.a.users.orgAdmin])).toBe(0);
      expect(await attempt(holder, "delete from authhub.users where id = $1", [f.a.users.orgAdmin])).toBe(0);
      // Itself: it holds a custom role.
      expect(await attempt(holder, "update authhub.users set external_id = 'idp|old' where id = $1", [f.a.users.member])).toBe("42501");
      // A plain user is its to manage.
      expect(await attempt(holder, "update authhub.users set status = 'suspended' where id = $1", [f.a.users.outsider])).toBe(1);
      const { rows } = await db.owner.query("select external_id, status from authhub.users where id = $1", [f.a.users.orgAdmin]);
      expect(rows[0]).toEqual({ external_id: null, status: "active" });
    } finally {
      await revoke();
    }
  });

  test("a custom org:write holder cannot delete an organization where authority is anchored", async () => {
    const orgManager = await role(f.a.id, "org-manager", "ORG_ADMIN", ["org:read", "org:write"]);
    const revoke = await assign(f.a.id, f.a.users.outsider, orgManager, f.a.orgs.root);
    const revokeAnchored = await assign(f.a.id, f.a.users.member, supportAgent, f.a.orgs.grandchild);
    try {
      const holder = cast(f, f.a).outsider;
      // child holds the org admin's ORG_ADMIN membership; grandchild an assignment.
      expect(await attempt(holder, "delete from authhub.organizations where id = $1", [f.a.orgs.grandchild])).toBe(0);
      await asActor(db, holder, async (c) => {
        const [leaf] = await rowsOf<{ id: string }>(c, "insert into authhub.organizations (slug, name, parent_id) values ('leaf', 'Leaf', $1) returning id", [f.a.orgs.child]);
        expect((await attemptQuery(c, "delete from authhub.organizations where id = $1", [leaf!.id])).rowCount).toBe(1);
      });
      const { rowCount } = await db.owner.query("select 1 from authhub.organizations where id = $1", [f.a.orgs.grandchild]);
      expect(rowCount).toBe(1);
    } finally {
      await revokeAnchored();
      await revoke();
    }
  });

  test("a role id of another tenant answers the same whether it exists or not", async () => {
    const bRole = await role(f.b.id, "b-high", "TENANT_ADMIN", ["tenant:config"]);
    const { member } = cast(f, f.a);
    const insert = "insert into authhub.role_permissions (tenant_id, role_id, permission_key) values ($1, $2, 'tenant:config')";
    expect(await attempt(member, insert, [f.b.id, bRole])).toBe("42501");
    expect(await attempt(member, insert, [f.b.id, "00000000-0000-4000-8000-000000000001"])).toBe("42501");
  });

  test("ids are the database's: an organization cannot be re-created under a new parent, nor take another tenant's id", async () => {
    const { orgAdmin } = cast(f, f.a);
    const insert = "insert into authhub.organizations (id, slug, name, parent_id) values ($1, 'copy', 'Copy', $2)";
    expect(await attempt(orgAdmin, insert, [f.a.orgs.grandchild, f.a.orgs.child])).toBe("42501");
    expect(await attempt(orgAdmin, insert, [f.b.orgs.root, f.a.orgs.child])).toBe("42501");
    expect(await attempt(cast(f, f.a).tenantAdmin, "insert into authhub.users (id, email) values ($1, 'x@tenant-a.test')", [f.b.users.member])).toBe("42501");
    expect(await attempt(cast(f, f.a).superAdmin, "insert into authhub.tenants (id, slug, name) values ($1, 'dup', 'Dup')", [f.b.id])).toBe("42501");
  });

  test("a role's permissions stay within its level even for a super admin acting in another tenant", async () => {
    const superHome = { userId: f.superAdmin, tenantId: f.a.id, level: "SUPER_ADMIN" as const };
    const bRole = await role(f.b.id, "b-low", "ORG_ADMIN", []);
    expect(await attempt(superHome, "insert into authhub.role_permissions (tenant_id, role_id, permission_key) values ($1, $2, 'user:write')", [f.b.id, bRole])).toBe("AH422");
    expect(await attempt(superHome, "insert into authhub.role_permissions (tenant_id, role_id, permission_key) values ($1, $2, 'user:read')", [f.b.id, bRole])).toBe(1);
  });

  test("a plain user learns nothing about roles it cannot read by trying to map permissions", async () => {
    const { member } = cast(f, f.a);
    const insert = "insert into authhub.role_permissions (role_id, permission_key) values ($1, $2)";
    for (const perm of ["org:read", "user:write"]) {
      expect(await attempt(member, insert, [supportAgent, perm])).toBe("42501");
      expect(await attempt(member, insert, ["00000000-0000-4000-8000-000000000002", perm])).toBe("42501");
    }
  });

  test("only a tenant admin re-points a user's identity (e-mail, external id), even for a user stripped of authority first", async () => {
    const helpdesk = await role(f.a.id, "helpdesk", "TENANT_ADMIN", ["user:read", "user:write"]);
    const revoke = await assign(f.a.id, f.a.users.orgAdmin, helpdesk);
    try {
      const { orgAdmin } = cast(f, f.a);
      await asActor(db, orgAdmin, async (c) => {
        // The member holds no authority at all: its identity is still not the helpdesk's to re-point.
        expect((await attemptQuery(c, "update authhub.users set external_id = 'idp|mine' where id = $1", [f.a.users.member])).code).toBe("42501");
        expect((await attemptQuery(c, "update authhub.users set email = 'mine@tenant-a.test' where id = $1", [f.a.users.member])).code).toBe("42501");
        expect((await attemptQuery(c, "update authhub.users set display_name = 'Fine' where id = $1", [f.a.users.member])).rowCount).toBe(1);
      });
      expect(await attempt(cast(f, f.a).tenantAdmin, "update authhub.users set external_id = 'idp|member' where id = $1", [f.a.users.member])).toBe(1);
    } finally {
      await revoke();
    }
  });

  test("nobody grants themselves a role or an ORG_ADMIN membership", async () => {
    const { orgAdmin } = cast(f, f.a);
    expect(
      await attempt(orgAdmin, "insert into authhub.role_assignments (user_id, role_id, organization_id) values ($1, $2, $3)", [f.a.users.orgAdmin, supportAgent, f.a.orgs.child]),
    ).toBe("42501");
    expect(
      await attempt(orgAdmin, "insert into authhub.memberships (organization_id, user_id, level) values ($1, $2, 'ORG_ADMIN')", [f.a.orgs.grandchild, f.a.users.orgAdmin]),
    ).toBe("42501");
    // Granting the same to someone else is fine.
    expect(
      await attempt(orgAdmin, "insert into authhub.role_assignments (user_id, role_id, organization_id) values ($1, $2, $3)", [f.a.users.member, supportAgent, f.a.orgs.child]),
    ).toBe(1);
  });

  test("a role or assignment cannot reach into another tenant", async () => {
    const { tenantAdmin } = cast(f, f.b);
    const bRole = await role(f.b.id, "b-role", "ORG_ADMIN", ["user:read"]);
    const visible = await ids(tenantAdmin, "select id from authhub.roles");
    expect(visible).toContain(bRole);
    for (const aRole of [supportAgent, orgReader, roleManager]) expect(visible).not.toContain(aRole);
    // Tenant A's role id does not exist in tenant B: it cannot be granted there.
    expect(await attempt(tenantAdmin, "insert into authhub.role_assignments (user_id, role_id) values ($1, $2)", [f.b.users.member, supportAgent])).toBe("42501");
    const { rowCount } = await db.owner.query("select 1 from authhub.role_assignments where role_id = $1", [supportAgent]);
    expect(rowCount).toBe(0);
    expect(await attempt(tenantAdmin, "insert into authhub.role_assignments (tenant_id, user_id, role_id) values ($1, $2, $3)", [f.a.id, f.a.users.member, supportAgent])).toBe(
      "42501",
    );
    expect(await attempt(tenantAdmin, "update authhub.roles set name = 'x' where id = $1", [supportAgent])).toBe(0);
    // Control: tenant A's own admin renames it.
    expect(await attempt(cast(f, f.a).tenantAdmin, "update authhub.roles set name = 'x' where id = $1", [supportAgent])).toBe(1);
  });
});

describe("the last tenant admin", () => {
  test("cannot be demoted, suspended or deleted; with a second admin it can", async () => {
    const { tenantAdmin } = cast(f, f.b);
    const id = f.b.users.tenantAdmin;
    expect(await attempt(tenantAdmin, "update authhub.users set level = 'USER' where id = $1", [id])).toBe("AH409");
    expect(await attempt(tenantAdmin, "update authhub.users set status = 'suspended' where id = $1", [id])).toBe("AH409");
    expect(await attempt(tenantAdmin, "delete from authhub.users where id = $1", [id])).toBe("AH409");
    await asActor(db, tenantAdmin, async (c) => {
      await c.query("update authhub.users set level = 'TENANT_ADMIN' where id = $1", [f.b.users.member]);
      expect((await attemptQuery(c, "update authhub.users set level = 'USER' where id = $1", [id])).rowCount).toBe(1);
    });
    const { rows } = await db.owner.query("select level from authhub.users where id = $1", [id]);
    expect(rows[0].level).toBe("TENANT_ADMIN");
  });

  test("two admins demoting each other at once leave one admin", async () => {
    const { rows } = await db.owner.query<{ id: string }>("insert into authhub.users (tenant_id, email, level) values ($1, 'second@tenant-b.test', 'TENANT_ADMIN') returning id", [
      f.b.id,
    ]);
    const second = rows[0]!.id;
    const one = await db.owner.connect();
    const two = await db.owner.connect();
    try {
      await one.query("begin");
      await two.query("begin");
      await one.query("update authhub.users set level = 'USER' where id = $1", [f.b.users.tenantAdmin]);
      const blocked = two.query("update authhub.users set level = 'USER' where id = $1", [second]).then(
        () => null,
        (err: { code?: string }) => err.code,
      );
      await new Promise((r) => setTimeout(r, 100));
      await one.query("commit");
      expect(await blocked).toBe("AH409");
      await two.query("rollback");
    } finally {
      one.release();
      two.release();
      await db.owner.query("update authhub.users set level = 'TENANT_ADMIN' where id = $1", [f.b.users.tenantAdmin]);
      await db.owner.query("delete from authhub.users where id = $1", [second]);
    }
  });

  test("deleting the whole tenant is not blocked by it", async () => {
    const { superAdmin } = cast(f, f.a);
    await asActor(db, superAdmin, async (c) => {
      const [t] = await rowsOf<{ id: string }>(c, "insert into authhub.tenants (slug, name) values ('doomed', 'Doomed') returning id");
      await c.query("insert into authhub.users (tenant_id, email, level) values ($1, 'only@doomed.test', 'TENANT_ADMIN')", [t!.id]);
      expect((await attemptQuery(c, "delete from authhub.tenants where id = $1", [t!.id])).rowCount).toBe(1);
    });
  });
});

describe("decisions and effective permissions", () => {
  const decide = (actor: Actor, permission: string, org: string | null) =>
    asActor(db, actor, async (c) => (await c.query("select authhub_private.authorize($1, $2) as a", [permission, org])).rows[0].a);

  test("authorize answers with the policies' own helpers", async () => {
    const { tenantAdmin, orgAdmin, member } = cast(f, f.a);
    expect(await decide(tenantAdmin, "user:write", null)).toBe(true);
    expect(await decide(orgAdmin, "org:write", f.a.orgs.grandchild)).toBe(true);
    expect(await decide(orgAdmin, "org:write", f.a.orgs.sibling)).toBe(false);
    expect(await decide(orgAdmin, "org:write", null)).toBe(false);
    expect(await decide(member, "user:read", null)).toBe(false);
    // Another tenant's organization: false, as if it did not exist.
    expect(await decide(tenantAdmin, "org:read", f.b.orgs.root)).toBe(false);
    // Tenant-only permissions are never held for an organization through it.
    expect(await decide(orgAdmin, "tenant:config", f.a.orgs.child)).toBe(false);
    expect(await decide(tenantAdmin, "no:such", null)).toBeNull();
  });

  test("current_permissions lists tenant-wide grants and organization grants per scope", async () => {
    const { orgAdmin, tenantAdmin } = cast(f, f.a);
    const perms = (actor: Actor) =>
      asActor(db, actor, async (c) => (await c.query("select (unnest(authhub.current_permissions())).*")).rows as { permission: string; organization_id: string | null }[]);
    const admin = await perms(tenantAdmin);
    // Every permission of the catalogue (the twelve of identity, the four of retail) is a tenant admin's.
    expect(admin).toHaveLength(16);
    expect(admin.every((g) => g.organization_id === null)).toBe(true);
    const org = await perms(orgAdmin);
    expect(org).toContainEqual({ permission: "org:write", organization_id: f.a.orgs.grandchild });
    expect(org).toContainEqual({ permission: "org:write", organization_id: f.a.orgs.child });
    expect(org.some((g) => g.organization_id === null || g.permission === "tenant:config" || g.organization_id === f.a.orgs.root)).toBe(false);
  });

  test("role:write through a custom role alone is not reported: it cannot act without a built-in level", async () => {
    const revoke = await assign(f.a.id, f.a.users.member, roleManager);
    try {
      const { member } = cast(f, f.a);
      expect(await decide(member, "role:write", null)).toBe(false);
      expect(await decide(member, "role:write", f.a.orgs.child)).toBe(false);
      expect(await decide(member, "user:write", null)).toBe(true);
      const grants = await asActor(db, member, async (c) => (await c.query("select (unnest(authhub.current_permissions())).permission")).rows.map((r) => r.permission));
      expect(grants).toContain("user:write");
      expect(grants).not.toContain("role:write");
    } finally {
      await revoke();
    }
  });

  test("a user of tenant B gets nothing for tenant A's scopes", async () => {
    const other = identity(f.b, f.b.users.tenantAdmin, "TENANT_ADMIN");
    // Control: tenant A's org admin holds it there.
    expect(await decide(cast(f, f.a).orgAdmin, "user:read", f.a.orgs.child)).toBe(true);
    expect(await decide(other, "user:read", f.a.orgs.child)).toBe(false);
  });
});

describe("the token's claim caps the level", () => {
  test("a tenant admin acting with an ORG_ADMIN token is an org admin to SQL, not a tenant admin", async () => {
    const orgScoped = { ...cast(f, f.a).tenantAdmin, level: "ORG_ADMIN" as const };
    const level = await asActor(db, orgScoped, async (c) => (await c.query("select authhub_private.current_user_level() as l")).rows[0].l);
    expect(level).toBe("ORG_ADMIN");
    expect(await attempt(orgScoped, "update authhub.users set status = 'suspended' where id = $1", [f.a.users.member])).toBe(0);
    expect(await attempt(cast(f, f.a).tenantAdmin, "update authhub.users set status = 'suspended' where id = $1", [f.a.users.member])).toBe(1);
    const full = await asActor(db, cast(f, f.a).tenantAdmin, async (c) => (await c.query("select authhub_private.current_user_level() as l")).rows[0].l);
    expect(full).toBe("TENANT_ADMIN");
  });
});
