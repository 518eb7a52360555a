/**
 * The audit log (issue 4, first part): every change to an audited table is
 * recorded with actor and trace id by one generic trigger; the log is
 * append-only for everyone; reads follow audit:read.
 */
import { asActor, attemptAs, type TestDatabase } from "../helpers/db.js";
import { cast, useFixtureDatabase, type Fixtures } from "../helpers/fixtures.js";

let db: TestDatabase;
let f: Fixtures;

useFixtureDatabase((database, fixtures) => {
  db = database;
  f = fixtures;
});

interface Event {
  table_name: string;
  operation: string;
  row_key: Record<string, string>;
  old: Record<string, unknown> | null;
  new: Record<string, unknown> | null;
  changed_columns: string[] | null;
  actor: string;
  trace_id: string | null;
  organization_id: string | null;
}

const eventsFor = async (table: string, id: string) =>
  (
    await db.owner.query<Event>(
      "select table_name, operation, row_key, old, new, changed_columns, actor, trace_id, organization_id from authhub.audit_events where table_name = $1 and row_key ->> 'id' = $2 order by id",
      [table, id],
    )
  ).rows;

test("fixture writes as the owner are recorded with a db: actor", async () => {
  const [created] = await eventsFor("users", f.a.users.member);
  expect(created).toMatchObject({ operation: "INSERT", actor: "db:authhub_owner", row_key: { id: f.a.users.member, tenant_id: f.a.id } });
  expect(created!.new).toMatchObject({ email: "member@tenant-a.test" });
});

test("a request's change is recorded with the user, the trace id and the changed columns", async () => {
  await asActor(db, cast(f, f.a).tenantAdmin, async (c) => {
    await c.query("update authhub.users set display_name = 'Renamed' where id = $1", [f.a.users.outsider]);
    const { rows } = await c.query<Event>(
      "select operation, changed_columns, actor, trace_id from authhub.audit_events where table_name = 'users' and row_key ->> 'id' = $1 and operation = 'UPDATE'",
      [f.a.users.outsider],
    );
    expect(rows).toEqual([{ operation: "UPDATE", changed_columns: ["display_name", "updated_at"], actor: `user:${f.a.users.tenantAdmin}`, trace_id: "test-trace-0001" }]);
  });
});

test("a 100-row statement writes 100 events in one go, and deletes record the old values", async () => {
  await db.owner.query("begin");
  try {
    await db.owner.query("select set_config('authhub.actor', 'system:test-batch', true)");
    await db.owner.query("insert into authhub.users (tenant_id, email) select $1, 'batch' || g || '@tenant-a.test' from generate_series(1, 100) g", [f.a.id]);
    await db.owner.query("delete from authhub.users where email = 'batch1@tenant-a.test'");
    const { rows } = await db.owner.query(
      "select operation, count(*)::int as n, min(actor) as actor from authhub.audit_events where actor = 'system:test-batch' group by operation order by operation",
    );
    expect(rows).toEqual([
      { operation: "INSERT", n: 100, actor: "system:test-batch" },
      { operation: "DELETE", n: 1, actor: "system:test-batch" },
    ]);
  } finally {
    await db.owner.query("rollback");
  }
});

test("the actor never leaks from an earlier transaction on the same connection", async () => {
  const client = await db.owner.connect();
  try {
    await client.query("begin; select set_config('authhub.actor', 'system:first', true); commit;");
    await client.query("update authhub.organizations set name = 'Leak check' where id = $1", [f.a.orgs.sibling]);
    const { rows } = await client.query("select actor from authhub.audit_events where table_name = 'organizations' and row_key ->> 'id' = $1 and operation = 'UPDATE'", [
      f.a.orgs.sibling,
    ]);
    expect(rows).toEqual([{ actor: "db:authhub_owner" }]);
  } finally {
    client.release();
  }
});

test("organization-scoped events carry the organization; memberships their organization", async () => {
  const [org] = await eventsFor("organizations", f.a.orgs.child);
  expect(org!.organization_id).toBe(f.a.orgs.child);
  const { rows } = await db.owner.query("select organization_id from authhub.audit_events where table_name = 'memberships' and row_key ->> 'user_id' = $1", [f.a.users.member]);
  expect(rows).toEqual([{ organization_id: f.a.orgs.grandchild }]);
});

describe("append-only", () => {
  test("request roles cannot change or remove events", async () => {
    for (const actor of [cast(f, f.a).tenantAdmin, cast(f, f.a).superAdmin]) {
      expect(await attemptAs(db, actor, "update authhub.audit_events set actor = 'user:nobody'")).toBe("42501");
      expect(await attemptAs(db, actor, "delete from authhub.audit_events")).toBe("42501");
      expect(await attemptAs(db, actor, "insert into authhub.audit_events (tenant_id, table_name, operation, actor) values ($1, 'users', 'INSERT', 'user:x')", [f.a.id])).toBe(
        "42501",
      );
    }
  });

  test("the owner's attempts fail loudly, and truncation is refused", async () => {
    const count = async () => (await db.owner.query("select count(*)::int as n from authhub.audit_events")).rows[0].n as number;
    const before = await count();
    for (const sql of ["update authhub.audit_events set actor = 'user:nobody'", "delete from authhub.audit_events", "truncate authhub.audit_events"]) {
      await expect(db.owner.query(sql)).rejects.toMatchObject({ code: "AH403" });
    }
    expect(await count()).toBe(before);
  });
});

describe("who reads the log", () => {
  const seen = (actor: Parameters<typeof attemptAs>[1]) =>
    asActor(db, actor, async (c) => (await c.query<{ tenant_id: string; table_name: string }>("select tenant_id, table_name from authhub.audit_events")).rows);

  test("a tenant admin reads its tenant's events only", async () => {
    const rows = await seen(cast(f, f.a).tenantAdmin);
    expect(rows.length).toBeGreaterThan(10);
    expect(rows.every((r) => r.tenant_id === f.a.id)).toBe(true);
    const control = await db.owner.query("select 1 from authhub.audit_events where tenant_id = $1", [f.b.id]);
    expect(control.rowCount).toBeGreaterThan(0);
  });

  test("an org admin reads its subtree's organization and membership events, not users or other organizations", async () => {
    const rows = await seen(cast(f, f.a).orgAdmin);
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.every((r) => r.tenant_id === f.a.id && ["organizations", "memberships", "role_assignments"].includes(r.table_name))).toBe(true);
    const ids = await asActor(db, cast(f, f.a).orgAdmin, async (c) =>
      (await c.query<{ organization_id: string }>("select distinct organization_id from authhub.audit_events")).rows.map((r) => r.organization_id).sort(),
    );
    expect(ids).toEqual([f.a.orgs.child, f.a.orgs.grandchild].sort());
  });

  test("a plain user reads nothing; a super admin reads every tenant", async () => {
    expect(await seen(cast(f, f.a).member)).toEqual([]);
    const all = await seen(cast(f, f.a).superAdmin);
    expect(new Set(all.map((r) => r.tenant_id))).toEqual(new Set([f.a.id, f.b.id]));
  });
});

test("registered secret columns never reach old or new", async () => {
  await db.owner.query("insert into authhub_private.audit_secret_columns (table_name, column_name) values ('users', 'external_id')");
  // Secrets are fixed when a table is enrolled: re-enrol after registering one.
  await db.owner.query("select authhub_private.audit_table('authhub.users', 'tenant_id', null)");
  try {
    await db.owner.query("update authhub.users set external_id = 'idp|secret-value' where id = $1", [f.a.users.outsider]);
    const { rows } = await db.owner.query<{ old: Record<string, unknown>; new: Record<string, unknown>; changed_columns: string[] }>(
      "select old, new, changed_columns from authhub.audit_events where table_name = 'users' and row_key ->> 'id' = $1 and operation = 'UPDATE' order by id desc limit 1",
      [f.a.users.outsider],
    );
    expect(rows[0]!.old).not.toHaveProperty("external_id");
    expect(rows[0]!.new).not.toHaveProperty("external_id");
    expect(JSON.stringify(rows[0])).not.toContain("secret-value");
  } finally {
    // Only this test's registration: the migrations' own (signing keys, API key and webhook secrets) stay.
    await db.owner.query("delete from authhub_private.audit_secret_columns where table_name = 'users' and column_name = 'external_id'");
    await db.owner.query("select authhub_private.audit_table('authhub.users', 'tenant_id', null)");
  }
});

test("a worker job's changes name the job as the actor", async () => {
  const { inJobTransaction } = await import("../../worker/jobTransaction.js");
  const client = await db.owner.connect();
  try {
    const helpers = { withPgClient: (fn: (c: typeof client) => Promise<unknown>) => fn(client) } as unknown as Parameters<typeof inJobTransaction>[0];
    const seen = await inJobTransaction(helpers, "identity__sync", async (c) => {
      const { rows } = await c.query("select current_user as role, current_setting('authhub.actor', true) as actor");
      return rows[0];
    });
    expect(seen).toEqual({ role: "authhub_worker", actor: "system:identity__sync" });
  } finally {
    client.release();
  }
});

test("an update that changes a row's key still records both sides", async () => {
  // A role nothing refers to yet (organizations keep their ids: the closure and stores refer to them).
  const role = (
    await db.owner.query<{ id: string }>("insert into authhub.roles (tenant_id, key, name, level) values ($1, 'rekeyed', 'Rekeyed', 'ORG_ADMIN') returning id", [f.a.id])
  ).rows[0]!.id;
  const renamed = (await db.owner.query<{ id: string }>("update authhub.roles set id = gen_random_uuid() where id = $1 returning id", [role])).rows[0]!.id;
  const { rows } = await db.owner.query(
    `select row_key ->> 'id' as key, old ->> 'id' as old_id, new ->> 'id' as new_id from authhub.audit_events
     where table_name = 'roles' and operation = 'UPDATE' and row_key ->> 'id' in ($1, $2) order by row_key ->> 'id' = $1 desc`,
    [role, renamed],
  );
  expect(rows).toEqual([
    { key: role, old_id: role, new_id: null },
    { key: renamed, old_id: null, new_id: renamed },
  ]);
});

test("org-scoped readers keep the history of organizations deleted from their subtree, and only theirs", async () => {
  const org = async (slug: string, parent: string) =>
    (
      await db.owner.query<{ id: string }>("insert into authhub.organizations (tenant_id, slug, name, parent_id) values ($1, $2, $3, $4) returning id", [
        f.a.id,
        slug,
        slug,
        parent,
      ])
    ).rows[0]!.id;
  // Two levels below the org admin's subtree, and one under the sibling tree.
  const doomed = await org("doomed", f.a.orgs.grandchild);
  const doomedChild = await org("doomed-child", doomed);
  const elsewhere = await org("elsewhere", f.a.orgs.sibling);
  for (const o of [doomedChild, elsewhere]) {
    await db.owner.query("insert into authhub.memberships (tenant_id, organization_id, user_id, level) values ($1, $2, $3, 'USER')", [f.a.id, o, f.a.users.outsider]);
  }
  // Deleting an organization cascades to its memberships; children go first.
  await db.owner.query("delete from authhub.organizations where id = any($1)", [[doomedChild, elsewhere]]);
  await db.owner.query("delete from authhub.organizations where id = $1", [doomed]);

  const history = (actor: Parameters<typeof attemptAs>[1]) =>
    asActor(
      db,
      actor,
      async (c) =>
        (
          await c.query<{ organization_id: string; table_name: string; operation: string }>(
            "select organization_id, table_name, operation from authhub.audit_events where organization_id = any($1) order by id",
            [[doomed, doomedChild, elsewhere]],
          )
        ).rows,
    );
  const asOrgAdmin = await history(cast(f, f.a).orgAdmin);
  const key = (e: { organization_id: string; table_name: string; operation: string }) => `${e.organization_id} ${e.table_name} ${e.operation}`;
  expect(asOrgAdmin.map(key).sort()).toEqual(
    [
      `${doomed} organizations INSERT`,
      `${doomed} organizations DELETE`,
      `${doomedChild} organizations INSERT`,
      `${doomedChild} organizations DELETE`,
      `${doomedChild} memberships INSERT`,
      `${doomedChild} memberships DELETE`,
    ].sort(),
  );
  // The sibling tree's deleted organization stays out of the org admin's view, and
  // tenant B's org admin (same shape, other tenant) sees none of it; a tenant admin sees all.
  expect(await history(cast(f, f.b).orgAdmin)).toEqual([]);
  const asTenantAdmin = await history(cast(f, f.a).tenantAdmin);
  expect(asTenantAdmin.filter((e) => e.organization_id === elsewhere)).toHaveLength(4);
  expect(asTenantAdmin).toHaveLength(10);
});
