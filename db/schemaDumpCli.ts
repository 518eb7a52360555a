/**
 * `npm run db:dump`: migrates a throwaway database (a fresh embedded PostgreSQL,
 * or a new database on the server TEST_DATABASE_URL names, as a superuser) and
 * writes db/schema/ from its catalog, removing files no longer generated.
 *   --check     compare only; exit 1 and name the files when db/schema/ is stale
 *   --out DIR   write to DIR instead (e.g. to compare two server versions)
 */
import path from "node:path";
import { parseArgs } from "node:util";
import { withFreshDatabase } from "./freshDatabase.js";
import { dumpSchema, SCHEMA_DIR, type SchemaFiles } from "./schemaDump.js";
import { describeDiff, diffSchemaFiles, isCurrent, readSchemaFiles, serverVersion, VIEW_BODIES_FROM_VERSION, withoutViewBodies, writeSchemaFiles } from "./schemaFiles.js";

async function dumpFreshDatabase(): Promise<{ files: SchemaFiles; version: number }> {
  return withFreshDatabase("authhub-dump", async (client) => ({ files: await dumpSchema(client), version: await serverVersion(client) }));
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
