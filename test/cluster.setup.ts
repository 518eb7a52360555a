/**
 * Once per `npm test`: a PostgreSQL (a throwaway embedded cluster, or the server
 * TEST_DATABASE_URL names, as a superuser), AuthHub's roles, and one migrated
 * template database that every test file clones (test/helpers/db.ts).
 */
import pg from "pg";
import { runMigrations } from "../db/migrate.js";
import { startScratchCluster, type ScratchCluster } from "../db/scratch.js";
import { ensureRolesAndDatabase, OWNER_ROLE, withCredentials } from "../db/setup.js";

declare global {
  var __authhubTestCluster: { cluster: ScratchCluster; template: string } | undefined;
}

export default async function globalSetup(): Promise<void> {
  process.env.GRAPHILE_ENV ??= "development";
  const cluster = await startScratchCluster(process.env.TEST_DATABASE_URL || null, "authhub-test-");
  const template = `authhub_test_tpl_${process.pid}`;
  const root = new pg.Client({ connectionString: cluster.rootUrl });
  await root.connect();
  await root.query(`drop database if exists ${pg.escapeIdentifier(template)} with (force)`);
  await root.end();
  await ensureRolesAndDatabase({
    rootUrl: cluster.rootUrl,
    database: template,
    ownerPassword: cluster.ownerPassword,
    authenticatorPassword: cluster.authenticatorPassword,
  });
  await runMigrations(withCredentials(cluster.rootUrl, OWNER_ROLE, cluster.ownerPassword, template));

  process.env.AUTHHUB_TEST_ROOT_URL = cluster.rootUrl;
  process.env.AUTHHUB_TEST_TEMPLATE = template;
  process.env.AUTHHUB_TEST_OWNER_PASSWORD = cluster.ownerPassword ?? "";
  process.env.AUTHHUB_TEST_AUTH_PASSWORD = cluster.authenticatorPassword ?? "";
  globalThis.__authhubTestCluster = { cluster, template };
}
