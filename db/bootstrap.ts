/**
 * The bootstrap path (DESIGN.md §10): a tenant by its slug and an admin by
 * e-mail, as the operator. One place for `npx authhub bootstrap` and the demo
 * seed, so both create tenants and admins the same way. Neither statement
 * writes a row that would not change: a rerun leaves no audit event behind.
 */
import type pg from "pg";
import type { RoleLevel } from "./claims.js";

type Queryable = Pick<pg.PoolClient, "query">;

export interface EnsuredTenant {
  id: string;
  slug: string;
  created: boolean;
}

/** The tenant `slug`, created with `name` when missing (an existing one is left as it is). */
export async function ensureTenant(client: Queryable, slug: string, name: string): Promise<EnsuredTenant> {
  const { rows } = await client.query<EnsuredTenant>(
    `with inserted as (
       insert into authhub.tenants (slug, name) values ($1, $2)
       on conflict (slug) do nothing
       returning id, slug, true as created
     )
     select * from inserted
     union all
     select id, slug, false from authhub.tenants where slug = $1 and not exists (select 1 from inserted)`,
    [slug, name],
  );
  return rows[0]!;
}

export interface EnsuredAdmin {
  id: string;
  email: string;
  level: RoleLevel;
  /** Inserted by this call. */
  created: boolean;
  /** Inserted, promoted or reactivated by this call. */
  changed: boolean;
}

/**
 * `email` as an active admin of at least `level`: created when missing, an
 * existing user promoted and reactivated, never demoted. A user already at that
 * level (or above) and active is not touched.
 */
export async function ensureAdmin(
  client: Queryable,
  tenantId: string,
  email: string,
  level: Extract<RoleLevel, "TENANT_ADMIN" | "SUPER_ADMIN">,
  displayName: string | null = null,
): Promise<EnsuredAdmin> {
  const { rows } = await client.query<EnsuredAdmin>(
    `with upserted as (
       insert into authhub.users (tenant_id, email, display_name, level) values ($1, $2, $4, $3)
       on conflict (tenant_id, email) do update
         set level = greatest(authhub.users.level, excluded.level), status = 'active'
         where authhub.users.level < excluded.level or authhub.users.status <> 'active'
       returning id, email, level, xmax = 0 as created
     )
     select id, email, level, created, true as changed from upserted
     union all
     select id, email, level, false, false from authhub.users
     where tenant_id = $1 and email = lower($2) and not exists (select 1 from upserted)`,
    [tenantId, email, level, displayName],
  );
  return rows[0]!;
}
