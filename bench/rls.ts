/**
 * What policy costs (issues 2, 3 and 14), database only, every side a request's
 * transaction as the server runs it (db/claims.ts): one round trip for begin,
 * the claims and `begin_request()` (the caller's authority, and the role to run
 * as); the page, a prepared statement as PostGraphile prepares its queries;
 * commit. The explicit side is the same transaction as the owner (policy
 * `true`), with the same claims and a role switch (to the owner), and the
 * filter written out. Each caller has its own connection (as a pooled
 * connection serving one kind of caller): a prepared statement under RLS is
 * replanned whenever the role it runs as changes, which bench/breakdown.ts
 * measures apart.
 *
 * Rows (the median of per-round ratios of throughput, with their spread):
 *  - RLS cost, tenant admin: the first 20 users of a 1k-user tenant ÷ the same
 *    rows by `where tenant_id = $1`. Target ≥ 0.85.
 *  - RLS cost, org admin: a 20-user page of its subtree (four organizations,
 *    300 members) ÷ the same rows by an explicit filter on the subtree's
 *    organization ids. Target ≥ 0.85.
 *  - RLS cost, custom role: a USER holding a custom role that grants user:read
 *    on the same subtree (the demo's support agent) ÷ the same explicit filter.
 *    Target ≥ 0.85.
 *  - Scale: p50 of the tenant admin's page on a 100k-user tenant ÷ on the 1k one.
 *    Target ≤ 1.5.
 *  - Tenant-only policy (a copy table, `tenant_id = current_tenant_id()`) ÷ the
 *    explicit filter. Target ≥ 0.95.
 *  - Permission policy ÷ tenant-only policy. Target ≥ 0.8.
 */
import { createHash } from "node:crypto";
import pg from "pg";
import { beginRequestStatement, pgSettingsFor, settingsStatement, type Identity } from "../db/claims.js";
import { readConfig, transactionLimits } from "../server/config.js";
import type { BenchContext } from "./context.js";
import { interleave, ratioRow, type Row, type Side } from "./stats.js";

export const COLUMNS = "id, email, display_name, level";
/** The page under RLS: the policies add every condition. */
export const PAGE_RLS = `select ${COLUMNS} from authhub.users order by tenant_id, id limit 20`;
/** The tenant admin's page with its filter written out. */
export const PAGE_EXPLICIT = `select ${COLUMNS} from authhub.users where tenant_id = $1 order by tenant_id, id limit 20`;
/** A subtree's page with its filter written out: the members of the given organizations. */
export const PAGE_EXPLICIT_ORGS =
  `select ${COLUMNS} from authhub.users where tenant_id = $1 ` +
  `and id in (select m.user_id from authhub.memberships m where m.tenant_id = $1 and m.organization_id = any ($2::uuid[])) ` +
  `order by tenant_id, id limit 20`;
/** The same users under a tenant-only policy (bench_rbac.users). */
export const PAGE_TENANT_ONLY = `select ${COLUMNS} from bench_rbac.users order by tenant_id, id limit 20`;

/** The users of the 1k-user tenant under the same subtree policy, its helper reading the permission's seeds once per statement (bench/breakdown.ts). */
export const PAGE_SEEDS_ONCE = `select ${COLUMNS} from bench_rbac.users_scoped order by tenant_id, id limit 20`;

/**
 * A what-if for the breakdown: authhub.users' two select policies as they were
 * before migration 000018 (the member set from a definer set-returning function
 * calling another), over a copy of the 1k-user tenant, with `permission_seeds(…)`
 * wrapped in `(select …)`, so that the comparison with the array helper that
 * replaced them (`scoped_user_ids`) is not about reading the seeds.
 */
const seedsOnceCopy = (tenantId: string) => `
  create function bench_rbac.organizations_with_permission(permission text) returns setof uuid
    language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select c.organization_id from authhub_private.organization_closure c
    where c.tenant_id = authhub.current_tenant_id()
      and c.ancestor_id = any ((select authhub_private.permission_seeds(organizations_with_permission.permission))::uuid[])
  $$;
  create function bench_rbac.users_in_organizations_with_permission(permission text) returns setof uuid
    language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select distinct m.user_id from authhub.memberships m
    where m.tenant_id = authhub.current_tenant_id()
      and m.organization_id in (select bench_rbac.organizations_with_permission(permission))
  $$;
  grant execute on function bench_rbac.organizations_with_permission(text), bench_rbac.users_in_organizations_with_permission(text) to authhub_user;
  create table bench_rbac.users_scoped (like authhub.users including all);
  insert into bench_rbac.users_scoped select * from authhub.users where tenant_id = ${pg.escapeLiteral(tenantId)};
  alter table bench_rbac.users_scoped enable row level security;
  alter table bench_rbac.users_scoped force row level security;
  create policy select_permitted on bench_rbac.users_scoped for select to authhub_user using (
    tenant_id = (select authhub.current_tenant_id())
    and ((select authhub_private.has_tenant_permission('user:read'))
         or id in (select bench_rbac.users_in_organizations_with_permission('user:read'))));
  create policy select_self on bench_rbac.users_scoped for select to authhub_user using (
    tenant_id = (select authhub.current_tenant_id()) and id = (select authhub.current_user_id()) and (select authhub_private.is_active_user()));
  grant select on bench_rbac.users_scoped to authhub_user;`;

/** The subtree the org admin and the custom-role holder see. */
export interface Subtree {
  orgIds: string[];
  orgAdminId: string;
  customRoleHolderId: string;
  members: number;
}

/** A prepared statement's name, stable per text (as @dataplan/pg names its statements). */
export const statementName = (sql: string) => `bench_${createHash("sha1").update(sql).digest("hex").slice(0, 16)}`;

/** One request's transaction: the opening round trip `begin`, the prepared statement, commit. */
export async function request(client: pg.PoolClient, begin: string, sql: string, params: unknown[] = [], prepared = true): Promise<Record<string, unknown>[]> {
  await client.query(begin);
  const r = prepared
    ? await client.query<Record<string, unknown>>({ name: statementName(sql), text: sql, values: params })
    : await client.query<Record<string, unknown>>(sql, params);
  await client.query("commit");
  return r.rows;
}

/** The settings every request carries: its claims, a trace id and the server's transaction limits. */
export const settingsOf = (identity: Identity) => pgSettingsFor(identity, "bench-trace-0001", transactionLimits(readConfig({})));
/** How the server opens a request's transaction: begin, the claims, begin_request's authority and role. */
export const rlsBegin = (identity: Identity) => beginRequestStatement(settingsOf(identity));
/** The explicit side's opening: the same claims and a role switch, as the owner, no authority resolved. */
export const explicitBegin = (identity: Identity) => `begin; ${settingsStatement({ ...settingsOf(identity), role: "authhub_owner" })}`;

/**
 * An organization tree in the 1k-user tenant: a root with three children, 300
 * members spread over the four; an ORG_ADMIN of the root; a USER holding a
 * custom role (user:read) on the root; and the tenant's users copied under a
 * tenant-only policy.
 */
export async function prepareRls(ctx: BenchContext): Promise<Subtree> {
  const { owner, small } = ctx;
  const t = small.tenantId;
  const rootId = (await owner.query<{ id: string }>("insert into authhub.organizations (tenant_id, slug, name) values ($1, 'bench-region', 'Region') returning id", [t])).rows[0]!
    .id;
  const { rows: branches } = await owner.query<{ id: string }>(
    "insert into authhub.organizations (tenant_id, slug, name, parent_id) select $1, 'bench-branch-' || g, 'Branch ' || g, $2 from generate_series(1, 3) g returning id",
    [t, rootId],
  );
  const orgs = [{ id: rootId }, ...branches];
  const orgIds = orgs.map((o) => o.id);
  const { rows: members } = await owner.query<{ id: string }>(
    `insert into authhub.memberships (tenant_id, organization_id, user_id, level)
     select $1, ($2::uuid[])[1 + ((row_number() over (order by u.email)) % 4)::int], u.id, 'USER'
     from (select id, email from authhub.users where tenant_id = $1 and level = 'USER' order by email limit 300) u
     returning user_id as id`,
    [t, orgIds],
  );
  const orgAdminId = members[0]!.id;
  const customRoleHolderId = members[1]!.id;
  await owner.query("update authhub.memberships set level = 'ORG_ADMIN' where tenant_id = $1 and user_id = $2", [t, orgAdminId]);
  // The admin's membership may be in a branch: make it the root's, where its subtree is all four.
  await owner.query("update authhub.memberships set organization_id = $3 where tenant_id = $1 and user_id = $2", [t, orgAdminId, orgIds[0]]);
  await owner.query(
    `with r as (insert into authhub.roles (tenant_id, key, name, level) values ($1, 'bench-reader', 'Reader', 'ORG_ADMIN') returning id),
          p as (insert into authhub.role_permissions (tenant_id, role_id, permission_key) select $1, r.id, 'user:read' from r)
     insert into authhub.role_assignments (tenant_id, user_id, role_id, organization_id) select $1, $2, r.id, $3 from r`,
    [t, customRoleHolderId, orgIds[0]],
  );
  await owner.query(`
    create schema bench_rbac;
    create table bench_rbac.users (like authhub.users including all);
    insert into bench_rbac.users select * from authhub.users;
    alter table bench_rbac.users enable row level security;
    alter table bench_rbac.users force row level security;
    create policy select_tenant_only on bench_rbac.users for select to authhub_user
      using (tenant_id = (select authhub.current_tenant_id()));
    grant usage on schema bench_rbac to authhub_user;
    grant select on bench_rbac.users to authhub_user;`);
  await owner.query(seedsOnceCopy(t));
  await owner.query("analyze");
  return { orgIds, orgAdminId, customRoleHolderId, members: members.length };
}

export const tenantAdmin = (ctx: BenchContext, which: "small" | "large" = "small"): Identity => ({
  userId: ctx[which].adminId,
  tenantId: ctx[which].tenantId,
  level: "TENANT_ADMIN",
});
export const orgAdmin = (ctx: BenchContext, s: Subtree): Identity => ({ userId: s.orgAdminId, tenantId: ctx.small.tenantId, level: "ORG_ADMIN" });
export const customRoleHolder = (ctx: BenchContext, s: Subtree): Identity => ({ userId: s.customRoleHolderId, tenantId: ctx.small.tenantId, level: "USER" });

/** Both sides answer the same 20 rows, or the row compares nothing. */
async function sameRows(label: string, a: Record<string, unknown>[], b: Record<string, unknown>[]) {
  if (a.length !== 20 || JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`${label}: the RLS and explicit pages disagree (${a.length} vs ${b.length} rows)`);
}

/** Connections held for a measurement's length: `connect` checks one out, `releaseAll` gives every one back. */
export function checkouts() {
  const clients: pg.PoolClient[] = [];
  return {
    connect: async (pool: pg.Pool) => {
      const c = await pool.connect();
      clients.push(c);
      return c;
    },
    releaseAll: () => {
      for (const c of clients.splice(0)) c.release();
    },
  };
}

export async function measureRls(ctx: BenchContext, subtree: Subtree): Promise<Row[]> {
  const { auth, owner, small, sizes } = ctx;
  const ta = tenantAdmin(ctx);
  const taLarge = tenantAdmin(ctx, "large");
  const oa = orgAdmin(ctx, subtree);
  const cr = customRoleHolder(ctx, subtree);
  const { connect, releaseAll } = checkouts();
  try {
    const [cTa, cLarge, cTenantOnly, cOa, cCr] = [await connect(auth), await connect(auth), await connect(auth), await connect(auth), await connect(auth)];
    const [eTa, eOa, eCr] = [await connect(owner), await connect(owner), await connect(owner)];
    const sides: Side[] = [
      { name: "explicit", run: () => request(eTa, explicitBegin(ta), PAGE_EXPLICIT, [small.tenantId]) },
      { name: "tenantAdmin", run: () => request(cTa, rlsBegin(ta), PAGE_RLS) },
      { name: "tenantAdminLarge", run: () => request(cLarge, rlsBegin(taLarge), PAGE_RLS) },
      { name: "tenantOnly", run: () => request(cTenantOnly, rlsBegin(ta), PAGE_TENANT_ONLY) },
      { name: "orgAdmin", run: () => request(cOa, rlsBegin(oa), PAGE_RLS) },
      { name: "orgAdminExplicit", run: () => request(eOa, explicitBegin(oa), PAGE_EXPLICIT_ORGS, [small.tenantId, subtree.orgIds]) },
      { name: "customRole", run: () => request(cCr, rlsBegin(cr), PAGE_RLS) },
      { name: "customRoleExplicit", run: () => request(eCr, explicitBegin(cr), PAGE_EXPLICIT_ORGS, [small.tenantId, subtree.orgIds]) },
    ];
    const first = async (name: string) => (await sides.find((s) => s.name === name)!.run()) as Record<string, unknown>[];
    await sameRows("tenant admin", await first("tenantAdmin"), await first("explicit"));
    await sameRows("tenant-only", await first("tenantOnly"), await first("explicit"));
    await sameRows("org admin", await first("orgAdmin"), await first("orgAdminExplicit"));
    await sameRows("custom role", await first("customRole"), await first("customRoleExplicit"));
    process.stderr.write("rls: tenant admin, org admin, custom role, tenant-only, 100k tenant…\n");
    const s = await interleave(sizes.rounds, sides, { calls: sizes.queriesPerRound, warmup: 50 });
    return [
      ratioRow({
        benchmark: "RLS cost: tenant admin, 20 users (RLS ÷ explicit filter, throughput)",
        numerator: s.tenantAdmin!,
        denominator: s.explicit!,
        target: { atLeast: 0.85 },
        names: ["RLS", "explicit"],
      }),
      ratioRow({
        benchmark: `RLS cost: org admin, 20 users of its subtree (${subtree.orgIds.length} orgs, ${subtree.members} members) ÷ explicit filter on the org ids`,
        numerator: s.orgAdmin!,
        denominator: s.orgAdminExplicit!,
        target: { atLeast: 0.85 },
        names: ["RLS", "explicit"],
      }),
      ratioRow({
        benchmark: "RLS cost: custom role (USER + role granting user:read on the subtree), 20 users ÷ explicit filter on the org ids",
        numerator: s.customRole!,
        denominator: s.customRoleExplicit!,
        target: { atLeast: 0.85 },
        names: ["RLS", "explicit"],
      }),
      ratioRow({
        benchmark: "Scale: p50 on 100k-user tenant ÷ p50 on 1k-user tenant",
        numerator: s.tenantAdminLarge!,
        denominator: s.tenantAdmin!,
        metric: "p50",
        target: { atMost: 1.5 },
        names: ["100k", "1k"],
      }),
      ratioRow({
        benchmark: "Tenant-only policy (copy table) ÷ explicit filter, 20 users (throughput)",
        numerator: s.tenantOnly!,
        denominator: s.explicit!,
        target: { atLeast: 0.95 },
        names: ["tenant-only", "explicit"],
      }),
      ratioRow({
        benchmark: "RBAC: permission policy ÷ tenant-only policy, 20 users (throughput)",
        numerator: s.tenantAdmin!,
        denominator: s.tenantOnly!,
        target: { atLeast: 0.8 },
        names: ["permission policy", "tenant-only"],
      }),
    ];
  } finally {
    releaseAll();
  }
}
