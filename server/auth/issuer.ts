/**
 * The issuer (`iss`) of AuthHub's tokens, the same for the server and the CLI
 * (issue 13.1). AUTHHUB_ISSUER, when set, decides. Otherwise the issuer chosen
 * at the first start (`http://HOST:<port it listened on>`) is remembered in the
 * database, so `npx authhub token` in another terminal, which cannot see the
 * server's PORT, mints tokens the server accepts. Changing it is explicit:
 * `npx authhub issuer set <url>` (or AUTHHUB_ISSUER).
 *
 * Remembered as a database-level setting, `alter database … set authhub.issuer`,
 * done by the owner (db/setup.ts grants it `set on parameter authhub.issuer`,
 * PostgreSQL 15+), and read from pg_db_role_setting, which every role may read:
 * no table, no migration, and the server's login role could read it too.
 */
import pg from "pg";
import type { Config } from "../config.js";

export const ISSUER_SETTING = "authhub.issuer";

/** Where the issuer in force came from. */
export type IssuerSource = "environment" | "database" | "default";

type Queryable = Pick<pg.ClientBase, "query">;

/** The issuer the database remembers, or null. */
export async function rememberedIssuer(db: Queryable): Promise<string | null> {
  const { rows } = await db.query<{ value: string }>(
    `select substr(s.setting, length($1) + 2) as value
     from pg_catalog.pg_db_role_setting d, unnest(d.setconfig) as s(setting)
     where d.setdatabase = (select oid from pg_catalog.pg_database where datname = current_database())
       and d.setrole = 0 and s.setting like $1 || '=%'`,
    [ISSUER_SETTING],
  );
  return rows[0]?.value ?? null;
}

/** `url` if it is an http(s) URL (kept as written: `iss` is compared exactly), else an Error saying what is wrong. */
export function checkIssuer(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`The issuer must be a URL, got "${url}".`);
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") throw new Error(`The issuer must be an http(s) URL, got "${url}".`);
  if (url.length > 500) throw new Error("The issuer must be at most 500 characters.");
  return url;
}

/** Remembers `issuer` for this database (the owner's act). */
export async function rememberIssuer(db: Queryable, issuer: string): Promise<void> {
  const { rows } = await db.query<{ name: string }>("select current_database() as name");
  try {
    await db.query(`alter database ${pg.escapeIdentifier(rows[0]!.name)} set ${ISSUER_SETTING} = ${pg.escapeLiteral(checkIssuer(issuer))}`);
  } catch (err) {
    if ((err as { code?: string }).code !== "42501") throw err;
    throw new Error(
      `The database role cannot remember the issuer (${(err as Error).message}). As a superuser, run once: grant set on parameter ${ISSUER_SETTING} to authhub_owner (ROOT_DATABASE_URL does it), or set AUTHHUB_ISSUER everywhere.`,
      { cause: err },
    );
  }
}

/** For the CLI: AUTHHUB_ISSUER, else the remembered issuer, else the default (no server has started yet). */
export async function issuerInForce(db: Queryable, config: Pick<Config, "issuer" | "issuerFromEnvironment">): Promise<{ issuer: string; source: IssuerSource }> {
  if (config.issuerFromEnvironment) return { issuer: config.issuer, source: "environment" };
  const remembered = await rememberedIssuer(db);
  return remembered !== null ? { issuer: remembered, source: "database" } : { issuer: config.issuer, source: "default" };
}

export interface ServerIssuer {
  issuer: string;
  source: IssuerSource;
  /** Whether the database holds it now (false: it could not be stored; see `problem`). */
  remembered: boolean;
  /** Chosen by this start (nothing was remembered). */
  chosen: boolean;
  problem?: string;
}

/**
 * For a starting server: AUTHHUB_ISSUER (remembered too, so the CLI follows
 * it), else the remembered issuer, else `chosen` (the URL the server listens
 * on), remembered now. Serialised, so two servers starting together agree.
 */
export async function issuerForServer(owner: pg.Pool, config: Pick<Config, "issuer" | "issuerFromEnvironment">, chosen: string): Promise<ServerIssuer> {
  const client = await owner.connect();
  try {
    await client.query("begin");
    await client.query("select pg_advisory_xact_lock(hashtext($1))", [ISSUER_SETTING]);
    const remembered = await rememberedIssuer(client);
    if (!config.issuerFromEnvironment && remembered !== null) {
      await client.query("commit");
      return { issuer: remembered, source: "database", remembered: true, chosen: false };
    }
    const issuer = config.issuerFromEnvironment ? config.issuer : chosen;
    const source: IssuerSource = config.issuerFromEnvironment ? "environment" : "default";
    if (remembered === issuer) {
      await client.query("commit");
      return { issuer, source, remembered: true, chosen: false };
    }
    try {
      await rememberIssuer(client, issuer);
      await client.query("commit");
      return { issuer, source, remembered: true, chosen: !config.issuerFromEnvironment };
    } catch (err) {
      await client.query("rollback");
      return { issuer, source, remembered: false, chosen: false, problem: (err as Error).message };
    }
  } catch (err) {
    await client.query("rollback").catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
