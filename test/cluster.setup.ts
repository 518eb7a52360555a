/**
 * Once per `npm test`: a PostgreSQL (a throwaway embedded cluster, or the server
 * TEST_DATABASE_URL names, as a superuser), AuthHub's roles, and one migrated
 * template database that every test file clones (test/helpers/db.ts).
 */
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { startEmbeddedPostgres, type EmbeddedCluster } from "../db/embedded.js";
import { runMigrations } from "../db/migrate.js";
import { ensureRolesAndDatabase, OWNER_ROLE, withCredentials } from "../db/setup.js";
import { randomBytes } from "node:crypto";

declare global {
  var __authhubTestCluster: { embedded: EmbeddedCluster | null; dir: string | null; rootUrl: string; template: string } | undefined;
}

export default async function globalSetup(): Promise<void> {
  process.env.GRAPHILE_ENV ??= "development";
  let embedded: EmbeddedCluster | null = null;
  let dir: string | null = null;
  let rootUrl = process.env.TEST_DATABASE_URL || null;
  // Passwords only for the embedded cluster (scram); an external test server is expected to trust its local roles.
  let ownerPassword: string | null = null;
  let authPassword: string | null = null;
  if (!rootUrl) {
    dir = await mkdtemp(path.join(os.tmpdir(), "authhub-test-"));
    embedded = await startEmbeddedPostgres({ dir, durable: false, whenRunning: "own" });
    rootUrl = embedded.rootUrl;
    ownerPassword = randomBytes(18).toString("base64url");
    authPassword = randomBytes(18).toString("base64url");
  }
  const template = `authhub_test_tpl_${process.pid}`;
  const root = new pg.Client({ connectionString: rootUrl });
  await root.connect();
  await root.query(`drop database if exists ${pg.escapeIdentifier(template)} with (force)`);
  await root.end();
  await ensureRolesAndDatabase({ rootUrl, database: template, ownerPassword, authenticatorPassword: authPassword });
  await runMigrations(withCredentials(rootUrl, OWNER_ROLE, ownerPassword, template));

  process.env.AUTHHUB_TEST_ROOT_URL = rootUrl;
  process.env.AUTHHUB_TEST_TEMPLATE = template;
  process.env.AUTHHUB_TEST_OWNER_PASSWORD = ownerPassword ?? "";
  process.env.AUTHHUB_TEST_AUTH_PASSWORD = authPassword ?? "";
  globalThis.__authhubTestCluster = { embedded, dir, rootUrl, template };
}
