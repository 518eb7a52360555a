import { rm } from "node:fs/promises";
import pg from "pg";

export default async function globalTeardown(): Promise<void> {
  const cluster = globalThis.__authhubTestCluster;
  if (!cluster) return;
  if (cluster.embedded) {
    await cluster.embedded.stop();
    if (cluster.dir) await rm(cluster.dir, { recursive: true, force: true });
    return;
  }
  const root = new pg.Client({ connectionString: cluster.rootUrl });
  await root.connect();
  await root.query(`drop database if exists ${pg.escapeIdentifier(cluster.template)} with (force)`);
  await root.end();
}
