/**
 * Where the database is and how to reach it as each login role, for the server,
 * the worker and the CLI alike:
 * - no DATABASE_URL: the embedded cluster in AUTHHUB_DATA_DIR (started, or shared
 *   when already running), with generated passwords kept beside it;
 * - DATABASE_URL (the owner, authhub_owner): an existing server; with
 *   ROOT_DATABASE_URL the roles and database are created there first.
 * Then the committed migrations are applied (idempotent, fast when current).
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ConfigError } from "./configError.js";
import { startEmbeddedPostgres, type EmbeddedCluster } from "./embedded.js";
import { runMigrations, type LogFn } from "./migrate.js";
import { AUTHENTICATOR_ROLE, databaseName, ensureRolesAndDatabase, OWNER_ROLE, withCredentials } from "./setup.js";

export const DEFAULT_DATABASE = "authhub";

/** What prepareDatabase reads of the configuration (server/config.ts reads and validates it). */
export interface DatabaseSettings {
  /** AUTHHUB_DATA_DIR: the embedded cluster and its role passwords. */
  dataDir: string;
  /** DATABASE_URL, as authhub_owner. Null: the embedded cluster. */
  databaseUrl: string | null;
  /** AUTH_DATABASE_URL. Null: DATABASE_URL with user authhub_authenticator. */
  authDatabaseUrl: string | null;
  /** ROOT_DATABASE_URL: when set, roles and database are created there first. */
  rootDatabaseUrl: string | null;
}

export interface DatabaseHandle {
  /** authhub_owner: migrations, CLI, worker, boot-time key setup. */
  ownerUrl: string;
  /** authhub_authenticator: every request path. */
  authUrl: string;
  embedded: EmbeddedCluster | null;
  /** Stops the embedded cluster if this process owns it. */
  stop(): Promise<void>;
}

interface RolePasswords {
  owner: string;
  authenticator: string;
}

function rolePasswords(dataDir: string): RolePasswords {
  const file = path.join(dataDir, "roles.json");
  if (existsSync(file)) return JSON.parse(readFileSync(file, "utf8")) as RolePasswords;
  const passwords = { owner: randomBytes(24).toString("base64url"), authenticator: randomBytes(24).toString("base64url") };
  writeFileSync(file, JSON.stringify(passwords), { mode: 0o600 });
  return passwords;
}

export async function prepareDatabase(settings: DatabaseSettings, options: { whenRunning: "share" | "own"; migrate: boolean; log: LogFn }): Promise<DatabaseHandle> {
  let handle: DatabaseHandle;
  if (settings.databaseUrl === null) {
    const embedded = await startEmbeddedPostgres({
      dir: settings.dataDir,
      durable: true,
      whenRunning: options.whenRunning,
      log: (m) => options.log("info", m),
    });
    try {
      const passwords = rolePasswords(settings.dataDir);
      await ensureRolesAndDatabase({
        rootUrl: embedded.rootUrl,
        database: DEFAULT_DATABASE,
        ownerPassword: passwords.owner,
        authenticatorPassword: passwords.authenticator,
      });
      handle = {
        ownerUrl: withCredentials(embedded.rootUrl, OWNER_ROLE, passwords.owner, DEFAULT_DATABASE),
        authUrl: withCredentials(embedded.rootUrl, AUTHENTICATOR_ROLE, passwords.authenticator, DEFAULT_DATABASE),
        embedded,
        stop: () => embedded.stop(),
      };
    } catch (err) {
      await embedded.stop();
      throw err;
    }
  } else {
    const ownerUrl = settings.databaseUrl;
    if (decodeURIComponent(new URL(ownerUrl).username) !== OWNER_ROLE) {
      throw new ConfigError("DATABASE_URL", `must log in as ${OWNER_ROLE} (the role that owns AuthHub's schema)`);
    }
    const authUrl = settings.authDatabaseUrl ?? withCredentials(ownerUrl, AUTHENTICATOR_ROLE, null);
    if (settings.rootDatabaseUrl !== null) {
      const password = (url: string) => (new URL(url).password ? decodeURIComponent(new URL(url).password) : null);
      await ensureRolesAndDatabase({
        rootUrl: settings.rootDatabaseUrl,
        database: databaseName(ownerUrl),
        ownerPassword: password(ownerUrl),
        authenticatorPassword: password(authUrl),
      });
    }
    handle = { ownerUrl, authUrl, embedded: null, stop: async () => undefined };
  }
  if (options.migrate) {
    try {
      await runMigrations(handle.ownerUrl, options.log);
    } catch (err) {
      await handle.stop();
      throw err;
    }
  }
  return handle;
}
