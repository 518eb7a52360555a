/**
 * `npm run db:dump`: migrates a throwaway database (a fresh embedded PostgreSQL,
 * or a new database on the server TEST_DATABASE_URL names, as a superuser) and
 * writes db/schema/ from its catalog, removing files no longer generated.
 *   --check     compare only; exit 1 and name the files when db/schema/ is stale
 *   --out DIR   write to DIR instead (e.g. to compare two server versions)
 */
import path from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import { runMigrations } from "./migrate.js";
import { startScratchCluster } from "./scratch.js";
import { dumpSchema, SCHEMA_DIR, type SchemaFiles } from "./schemaDump.js";
import { describeDiff, diffSchemaFiles, isCurrent, readSchemaFiles, serverVersion, VIEW_BODIES_FROM_VERSION, withoutViewBodies, writeSchemaFiles } from "./schemaFiles.js";
import { ensureRolesAndDatabase, OWNER_ROLE, withCredentials } from "./setup.js";

async function dumpFreshDatabase(): Promise<{ files: SchemaFiles; version: number }> {
  const cluster = await startScratchCluster(process.env.TEST_DATABASE_URL || null, "authhub-dump-");
  const database = `authhub_dump_${process.pid}`;
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
      return { files: await dumpSchema(client), version: await serverVersion(client) };
    } finally {
      await client.end();
    }
  } finally {
    await dropDatabase().catch(() => undefined);
    await cluster.stop();
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { check: { type: "boolean", default: false }, out: { type: "string" } } });
  const dir = values.out ? path.resolve(values.out) : SCHEMA_DIR;
  const started = Date.now();
  const { files: rendered, version } = await dumpFreshDatabase();
  const shown = path.relative(process.cwd(), dir) || ".";
  const viewBodiesDiffer = version < VIEW_BODIES_FROM_VERSION && [...rendered.keys()].some((f) => f.includes("/views/"));
  if (values.check) {
    const onDisk = await readSchemaFiles(dir);
    const diff = viewBodiesDiffer ? diffSchemaFiles(withoutViewBodies(rendered), withoutViewBodies(onDisk)) : diffSchemaFiles(rendered, onDisk);
    if (isCurrent(diff)) {
      process.stderr.write(`${shown}: ${rendered.size} files, current (${Date.now() - started} ms)\n`);
      return 0;
    }
    process.stderr.write(`${shown} is stale; run \`npm run db:dump\`:\n${describeDiff(diff, rendered, onDisk, shown)}\n`);
    return 1;
  }
  if (viewBodiesDiffer && !values.out) {
    process.stderr.write(`PostgreSQL ${version} prints view bodies unlike 16+: write db/schema/ from the embedded PostgreSQL (unset TEST_DATABASE_URL)\n`);
    return 1;
  }
  const diff = await writeSchemaFiles(dir, rendered);
  process.stderr.write(
    `${shown}: ${rendered.size} files, ${diff.changed.length} changed, ${diff.missing.length} added, ${diff.stale.length} removed (${Date.now() - started} ms)\n`,
  );
  return 0;
}

process.exitCode = await main();
