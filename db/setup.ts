/**
 * Cluster-level setup that migrations cannot do, because roles are global and
 * migrations run as the database owner: create AuthHub's roles (idempotent),
 * the role hierarchy as membership, and the database itself. Needs a superuser
 * or CREATEROLE connection (ROOT_DATABASE_URL, or the embedded cluster's).
 */
import pg from "pg";

/** Roles a request may switch to; the authenticator is a member of each, and nothing else. */
export const REQUEST_ROLES = ["authhub_anonymous", "authhub_user", "authhub_org_admin", "authhub_tenant_admin", "authhub_super_admin", "authhub_api_client"] as const;

export const OWNER_ROLE = "authhub_owner";
export const AUTHENTICATOR_ROLE = "authhub_authenticator";
export const WORKER_ROLE = "authhub_worker";

export interface DatabaseSetup {
  rootUrl: string;
  database: string;
  /** Passwords to set on the login roles; null leaves them as they are (e.g. trust auth). */
  ownerPassword: string | null;
  authenticatorPassword: string | null;
}

const ident = (name: string) => pg.escapeIdentifier(name);
const literal = (value: string) => pg.escapeLiteral(value);

export async function ensureRolesAndDatabase(setup: DatabaseSetup): Promise<void> {
  const client = new pg.Client({ connectionString: setup.rootUrl });
  await client.connect();
  try {
    // Roles are shared by every database in the cluster (dev, tests, templates):
    // serialise concurrent setups so two of them cannot race on CREATE ROLE.
    await client.query("select pg_advisory_lock(7426001)");
    const existing = new Set((await client.query<{ rolname: string }>("select rolname from pg_roles where rolname like 'authhub\\_%'")).rows.map((r) => r.rolname));
    const createRole = async (name: string, attributes: string) => {
      if (!existing.has(name)) await client.query(`create role ${ident(name)} ${attributes}`);
      // Re-assert the attributes each time so a hand-edited role cannot keep more power.
      await client.query(`alter role ${ident(name)} ${attributes}`);
    };
    const safe = "nosuperuser nocreatedb nocreaterole nobypassrls noreplication";
    await createRole(OWNER_ROLE, `with login inherit ${safe}`);
    await createRole(AUTHENTICATOR_ROLE, `with login noinherit ${safe}`);
    for (const role of [...REQUEST_ROLES, WORKER_ROLE]) await createRole(role, `with nologin inherit ${safe}`);
    if (setup.ownerPassword !== null) {
      await client.query(`alter role ${ident(OWNER_ROLE)} password ${literal(setup.ownerPassword)}`);
    }
    if (setup.authenticatorPassword !== null) {
      await client.query(`alter role ${ident(AUTHENTICATOR_ROLE)} password ${literal(setup.authenticatorPassword)}`);
    }
    // The hierarchy SUPER_ADMIN > TENANT_ADMIN > ORG_ADMIN > USER is role membership:
    // each level inherits the grants and policies of the levels below it.
    await client.query(`grant authhub_user to authhub_org_admin`);
    await client.query(`grant authhub_org_admin to authhub_tenant_admin`);
    await client.query(`grant authhub_tenant_admin to authhub_super_admin`);
    // An API key's requests run under the same policies as a user's: its scopes
    // and USER level are answered by the authority helpers (see the API-key migration).
    await client.query(`grant authhub_user to authhub_api_client`);
    // The authenticator may become any request role (SET ROLE), and has no rights of its own.
    await client.query(`grant ${REQUEST_ROLES.map(ident).join(", ")} to ${ident(AUTHENTICATOR_ROLE)}`);
    // A runaway request cannot hold a connection for long (SET ROLE keeps this default).
    await client.query(`alter role ${ident(AUTHENTICATOR_ROLE)} set statement_timeout = '15s'`);
    // The owner runs worker jobs as the worker role.
    await client.query(`grant ${ident(WORKER_ROLE)} to ${ident(OWNER_ROLE)}`);
    // The owner remembers the issuer AuthHub's tokens carry as a database-level
    // setting (server/auth/issuer.ts); PostgreSQL 15+ lets a non-superuser set a
    // custom parameter that way only when granted.
    await client.query(`grant set on parameter authhub.issuer to ${ident(OWNER_ROLE)}`);

    const { rowCount } = await client.query("select 1 from pg_database where datname = $1", [setup.database]);
    if (!rowCount) {
      await client.query(`create database ${ident(setup.database)} owner ${ident(OWNER_ROLE)} encoding 'UTF8' template template0`);
    }
    await client.query(`revoke all on database ${ident(setup.database)} from public`);
    await client.query(`grant all on database ${ident(setup.database)} to ${ident(OWNER_ROLE)}`);
    await client.query(`grant connect on database ${ident(setup.database)} to ${ident(AUTHENTICATOR_ROLE)}`);
  } finally {
    await client.query("select pg_advisory_unlock(7426001)").catch(() => undefined);
    await client.end();
  }
}

/** A connection string for the same server and database as `url`, as another role. */
export function withCredentials(url: string, user: string, password: string | null, database?: string): string {
  const u = new URL(url);
  u.username = encodeURIComponent(user);
  u.password = password === null ? "" : encodeURIComponent(password);
  if (database !== undefined) u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

export function databaseName(url: string): string {
  return decodeURIComponent(new URL(url).pathname.replace(/^\//, "")) || "postgres";
}
