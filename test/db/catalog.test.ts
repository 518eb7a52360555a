/**
 * Structural guarantees read from the catalog, so a new table, role or function
 * cannot quietly skip them: forced RLS everywhere, tenant keys that lead every
 * key, runtime roles without special powers, column-level write grants only,
 * nothing granted to PUBLIC, pinned search_path on every definer function.
 */
import pg from "pg";
import { DUMPED_SCHEMAS } from "../../db/schemaDump.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";

// Every schema AuthHub owns (the schema dump's list), so a new one is covered without a change here.
const SCHEMAS = [...DUMPED_SCHEMAS];
const RUNTIME_ROLES = [
  "authhub_authenticator",
  "authhub_anonymous",
  "authhub_user",
  "authhub_org_admin",
  "authhub_tenant_admin",
  "authhub_super_admin",
  "authhub_api_client",
  "authhub_worker",
];

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db.close();
});

test("every table in the exposed and private schemas has RLS enabled and forced", async () => {
  const { rows } = await db.owner.query<{ name: string; enabled: boolean; forced: boolean }>(
    `select n.nspname || '.' || c.relname as name, c.relrowsecurity as enabled, c.relforcerowsecurity as forced
     from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = any($1) and c.relkind in ('r', 'p')
     order by 1`,
    [SCHEMAS],
  );
  expect(rows.length).toBeGreaterThanOrEqual(5);
  expect(rows.filter((r) => !r.enabled || !r.forced).map((r) => r.name)).toEqual([]);
});

/**
 * Unique keys that cannot lead with tenant_id: a request names these before any
 * tenant is known (an API key's public id, a refresh token's hash), and both are
 * random enough to be unique across tenants anyway.
 */
const GLOBAL_LOOKUPS = ["authhub.api_keys(key_id)", "authhub_private.refresh_tokens(token_hash)"];

test("every tenant-scoped table leads its primary key and unique keys with tenant_id (but for the global lookups)", async () => {
  const { rows } = await db.owner.query<{ name: string; columns: string; first_column: string }>(
    `select i.indrelid::regclass::text as name,
            i.indrelid::regclass::text || '(' || array_to_string(array(select a.attname from unnest(i.indkey::int2[]) with ordinality k(n, o)
                                                                      join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.n order by k.o), ',') || ')' as columns,
            (select a.attname from pg_attribute a where a.attrelid = i.indrelid and a.attnum = i.indkey[0]) as first_column
     from pg_index i
     join pg_class c on c.oid = i.indrelid
     join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = any($1) and i.indisunique
       and exists (select 1 from pg_attribute t where t.attrelid = i.indrelid and t.attname = 'tenant_id' and not t.attisdropped)`,
    [SCHEMAS],
  );
  expect(rows.length).toBeGreaterThanOrEqual(6);
  const global = rows
    .filter((r) => r.first_column !== "tenant_id")
    .map((r) => r.columns)
    .sort();
  expect(global).toEqual([...GLOBAL_LOOKUPS].sort());
});

test("every foreign key between tenant-scoped tables includes tenant_id on both sides", async () => {
  const { rows } = await db.owner.query<{ constraint: string; from_cols: string[]; to_cols: string[] }>(
    `select c.conname as constraint,
            array(select attname from pg_attribute where attrelid = c.conrelid and attnum = any(c.conkey)) as from_cols,
            array(select attname from pg_attribute where attrelid = c.confrelid and attnum = any(c.confkey)) as to_cols
     from pg_constraint c
     join pg_class r on r.oid = c.confrelid join pg_namespace n on n.oid = r.relnamespace
     where c.contype = 'f' and n.nspname = any($1)
       and exists (select 1 from pg_attribute t where t.attrelid = c.confrelid and t.attname = 'tenant_id' and not t.attisdropped)`,
    [SCHEMAS],
  );
  expect(rows.length).toBeGreaterThanOrEqual(3);
  expect(rows.filter((r) => !r.from_cols.includes("tenant_id") || !r.to_cols.includes("tenant_id"))).toEqual([]);
});

test("no runtime role is superuser, BYPASSRLS, able to create roles, or the owner of anything", async () => {
  const { rows } = await db.owner.query<{ rolname: string; rolsuper: boolean; rolbypassrls: boolean; rolcreaterole: boolean }>(
    "select rolname, rolsuper, rolbypassrls, rolcreaterole from pg_roles where rolname = any($1)",
    [RUNTIME_ROLES],
  );
  expect(rows.map((r) => r.rolname).sort()).toEqual([...RUNTIME_ROLES].sort());
  expect(rows.filter((r) => r.rolsuper || r.rolbypassrls || r.rolcreaterole)).toEqual([]);
  const owned = await db.owner.query(
    `select c.relname from pg_class c join pg_roles r on r.oid = c.relowner where r.rolname = any($1)
     union all
     select p.proname from pg_proc p join pg_roles r on r.oid = p.proowner where r.rolname = any($1)
     union all
     select n.nspname from pg_namespace n join pg_roles r on r.oid = n.nspowner where r.rolname = any($1)`,
    [RUNTIME_ROLES],
  );
  expect(owned.rows).toEqual([]);
  // The owner itself is no superuser either: FORCE RLS binds it.
  const ownerRole = await db.owner.query("select rolsuper, rolbypassrls from pg_roles where rolname = 'authhub_owner'");
  expect(ownerRole.rows[0]).toEqual({ rolsuper: false, rolbypassrls: false });
});

/**
 * Tables the login role uses directly, outside any request: only the rate-limit
 * counters (rate-limiter-flexible's store, server/rateLimit.ts), which name no
 * one and hold nothing but counts.
 */
const AUTHENTICATOR_TABLES = ["rate_limits"];

test("the authenticator has no rights of its own and cannot inherit any (but for the rate-limit counters)", async () => {
  const { rows } = await db.owner.query("select rolinherit from pg_roles where rolname = 'authhub_authenticator'");
  expect(rows[0]).toEqual({ rolinherit: false });
  const tables = await db.owner.query(
    `select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = any($1) and c.relkind = 'r'
       and (has_table_privilege('authhub_authenticator', c.oid, 'select') or has_table_privilege('authhub_authenticator', c.oid, 'insert')
            or has_table_privilege('authhub_authenticator', c.oid, 'update') or has_table_privilege('authhub_authenticator', c.oid, 'delete'))
     order by 1`,
    [SCHEMAS],
  );
  expect(tables.rows.map((r) => r.relname)).toEqual(AUTHENTICATOR_TABLES);
  const unlogged = await db.owner.query("select relpersistence from pg_class where oid = 'authhub_private.rate_limits'::regclass");
  expect(unlogged.rows).toEqual([{ relpersistence: "u" }]);
});

test("request roles write through column grants only: no table-wide INSERT or UPDATE", async () => {
  const { rows } = await db.owner.query(
    `select c.relname, g.privilege_type, r.rolname
     from pg_class c join pg_namespace n on n.oid = c.relnamespace,
          aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) g
     join pg_roles r on r.oid = g.grantee
     where n.nspname = any($1) and c.relkind = 'r'
       and g.privilege_type in ('INSERT', 'UPDATE') and r.rolname = any($2)
       and not (r.rolname = 'authhub_authenticator' and c.relname = any($3))`,
    [SCHEMAS, RUNTIME_ROLES, AUTHENTICATOR_TABLES],
  );
  expect(rows).toEqual([]);
});

test("nothing in AuthHub's schemas is granted to PUBLIC", async () => {
  const { rows } = await db.owner.query(
    `select 'table ' || c.relname as what from pg_class c join pg_namespace n on n.oid = c.relnamespace,
            aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) g
     where n.nspname = any($1) and g.grantee = 0
     union all
     select 'function ' || p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace,
            aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) g
     where n.nspname = any($1) and g.grantee = 0`,
    [SCHEMAS],
  );
  expect(rows).toEqual([]);
});

test("every policy says who it is for and why (comment on policy), so the schema dump carries it", async () => {
  const { rows } = await db.owner.query<{ name: string }>(
    `select n.nspname || '.' || c.relname || ' ' || p.polname as name
     from pg_policy p join pg_class c on c.oid = p.polrelid join pg_namespace n on n.oid = c.relnamespace
     left join pg_description d on d.objoid = p.oid and d.classoid = 'pg_policy'::regclass
     where n.nspname = any($1) and coalesce(length(d.description), 0) < 20
     order by 1`,
    [SCHEMAS],
  );
  expect(rows.map((r) => r.name)).toEqual([]);
});

test("every SECURITY DEFINER function pins its search_path", async () => {
  const { rows } = await db.owner.query<{ name: string; config: string[] | null }>(
    `select n.nspname || '.' || p.proname as name, p.proconfig as config
     from pg_proc p join pg_namespace n on n.oid = p.pronamespace
     where n.nspname = any($1) and p.prosecdef`,
    [SCHEMAS],
  );
  expect(rows.length).toBeGreaterThanOrEqual(8);
  expect(rows.filter((r) => !(r.config ?? []).some((c) => c.startsWith("search_path=")))).toEqual([]);
});

test("every table of the exposed and private schemas is audited, or exempt with a reason", async () => {
  const { rows } = await db.owner.query<{ name: string }>(
    `select c.oid::regclass::text as name
     from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = any($1) and c.relkind in ('r', 'p')
       and not exists (select 1 from authhub_private.audit_exemptions e where e.table_name = c.oid)
       and (select count(*) from pg_trigger t
            where t.tgrelid = c.oid and t.tgenabled = 'A'
              and t.tgname in ('_900_audit_insert', '_900_audit_update', '_900_audit_delete', '_900_audit_truncate')) <> 4
     order by 1`,
    [SCHEMAS],
  );
  expect(rows).toEqual([]);
  const exemptions = await db.owner.query<{ reason: string }>("select reason from authhub_private.audit_exemptions");
  expect(exemptions.rows.length).toBeGreaterThan(0);
});

test("every audited table's trigger removes exactly the secret columns registered for it", async () => {
  // audit_table() fixes the list when a table is enrolled: a column registered later
  // without enrolling the table again would reach the log.
  const { rows } = await db.owner.query<{ tbl: string; baked: string; registered: string }>(
    `select c.oid::regclass::text as tbl,
            coalesce((string_to_array(encode(t.tgargs, 'escape'), '\\000'))[3], '') as baked,
            coalesce((select string_agg(s.column_name, ',' order by s.column_name)
                      from authhub_private.audit_secret_columns s where s.table_name = c.relname), '') as registered
     from pg_trigger t join pg_class c on c.oid = t.tgrelid
     where t.tgname = '_900_audit_insert'
     order by 1`,
  );
  expect(rows.filter((r) => r.registered !== "").map((r) => r.tbl)).toEqual(
    expect.arrayContaining(["authhub_private.api_key_secrets", "authhub_private.signing_keys", "authhub_private.webhook_secrets"]),
  );
  expect(rows.filter((r) => r.baked !== r.registered)).toEqual([]);
});

test("instances starting together migrate once; the others wait for the lock instead of failing", async () => {
  const { runMigrations } = await import("../../db/migrate.js");
  const { OWNER_ROLE, withCredentials } = await import("../../db/setup.js");
  const { readdirSync } = await import("node:fs");
  // An empty database, as a first start finds it (the test's own is cloned already migrated).
  const rootUrl = process.env.AUTHHUB_TEST_ROOT_URL!;
  const name = `authhub_test_empty_${process.pid}`;
  const root = new pg.Client({ connectionString: rootUrl });
  await root.connect();
  try {
    await root.query(`create database ${name} template template0 owner ${OWNER_ROLE}`);
    const url = withCredentials(rootUrl, OWNER_ROLE, process.env.AUTHHUB_TEST_OWNER_PASSWORD || null, name);
    await expect(Promise.all([runMigrations(url), runMigrations(url), runMigrations(url)])).resolves.toHaveLength(3);
    const check = new pg.Client({ connectionString: url });
    await check.connect();
    try {
      const { rows } = await check.query<{ n: number }>("select count(*)::int as n from graphile_migrate.migrations");
      expect(rows[0]!.n).toBe(readdirSync(new URL("../../migrations/committed/", import.meta.url)).filter((f) => f.endsWith(".sql")).length);
    } finally {
      await check.end();
    }
  } finally {
    await root.query(`drop database if exists ${name} with (force)`);
    await root.end();
  }
});

test("the sync's per-row checks carry no SET clause, are declared as volatile as they are, and the field checks are inlined", async () => {
  // A SET clause keeps PostgreSQL from inlining a SQL function and makes every call save and
  // restore settings (migrations 000020-000021); a body more volatile than its declaration is
  // not inlined either, and an immutable function reading a table may be folded into a plan.
  const expected: Record<string, "i" | "s"> = {
    "is_text(jsonb,integer)": "i",
    "is_int(jsonb,numeric,numeric)": "i",
    "matches(jsonb,text)": "i",
    "is_instant(jsonb)": "i",
    "problem(text,text)": "s",
    "envelope_problems(jsonb,text,text)": "s",
    "customer_problems(jsonb)": "s",
    "inventory_problems(jsonb)": "s",
    "order_problems(jsonb)": "s",
    "product_problems(jsonb)": "s",
  };
  for (const [helper, volatility] of Object.entries(expected)) {
    const { rows } = await db.owner.query<{ config: string[] | null; definer: boolean; volatility: string }>(
      "select proconfig as config, prosecdef as definer, provolatile as volatility from pg_proc where oid = $1::regprocedure",
      [`retail_private.${helper}`],
    );
    expect({ helper, ...rows[0] }).toEqual({ helper, config: null, definer: false, volatility });
  }
  const plan = await db.owner.query<{ "QUERY PLAN": string }>(
    `explain (verbose, costs off) select retail_private.is_text(to_jsonb(g::text), 10), retail_private.is_int(to_jsonb(g), 0, 9), retail_private.matches(to_jsonb(g::text), '^1$'),
            retail_private.is_instant(to_jsonb(g::text)), retail_private.problem(g::text, 'm') from generate_series(1, 2) g`,
  );
  const text = plan.rows.map((r) => r["QUERY PLAN"]).join("\n");
  expect(text).not.toMatch(/is_text|is_int|matches|is_instant|problem/);
  expect(text).toMatch(/jsonb_typeof/);
  expect(text).toMatch(/jsonb_build_object/);
});
