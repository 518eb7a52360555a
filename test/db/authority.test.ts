/**
 * The request's authority, resolved once per transaction by
 * authhub_private.begin_request (issues 12 and 14): the role a request runs as
 * is the least of its claim and the database's live level, so column grants
 * agree with the policies; the settings begin_request leaves are all the
 * policies read, and without it they answer nothing; the organization closure
 * stays the truth of parent_id under inserts and moves; the nonce store refuses
 * requests signed before a crash emptied it; keys whose issuer lost authority
 * are listed and flagged.
 */
import { asActor, attemptAs, attemptQuery, rowsOf, type Actor, type TestDatabase } from "../helpers/db.js";
import { cast, identity, useFixtureDatabase, type Fixtures } from "../helpers/fixtures.js";
import { runTask } from "../helpers/worker.js";

let db: TestDatabase;
let f: Fixtures;

useFixtureDatabase((database, fixtures) => {
  db = database;
  f = fixtures;
});

const attempt = (actor: Actor, sql: string, params: unknown[] = []) => attemptAs(db, actor, sql, params);
const roleOf = (actor: Actor) => asActor(db, actor, async (c) => (await c.query<{ r: string }>("select current_user as r")).rows[0]!.r);

describe("the role a request runs as", () => {
  test("is the least of the claim and the live level", async () => {
    const { tenantAdmin, orgAdmin, member, superAdmin, suspended } = cast(f, f.a);
    // As claimed, where the database agrees.
    expect(await roleOf(tenantAdmin)).toBe("authhub_tenant_admin");
    expect(await roleOf(orgAdmin)).toBe("authhub_org_admin");
    expect(await roleOf(member)).toBe("authhub_user");
    expect(await roleOf(superAdmin)).toBe("authhub_super_admin");
    // A claim above the live level is capped by it.
    expect(await roleOf({ ...tenantAdmin, level: "SUPER_ADMIN" })).toBe("authhub_tenant_admin");
    expect(await roleOf({ ...orgAdmin, level: "SUPER_ADMIN" })).toBe("authhub_org_admin");
    expect(await roleOf({ ...member, level: "SUPER_ADMIN" })).toBe("authhub_user");
    // A claim below it wins.
    expect(await roleOf({ ...superAdmin, level: "USER" })).toBe("authhub_user");
    // No live authority at all (suspended): the lowest user role, seeing nothing.
    expect(await roleOf({ ...suspended, level: "SUPER_ADMIN" })).toBe("authhub_user");
    expect(await roleOf("anonymous")).toBe("authhub_anonymous");
    // Another tenant's user named in this tenant is nobody.
    expect(await roleOf(identity(f.a, f.b.users.tenantAdmin, "SUPER_ADMIN"))).toBe("authhub_user");
  });

  // Every column and table privilege granted to a role above authhub_user,
  // tried with a lower live level and a higher claim (the attack catalogue's
  // finding), each with a control by a caller that holds the level.
  test("super-admin-only columns and rows: refused to a tenant admin claiming SUPER_ADMIN", async () => {
    const { tenantAdmin, superAdmin } = cast(f, f.a);
    const claimingSuper = { ...tenantAdmin, level: "SUPER_ADMIN" as const };
    for (const sql of [
      "update authhub.tenants set api_rate_limit_per_minute = 999999 where id = $1",
      "update authhub.tenants set status = 'suspended' where id = $1",
      "update authhub.tenants set slug = 'renamed' where id = $1",
      "delete from authhub.tenants where id = $1",
    ]) {
      expect(await attempt(claimingSuper, sql, [f.a.id])).toBe("42501");
      expect(await attempt(superAdmin, sql, [f.a.id])).toBe(1);
    }
    expect(await attempt(claimingSuper, "insert into authhub.tenants (slug, name) values ('new-tenant', 'New')")).toBe("42501");
    expect(await attempt(superAdmin, "insert into authhub.tenants (slug, name) values ('new-tenant', 'New')")).toBe(1);
  });

  test("tenant-admin-only columns: refused to an org admin or a user claiming more", async () => {
    const { tenantAdmin, orgAdmin, member } = cast(f, f.a);
    const move = "update authhub.organizations set parent_id = $1 where id = $2";
    const retention = "update authhub.tenants set audit_retention_days = 90 where id = $1";
    for (const claim of ["TENANT_ADMIN", "SUPER_ADMIN"] as const) {
      expect(await attempt({ ...orgAdmin, level: claim }, move, [f.a.orgs.child, f.a.orgs.grandchild])).toBe("42501");
      expect(await attempt({ ...member, level: claim }, retention, [f.a.id])).toBe("42501");
    }
    expect(await attempt(tenantAdmin, move, [f.a.orgs.sibling, f.a.orgs.grandchild])).toBe(1);
    expect(await attempt(tenantAdmin, retention, [f.a.id])).toBe(1);
  });

  test("a user holding tenant:config through a custom role still cannot touch super-admin columns by claiming SUPER_ADMIN", async () => {
    const roleId = (
      await db.owner.query<{ id: string }>("insert into authhub.roles (tenant_id, key, name, level) values ($1, 'configurer', 'Configurer', 'TENANT_ADMIN') returning id", [f.a.id])
    ).rows[0]!.id;
    await db.owner.query("insert into authhub.role_permissions (tenant_id, role_id, permission_key) values ($1, $2, 'tenant:config')", [f.a.id, roleId]);
    await db.owner.query("insert into authhub.role_assignments (tenant_id, user_id, role_id) values ($1, $2, $3)", [f.a.id, f.a.users.outsider, roleId]);
    try {
      const outsider = identity(f.a, f.a.users.outsider, "SUPER_ADMIN");
      expect(await attempt(outsider, "update authhub.tenants set api_rate_limit_per_minute = 999999 where id = $1", [f.a.id])).toBe("42501");
      // What the role does grant works (control): the tenant's display settings.
      expect(await attempt(outsider, "update authhub.tenants set display_name = 'Configured' where id = $1", [f.a.id])).toBe(1);
    } finally {
      await db.owner.query("delete from authhub.roles where id = $1", [roleId]);
    }
  });
});

describe("the resolved settings", () => {
  test("hold the caller's level, tenant-wide permissions and organization scope", async () => {
    const read = (actor: Actor) =>
      asActor(db, actor, (c) =>
        rowsOf<{ level: string; permissions: string[]; scope: Record<string, string[]>; managed: string[] }>(
          c,
          `select nullif(current_setting('authhub.level'), '') as level, current_setting('authhub.permissions')::text[] as permissions,
                  current_setting('authhub.org_scope')::jsonb as scope, current_setting('authhub.managed')::uuid[] as managed`,
        ),
      );
    const [admin] = await read(cast(f, f.a).tenantAdmin);
    expect(admin).toMatchObject({ level: "TENANT_ADMIN", scope: {}, managed: [] });
    expect(admin!.permissions).toEqual(expect.arrayContaining(["user:read", "user:write", "tenant:config"]));
    const [orgAdmin] = await read(cast(f, f.a).orgAdmin);
    expect(orgAdmin).toMatchObject({ level: "USER", permissions: [], managed: [f.a.orgs.child] });
    expect(orgAdmin!.scope["user:read"]).toEqual([f.a.orgs.child]);
    const [suspended] = await read(cast(f, f.a).suspended);
    expect(suspended).toEqual({ level: null, permissions: [], scope: {}, managed: [] });
  });

  test("a transaction that switches role without begin_request sees nothing (it fails closed)", async () => {
    const client = await db.auth.connect();
    try {
      await client.query("begin");
      await client.query(
        "select set_config('jwt.claims.tenant_id', $1, true), set_config('jwt.claims.sub', $2, true), set_config('jwt.claims.level', 'TENANT_ADMIN', true), set_config('role', 'authhub_tenant_admin', true)",
        [f.a.id, f.a.users.tenantAdmin],
      );
      expect((await client.query("select id from authhub.users")).rows).toEqual([]);
      expect((await client.query("select id from authhub.organizations")).rows).toEqual([]);
      expect((await attemptQuery(client, "update authhub.users set display_name = 'x' where tenant_id = $1", [f.a.id])).rowCount).toBe(0);
    } finally {
      await client.query("rollback");
      client.release();
    }
    // Control: the same caller through begin_request sees its tenant.
    const seen = await asActor(db, cast(f, f.a).tenantAdmin, (c) => rowsOf(c, "select id from authhub.users"));
    expect(seen.length).toBeGreaterThan(3);
  });

  test("request roles cannot call begin_request to re-resolve", async () => {
    expect(await attempt(cast(f, f.a).superAdmin, "select authhub_private.begin_request()")).toBe("42501");
    expect(await attempt("anonymous", "select authhub_private.begin_request()")).toBe("42501");
  });

  test("a demotion takes effect on the next request, not within the one under way", async () => {
    const { tenantAdmin } = cast(f, f.a);
    const user = (
      await db.owner.query<{ id: string }>("insert into authhub.users (tenant_id, email, level) values ($1, 'demoted@tenant-a.test', 'TENANT_ADMIN') returning id", [f.a.id])
    ).rows[0]!.id;
    const demotable = identity(f.a, user, "TENANT_ADMIN");
    try {
      expect(await roleOf(demotable)).toBe("authhub_tenant_admin");
      await asActor(db, demotable, async (c) => {
        await db.owner.query("update authhub.users set level = 'USER' where id = $1", [user]);
        // Resolved at the start: this transaction keeps what it began with.
        expect((await c.query("select authhub_private.current_user_level() as l")).rows[0].l).toBe("TENANT_ADMIN");
      });
      expect(await roleOf(demotable)).toBe("authhub_user");
      expect(await attempt(demotable, "update authhub.users set display_name = 'Escalated' where id = $1", [tenantAdmin.userId])).toBe(0);
    } finally {
      await db.owner.query("delete from authhub.users where id = $1", [user]);
    }
  });
});

describe("the organization closure", () => {
  /** Every (ancestor, organization) pair as parent_id says, and as the closure holds it. */
  const truth = async (tenantId: string) =>
    (
      await db.owner.query<{ pair: string }>(
        `with recursive up (o, a) as (
           select id, id from authhub.organizations where tenant_id = $1
           union
           select up.o, p.parent_id from up join authhub.organizations p on p.tenant_id = $1 and p.id = up.a where p.parent_id is not null)
         select a || '>' || o as pair from up order by 1`,
        [tenantId],
      )
    ).rows.map((r) => r.pair);
  const closure = async (tenantId: string) =>
    (
      await db.owner.query<{ pair: string }>("select ancestor_id || '>' || organization_id as pair from authhub_private.organization_closure where tenant_id = $1 order by 1", [
        tenantId,
      ])
    ).rows.map((r) => r.pair);

  test("follows inserts (a child before its parent in one statement), moves of subtrees and deletions", async () => {
    const t = f.b.id;
    expect(await closure(t)).toEqual(await truth(t));
    // One statement, the child first.
    await db.owner.query(
      `insert into authhub.organizations (tenant_id, id, slug, name, parent_id) values
         ($1, '00000000-0000-4000-8000-0000000000c2', 'late-child', 'Late child', '00000000-0000-4000-8000-0000000000c1'),
         ($1, '00000000-0000-4000-8000-0000000000c1', 'late-parent', 'Late parent', $2)`,
      [t, f.b.orgs.grandchild],
    );
    expect(await closure(t)).toEqual(await truth(t));
    // A subtree moves (child, with grandchild and the two new ones, under sibling), and back.
    await db.owner.query("update authhub.organizations set parent_id = $1 where id = $2", [f.b.orgs.sibling, f.b.orgs.child]);
    expect(await closure(t)).toEqual(await truth(t));
    await db.owner.query("update authhub.organizations set parent_id = null where id = $1", [f.b.orgs.child]);
    expect(await closure(t)).toEqual(await truth(t));
    await db.owner.query("update authhub.organizations set parent_id = $1 where id = $2", [f.b.orgs.root, f.b.orgs.child]);
    await db.owner.query("delete from authhub.organizations where id in ('00000000-0000-4000-8000-0000000000c2')");
    await db.owner.query("delete from authhub.organizations where id in ('00000000-0000-4000-8000-0000000000c1')");
    expect(await closure(t)).toEqual(await truth(t));
    expect(await truth(t)).toContain(`${f.b.orgs.root}>${f.b.orgs.grandchild}`);
  });

  test("an org admin's scope follows a move of its subtree on the next request", async () => {
    const { orgAdmin } = cast(f, f.b);
    const orgs = () =>
      asActor(db, orgAdmin, async (c) => (await c.query<{ id: string }>("select id from authhub_private.managed_organization_ids() id")).rows.map((r) => r.id).sort());
    expect(await orgs()).toEqual([f.b.orgs.child, f.b.orgs.grandchild].sort());
    await db.owner.query("update authhub.organizations set parent_id = $1 where id = $2", [f.b.orgs.child, f.b.orgs.sibling]);
    try {
      expect(await orgs()).toEqual([f.b.orgs.child, f.b.orgs.grandchild, f.b.orgs.sibling].sort());
    } finally {
      await db.owner.query("update authhub.organizations set parent_id = null where id = $1", [f.b.orgs.sibling]);
    }
    expect(await orgs()).toEqual([f.b.orgs.child, f.b.orgs.grandchild].sort());
  });

  test("request roles cannot read the closure directly", async () => {
    expect(await attempt(cast(f, f.a).superAdmin, "select * from authhub_private.organization_closure")).toBe("42501");
    expect((await db.owner.query("select 1 from authhub_private.organization_closure limit 1")).rowCount).toBe(1);
  });
});

describe("the nonce store's epoch", () => {
  test("after a crash empties the store, a request signed before it is refused, one signed after is taken", async () => {
    const key = (
      await db.owner.query<{ id: string }>(
        "insert into authhub.api_keys (tenant_id, key_id, name, scopes) values ($1, 'ak_epochepochepochepoch00', 'Epoch', '{user:read}') returning id",
        [f.a.id],
      )
    ).rows[0]!.id;
    const begin = async (nonce: string, signedAt: number) =>
      (await db.auth.query("select authhub_private.begin_api_request($1, $2, $3, 300, to_timestamp($4)) as ok", [key, f.a.id, nonce, signedAt])).rows[0].ok;
    const seconds = () => Math.floor(Date.now() / 1000);
    const captured = seconds() - 200;
    expect(await begin("epoch-nonce-000001", captured)).toBe(true);
    // What crash recovery does to unlogged tables: both emptied.
    await db.owner.query("truncate authhub_private.api_nonces, authhub_private.api_nonce_epoch");
    // The captured request, replayed: its nonce is unknown now, but it was signed before the store came back.
    expect(await begin("epoch-nonce-000001", captured)).toBe(false);
    // That refusal recorded the epoch, and it stays (a refusal must not roll it back).
    expect((await db.owner.query("select count(*)::int as n from authhub_private.api_nonce_epoch")).rows[0].n).toBe(1);
    // A request signed after the store came back is taken, once.
    await new Promise((r) => setTimeout(r, 1100));
    const fresh = seconds();
    expect(await begin("epoch-nonce-000002", fresh)).toBe(true);
    expect(await begin("epoch-nonce-000002", fresh)).toBe(false);
    expect(await begin("epoch-nonce-000003", captured)).toBe(false);
    await db.owner.query("update authhub_private.api_nonce_epoch set started_at = now() - interval '1 hour'");
  });
});

describe("keys beyond their issuer's authority", () => {
  test("are listed for tenant admins and flagged by the worker's pass (audited), and unflagged when the authority returns", async () => {
    const { tenantAdmin } = cast(f, f.a);
    // A key the org admin issued over its subtree (as issue_api_key records it: created_by).
    const key = (
      await db.owner.query<{ id: string }>(
        "insert into authhub.api_keys (tenant_id, key_id, organization_id, name, scopes, created_by) values ($1, 'ak_issuerissuerissuer0001', $2, 'Issued', '{user:read}', $3) returning id",
        [f.a.id, f.a.orgs.child, f.a.users.orgAdmin],
      )
    ).rows[0]!.id;
    const listed = () => asActor(db, tenantAdmin, async (c) => (await c.query<{ id: string }>("select id from authhub.api_keys_beyond_issuer_authority()")).rows.map((r) => r.id));
    // The worker's pass, through graphile-worker and the real task; answers whether the key is flagged.
    const pass = async () => {
      await runTask(db, "api_keys__check_issuers");
      return (await db.owner.query("select issuer_authority_lost_at is not null as flagged from authhub.api_keys where id = $1", [key])).rows[0].flagged as boolean;
    };
    try {
      expect(await listed()).toEqual([]);
      expect(await pass()).toBe(false);
      // Demoted: no longer ORG_ADMIN of child.
      await db.owner.query("update authhub.memberships set level = 'USER' where tenant_id = $1 and user_id = $2 and organization_id = $3", [
        f.a.id,
        f.a.users.orgAdmin,
        f.a.orgs.child,
      ]);
      expect(await listed()).toEqual([key]);
      // Not visible to a caller who may not read keys (control: the tenant admin above does).
      expect(await asActor(db, cast(f, f.a).member, (c) => rowsOf(c, "select id from authhub.api_keys_beyond_issuer_authority()"))).toEqual([]);
      expect(await pass()).toBe(true);
      expect(await pass()).toBe(true);
      const audit = await db.owner.query(
        "select actor, new ->> 'issuer_authority_lost_at' is not null as flagged from authhub.audit_events where table_name = 'api_keys' and row_key ->> 'id' = $1 and operation = 'UPDATE'",
        [key],
      );
      expect(audit.rows).toEqual([{ actor: "system:api_keys__check_issuers", flagged: true }]);
      // The authority returns: the flag is cleared.
      await db.owner.query("update authhub.memberships set level = 'ORG_ADMIN' where tenant_id = $1 and user_id = $2 and organization_id = $3", [
        f.a.id,
        f.a.users.orgAdmin,
        f.a.orgs.child,
      ]);
      expect(await listed()).toEqual([]);
      expect(await pass()).toBe(false);
    } finally {
      await db.owner.query("update authhub.memberships set level = 'ORG_ADMIN' where tenant_id = $1 and user_id = $2 and organization_id = $3", [
        f.a.id,
        f.a.users.orgAdmin,
        f.a.orgs.child,
      ]);
      await db.owner.query("delete from authhub.api_keys where id = $1", [key]);
    }
  });
});
