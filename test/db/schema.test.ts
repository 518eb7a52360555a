/**
 * db/schema/ is where a DBA reads the current rule for a table: it must be what
 * the migrations produce, on either server version CI runs (PostgreSQL 15 and
 * the embedded 18). Rendered from this file's clone of the freshly migrated
 * template and compared with the committed files.
 */
import { readCatalog } from "../../db/schemaCatalog.js";
import { dumpSchema, DUMPED_SCHEMAS, SCHEMA_DIR, type SchemaFiles } from "../../db/schemaDump.js";
import { describeDiff, diffSchemaFiles, isCurrent, readSchemaFiles, serverVersion, VIEW_BODIES_FROM_VERSION, withoutViewBodies } from "../../db/schemaFiles.js";
import { layoutCheck, layoutParenthesised } from "../../db/sqlLayout.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db.close();
});

async function dump(): Promise<SchemaFiles> {
  const client = await db.owner.connect();
  try {
    return await dumpSchema(client);
  } finally {
    client.release();
  }
}

const changedFiles = (a: SchemaFiles, b: SchemaFiles) => {
  const diff = diffSchemaFiles(a, b);
  return [...diff.changed, ...diff.missing, ...diff.stale].sort();
};

async function version(): Promise<number> {
  const client = await db.owner.connect();
  try {
    return await serverVersion(client);
  } finally {
    client.release();
  }
}

test("db/schema/ is what the migrations produce", async () => {
  const rendered = await dump();
  const committed = await readSchemaFiles(SCHEMA_DIR);
  // Before PostgreSQL 16 view bodies print differently (db/schemaFiles.ts): the 18 run compares them.
  const comparable = (await version()) >= VIEW_BODIES_FROM_VERSION ? (f: SchemaFiles) => f : withoutViewBodies;
  const diff = diffSchemaFiles(comparable(rendered), comparable(committed));
  if (!isCurrent(diff)) {
    throw new Error(`db/schema/ is stale: run \`npm run db:dump\` and commit the result.\n${describeDiff(diff, rendered, committed)}`);
  }
});

// The tests below change this file's own database; the comparison above ran first.

test("a new policy, with its comment, changes its table's file (and the index) and nothing else", async () => {
  const before = await dump();
  await db.owner.query("create policy select_probe on authhub.tenants for select to authhub_user using (false)");
  await db.owner.query("comment on policy select_probe on authhub.tenants is 'Probe: who may read, and why.'");
  try {
    const after = await dump();
    expect(changedFiles(after, before)).toEqual(["README.md", "authhub/tables/tenants.sql"]);
    expect(after.get("authhub/tables/tenants.sql")).toContain(
      "\n-- Probe: who may read, and why.\nCREATE POLICY select_probe ON authhub.tenants AS PERMISSIVE FOR SELECT TO authhub_user\n  USING (false);\n",
    );
    expect(describeDiff(diffSchemaFiles(after, before), after, before)).toContain("changed: db/schema/authhub/tables/tenants.sql");
  } finally {
    await db.owner.query("drop policy select_probe on authhub.tenants");
  }
  expect(changedFiles(await dump(), before)).toEqual([]);
});

test("each object's comment is printed above it", async () => {
  const { rows } = await db.owner.query<{ trigger: string; index: string }>(
    `select (select tgname from pg_trigger where tgrelid = 'authhub.tenants'::regclass and not tgisinternal order by tgname limit 1) as trigger,
            (select indexrelid::regclass::text from pg_index where indrelid = 'authhub.users'::regclass and not indisunique order by 1 limit 1) as index`,
  );
  const { trigger, index } = rows[0]!;
  const probes = [
    `comment on table authhub.tenants is 'Probe: table.'`,
    `comment on column authhub.tenants.slug is 'Probe: column.'`,
    `comment on trigger ${trigger} on authhub.tenants is 'Probe: trigger.'`,
    `comment on constraint tenants_pkey on authhub.tenants is 'Probe: constraint.'`,
    `comment on index ${index} is 'Probe: index.'`,
    `comment on function authhub_private.current_user_level() is 'Probe: function,\nover two lines.'`,
    `comment on schema authhub_private is 'Probe: schema.'`,
    `comment on type authhub.role_level is 'Probe: type.'`,
  ];
  for (const sql of probes) await db.owner.query(sql);
  const files = await dump();
  const tenants = files.get("authhub/tables/tenants.sql") ?? "";
  expect(tenants).toMatch(/\n-- Probe: table\.\nCREATE TABLE authhub\.tenants \(\n/);
  expect(tenants).toMatch(/\n {2}-- Probe: column\.\n {2}slug authhub\.slug /);
  expect(tenants).toMatch(/\n {2}-- Probe: constraint\.\n {2}CONSTRAINT tenants_pkey PRIMARY KEY /);
  expect(tenants).toContain(`\n-- Probe: trigger.\nCREATE TRIGGER ${trigger} `);
  expect(files.get("authhub/tables/users.sql")).toContain(`\n-- Probe: index.\nCREATE INDEX ${index.replace(/^authhub\./, "")} `);
  expect(files.get("authhub_private/functions/current_user_level.sql")).toContain(
    "\n-- Probe: function,\n-- over two lines.\nCREATE OR REPLACE FUNCTION authhub_private.current_user_level()\n",
  );
  expect(files.get("authhub_private/schema.sql")).toContain("\n-- Probe: schema.\nCREATE SCHEMA authhub_private;\n");
  expect(files.get("authhub/schema.sql")).toContain("\n-- Probe: type.\nCREATE TYPE authhub.role_level AS ENUM (\n");
});

test("a view gets a file with its body as the server prints it, which an older server's comparison leaves out", async () => {
  await db.owner.query("create view authhub.probe_slugs with (security_invoker = true) as select slug from authhub.tenants where status = 'active'");
  await db.owner.query("grant select on authhub.probe_slugs to authhub_user");
  try {
    const view = (await dump()).get("authhub/views/probe_slugs.sql") ?? "";
    expect(view).toMatch(/\nCREATE VIEW authhub\.probe_slugs WITH \(security_invoker=true\) AS\n SELECT (tenants\.)?slug\n {3}FROM authhub\.tenants\n/);
    expect(view).toContain("\nGRANT SELECT ON authhub.probe_slugs TO authhub_user;\n");
    const masked = withoutViewBodies(new Map([["authhub/views/probe_slugs.sql", view]])).get("authhub/views/probe_slugs.sql") ?? "";
    expect(masked).not.toContain("FROM authhub.tenants");
    expect(masked).toContain("AS\n-- (the body is compared on PostgreSQL 16 and later only)\nALTER VIEW authhub.probe_slugs OWNER TO authhub_owner;\n");
    expect(masked).toContain("GRANT SELECT ON authhub.probe_slugs TO authhub_user;");
  } finally {
    await db.owner.query("drop view authhub.probe_slugs");
  }
});

test("laying out policies and checks changes only whitespace", async () => {
  const client = await db.owner.connect();
  try {
    const catalog = await readCatalog(client, DUMPED_SCHEMAS);
    const squeeze = (s: string) => s.replace(/\s+/g, "");
    const conditions = catalog.relations.flatMap((r) => r.policies.flatMap((p) => [p.using, p.withCheck]).filter((c): c is string => c !== null));
    expect(conditions.length).toBeGreaterThan(50);
    for (const c of conditions) expect(squeeze(layoutParenthesised("  USING ", c, "  "))).toBe(squeeze(`  USING (${c})`));
    const checks = [...catalog.relations.flatMap((r) => r.constraints), ...catalog.types.flatMap((t) => t.constraints)].filter((k) => k.kind === "c");
    expect(checks.length).toBeGreaterThan(10);
    for (const k of checks) expect(squeeze(layoutCheck("  ", k.definition, "  "))).toBe(squeeze(k.definition));
  } finally {
    client.release();
  }
});
