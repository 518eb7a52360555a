/**
 * The demo tenant's people and structure (`npx authhub seed demo`, issue 13):
 * nested organizations, a user at every level, a custom role assigned for one
 * subtree. Written as the operator, in the caller's transaction, with
 * set-based SQL over a plan, so the same code seeds any tenant slug.
 *
 * Idempotent by natural keys (tenant slug, organization slug, e-mail, role key,
 * and the keys of memberships, role permissions and assignments): a missing row
 * is created, an existing one is left exactly as it is, never updated or
 * deleted, so a rerun writes nothing (and leaves no audit event). The admins
 * are the one exception, through the bootstrap path: like `authhub bootstrap`,
 * a demoted or suspended demo admin is promoted and reactivated.
 *
 * The stores of the retail seed (DESIGN.md §12) are organizations: the store
 * organizations here are the ones a later retail step fills (their slugs are
 * the store codes).
 */
import type pg from "pg";
import { ensureAdmin, ensureTenant, type EnsuredTenant } from "../bootstrap.js";
import type { RoleLevel } from "../claims.js";

type Queryable = Pick<pg.PoolClient, "query">;

export interface PlannedOrganization {
  slug: string;
  name: string;
  /** The parent's slug; it comes earlier in the plan. */
  parent: string | null;
  /** A store organization (a later retail seed fills it). */
  store: boolean;
}

export interface PlannedUser {
  email: string;
  displayName: string;
  /** Tenant-wide level (users.level). */
  level: Extract<RoleLevel, "USER" | "TENANT_ADMIN" | "SUPER_ADMIN">;
  memberships: { organization: string; level: Extract<RoleLevel, "USER" | "ORG_ADMIN"> }[];
  /** What the demo shows with this user, for the "try this" list. */
  shows: string;
}

export interface PlannedRole {
  key: string;
  name: string;
  description: string;
  /** The built-in level it sits under (roles.level). */
  level: Extract<RoleLevel, "ORG_ADMIN" | "TENANT_ADMIN">;
  permissions: string[];
}

export interface IdentityPlan {
  tenant: { slug: string; name: string };
  organizations: PlannedOrganization[];
  users: PlannedUser[];
  roles: PlannedRole[];
  /** `organization` null: tenant-wide. */
  assignments: { email: string; role: string; organization: string | null }[];
}

/** The demo's identity data for tenant `slug`; e-mails are `<who>@<slug>.example` (RFC 2606: never delivered). */
export function demoIdentityPlan(slug: string): IdentityPlan {
  const email = (who: string) => `${who}@${slug}.example`;
  return {
    tenant: { slug, name: "AuthHub demo" },
    organizations: [
      { slug: "seller-one", name: "Seller One", parent: null, store: false },
      { slug: "store-a", name: "Store A", parent: "seller-one", store: true },
      { slug: "store-b", name: "Store B", parent: "seller-one", store: true },
      { slug: "seller-two", name: "Seller Two", parent: null, store: false },
    ],
    users: [
      { email: email("super"), displayName: "Sam Super", level: "SUPER_ADMIN", memberships: [], shows: "SUPER_ADMIN: every tenant" },
      { email: email("admin"), displayName: "Ada Admin", level: "TENANT_ADMIN", memberships: [], shows: "TENANT_ADMIN: the whole tenant" },
      {
        email: email("seller-admin"),
        displayName: "Omar Owner",
        level: "USER",
        memberships: [{ organization: "seller-one", level: "ORG_ADMIN" }],
        shows: "ORG_ADMIN of seller-one: it and its stores",
      },
      {
        email: email("support"),
        displayName: "Sue Support",
        level: "USER",
        memberships: [],
        shows: "USER with the support-agent role on seller-one: reads its people only",
      },
      { email: email("clerk-a"), displayName: "Carl Clerk", level: "USER", memberships: [{ organization: "store-a", level: "USER" }], shows: "USER, member of store-a" },
      { email: email("clerk-b"), displayName: "Cleo Clerk", level: "USER", memberships: [{ organization: "store-b", level: "USER" }], shows: "USER, member of store-b" },
      { email: email("seller-two"), displayName: "Tess Two", level: "USER", memberships: [{ organization: "seller-two", level: "USER" }], shows: "USER, member of seller-two" },
    ],
    roles: [
      {
        key: "support-agent",
        name: "Support agent",
        description: "Reads the people and memberships of the organizations it is assigned for (demo).",
        level: "ORG_ADMIN",
        permissions: ["user:read", "membership:read"],
      },
    ],
    assignments: [{ email: email("support"), role: "support-agent", organization: "seller-one" }],
  };
}

/** Rows this run inserted (or, for admins, promoted), per table. */
export interface IdentityCounts {
  tenants: number;
  organizations: number;
  users: number;
  memberships: number;
  roles: number;
  role_permissions: number;
  role_assignments: number;
}

export interface SeededIdentity {
  tenant: EnsuredTenant;
  organizations: { id: string; slug: string; name: string; parent: string | null; store: boolean }[];
  users: { id: string; email: string; level: RoleLevel; status: string; memberships: PlannedUser["memberships"]; shows: string }[];
  roles: { id: string; key: string; permissions: string[]; assignments: IdentityPlan["assignments"] }[];
  changed: IdentityCounts;
}

/** Parents before children: organizations grouped by depth in the plan. */
function byDepth(organizations: PlannedOrganization[]): PlannedOrganization[][] {
  const depth = new Map<string, number>();
  const levels: PlannedOrganization[][] = [];
  for (const o of organizations) {
    const d = o.parent === null ? 0 : depth.get(o.parent);
    if (d === undefined) throw new Error(`Seed plan: organization ${o.slug} comes before its parent ${o.parent}.`);
    depth.set(o.slug, o.parent === null ? 0 : d + 1);
    (levels[depth.get(o.slug)!] ??= []).push(o);
  }
  return levels;
}

/** Seeds `plan` on `client` (as the owner, in its transaction); answers what exists now and what this run changed. */
export async function seedIdentity(client: Queryable, plan: IdentityPlan): Promise<SeededIdentity> {
  // Two seeds of one tenant at once would both find no row and race; the second waits.
  await client.query("select pg_advisory_xact_lock(hashtextextended('authhub:seed:' || $1, 0))", [plan.tenant.slug]);
  const inserted = async (sql: string, params: unknown[]) => (await client.query(sql, params)).rowCount ?? 0;

  const tenant = await ensureTenant(client, plan.tenant.slug, plan.tenant.name);
  const t = tenant.id;
  const changed: IdentityCounts = { tenants: tenant.created ? 1 : 0, organizations: 0, users: 0, memberships: 0, roles: 0, role_permissions: 0, role_assignments: 0 };

  for (const level of byDepth(plan.organizations)) {
    changed.organizations += await inserted(
      `insert into authhub.organizations (tenant_id, slug, name, parent_id)
       select $1, o.slug, o.name, p.id
       from jsonb_to_recordset($2) as o (slug text, name text, parent text)
       left join authhub.organizations p on p.tenant_id = $1 and p.slug = o.parent
       on conflict (tenant_id, slug) do nothing`,
      [t, JSON.stringify(level)],
    );
  }

  // Admins through the bootstrap path; everyone else only when missing.
  for (const u of plan.users) {
    if (u.level !== "USER" && (await ensureAdmin(client, t, u.email, u.level, u.displayName)).changed) changed.users++;
  }
  changed.users += await inserted(
    `insert into authhub.users (tenant_id, email, display_name, level)
     select $1, u.email, u."displayName", 'USER'
     from jsonb_to_recordset($2) as u (email text, "displayName" text)
     on conflict (tenant_id, email) do nothing`,
    [t, JSON.stringify(plan.users.filter((u) => u.level === "USER"))],
  );

  changed.memberships += await inserted(
    `insert into authhub.memberships (tenant_id, organization_id, user_id, level)
     select $1, o.id, u.id, m.level::authhub.role_level
     from jsonb_to_recordset($2) as m (email text, organization text, level text)
     join authhub.users u on u.tenant_id = $1 and u.email = m.email
     join authhub.organizations o on o.tenant_id = $1 and o.slug = m.organization
     on conflict (tenant_id, organization_id, user_id) do nothing`,
    [t, JSON.stringify(plan.users.flatMap((u) => u.memberships.map((m) => ({ email: u.email, ...m }))))],
  );

  changed.roles += await inserted(
    `insert into authhub.roles (tenant_id, key, name, description, level)
     select $1, r.key, r.name, r.description, r.level::authhub.role_level
     from jsonb_to_recordset($2) as r (key text, name text, description text, level text)
     on conflict (tenant_id, key) do nothing`,
    [t, JSON.stringify(plan.roles)],
  );
  changed.role_permissions += await inserted(
    `insert into authhub.role_permissions (tenant_id, role_id, permission_key)
     select $1, r.id, p.permission
     from jsonb_to_recordset($2) as x (key text, permissions text[])
     join authhub.roles r on r.tenant_id = $1 and r.key = x.key
     cross join unnest(x.permissions) as p (permission)
     on conflict do nothing`,
    [t, JSON.stringify(plan.roles)],
  );
  changed.role_assignments += await inserted(
    `insert into authhub.role_assignments (tenant_id, user_id, role_id, organization_id)
     select $1, u.id, r.id, o.id
     from jsonb_to_recordset($2) as a (email text, role text, organization text)
     join authhub.users u on u.tenant_id = $1 and u.email = a.email
     join authhub.roles r on r.tenant_id = $1 and r.key = a.role
     left join authhub.organizations o on o.tenant_id = $1 and o.slug = a.organization
     where a.organization is null or o.id is not null
     on conflict on constraint role_assignments_unique do nothing`,
    [t, JSON.stringify(plan.assignments)],
  );

  // What exists now, read back by the plan's natural keys.
  const orgs = await client.query<{ id: string; slug: string }>("select id, slug from authhub.organizations where tenant_id = $1 and slug = any($2)", [
    t,
    plan.organizations.map((o) => o.slug),
  ]);
  const users = await client.query<{ id: string; email: string; level: RoleLevel; status: string }>(
    "select id, email, level, status from authhub.users where tenant_id = $1 and email = any($2)",
    [t, plan.users.map((u) => u.email)],
  );
  const roles = await client.query<{ id: string; key: string; permissions: string[] }>(
    `select r.id, r.key, array(select rp.permission_key::text from authhub.role_permissions rp
                                where rp.tenant_id = r.tenant_id and rp.role_id = r.id order by 1) as permissions
     from authhub.roles r where r.tenant_id = $1 and r.key = any($2)`,
    [t, plan.roles.map((r) => r.key)],
  );
  const orgBySlug = new Map(orgs.rows.map((o) => [o.slug, o.id]));
  const userByEmail = new Map(users.rows.map((u) => [u.email, u]));
  const roleByKey = new Map(roles.rows.map((r) => [r.key, r]));
  return {
    tenant,
    organizations: plan.organizations.flatMap((o) => (orgBySlug.has(o.slug) ? [{ id: orgBySlug.get(o.slug)!, ...o }] : [])),
    users: plan.users.flatMap((u) => {
      const row = userByEmail.get(u.email);
      return row ? [{ ...row, memberships: u.memberships, shows: u.shows }] : [];
    }),
    roles: plan.roles.flatMap((r) => {
      const row = roleByKey.get(r.key);
      return row ? [{ ...row, assignments: plan.assignments.filter((a) => a.role === r.key) }] : [];
    }),
    changed,
  };
}
