/**
 * A freshly migrated database for the generators (`npm run db:dump`,
 * `npm run docs:scale-out`): a new database in a throwaway embedded PostgreSQL,
 * or on the server TEST_DATABASE_URL names (as a superuser), dropped afterwards.
 */
import pg from "pg";
import { runMigrations } from "./migrate.js";
import { startScratchCluster } from "./scratch.js";
import { ensureRolesAndDatabase, OWNER_ROLE, withCredentials } from "./setup.js";

/** Runs `fn` with the owner's connection to a database migrated from nothing. */
export async function withFreshDatabase<T>(prefix: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const cluster = await startScratchCluster(process.env.TEST_DATABASE_URL || null, `${prefix}-`);
  const database = `${prefix.replace(/[^a-z0-9]/g, "_")}_${process.pid}`;
  const dropDatabase = async () => {
    const root = new pg.Client({ connectionString: cluster.rootUrl });
    await root.connect();
    try {
      await root.query(`drop database if exists ${pg.escapeIdentifier(database)} with (force)`);
    } finally {
      await root.end();
    }
  };
  try {
    await dropDatabase();
    await ensureRolesAndDatabase({
      rootUrl: cluster.rootUrl,
      database,
      ownerPassword: cluster.ownerPassword,
      authenticatorPassword: cluster.authenticatorPassword,
    });
    const ownerUrl = withCredentials(cluster.rootUrl, OWNER_ROLE, cluster.ownerPassword, database);
    await runMigrations(ownerUrl);
    const client = new pg.Client({ connectionString: ownerUrl });
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  } finally {
    await dropDatabase().catch(() => undefined);
    await cluster.stop();
  }
}
