import pg from "pg";

export default async function globalTeardown(): Promise<void> {
  const state = globalThis.__authhubTestCluster;
  if (!state) return;
  const root = new pg.Client({ connectionString: state.cluster.rootUrl });
  await root.connect();
  await root.query(`drop database if exists ${pg.escapeIdentifier(state.template)} with (force)`);
  await root.end();
  await state.cluster.stop();
}
