/**
 * Citus-ready by construction, checked without Citus: every table of the
 * schemas AuthHub owns is classified (distributed by tenant_id, reference, or
 * coordinator-only), and the rules Citus enforces when tables are distributed
 * hold, but for what db/distribution.ts lists by name: the two global lookups
 * the design accepts and the breaks a described migration still has to fix.
 */
import type pg from "pg";
import {
  checkDistribution,
  COLOCATION_ANCHOR,
  DISTRIBUTION_SCHEMAS,
  findingKey,
  GLOBAL_LOOKUPS,
  howToClassify,
  PENDING_FIXES,
  readDistributionFacts,
  sortFindings,
  type DistributionFacts,
  type Finding,
  type TableFacts,
} from "../../db/distribution.js";
import { DUMPED_SCHEMAS } from "../../db/schemaDump.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db.close();
});

async function facts(client?: pg.ClientBase): Promise<DistributionFacts> {
  if (client) return readDistributionFacts(client);
  const c = await db.owner.connect();
  try {
    return await readDistributionFacts(c);
  } finally {
    c.release();
  }
}

/** Runs `fn` on a connection inside a transaction that is rolled back: probes leave nothing behind. */
async function probing<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await db.owner.connect();
  try {
    await client.query("begin");
    return await fn(client);
  } finally {
    await client.query("rollback");
    client.release();
  }
}

const show = (findings: Finding[]) => findings.map((f) => `  ${findingKey(f)}: ${f.detail}`).join("\n");

test("the schemas checked are the ones the schema dump describes", () => {
  expect(DISTRIBUTION_SCHEMAS).toBe(DUMPED_SCHEMAS);
  expect(DISTRIBUTION_SCHEMAS).toEqual(expect.arrayContaining(["authhub", "authhub_private"]));
});

test("every table is classified: distributed by tenant_id, a reference table or a coordinator table", async () => {
  const report = checkDistribution(await facts());
  if (report.unclassified.length > 0) throw new Error(howToClassify(report.unclassified));
  expect(report.staleEntries).toEqual([]);
  const kinds = Object.fromEntries(report.classified.map((c) => [c.table.name, c.placement.kind]));
  // The catalogue is a reference table; the tenant anchors the colocation group.
  expect(kinds["authhub.permissions"]).toBe("reference");
  expect(kinds[COLOCATION_ANCHOR]).toBe("distributed");
  expect(report.classified.filter((c) => c.placement.kind === "distributed").length).toBeGreaterThanOrEqual(15);
});

test("Citus's rules hold for every table, but for the global lookups and the fixes listed with their migration", async () => {
  const sorted = sortFindings(checkDistribution(await facts()).findings);
  if (sorted.unexpected.length > 0) {
    throw new Error(
      `These break a rule Citus enforces (db/scaleOut.limits.md says which); fix the schema, or list the finding in PENDING_FIXES (db/distribution.ts) with the migration that will fix it:\n${show(sorted.unexpected)}`,
    );
  }
  if (sorted.stale.length > 0) {
    throw new Error(
      `Listed in db/distribution.ts but no longer found: remove them from GLOBAL_LOOKUPS / PENDING_FIXES (and run npm run docs:scale-out):\n  ${sorted.stale.join("\n  ")}`,
    );
  }
  // The design's two departures, by name: a third global key, or one of these gone, fails here.
  expect(sorted.accepted.map((f) => `${f.table} ${f.object}`).sort()).toEqual(Object.keys(GLOBAL_LOOKUPS).sort());
  expect(sorted.pending.map(findingKey).sort()).toEqual(Object.keys(PENDING_FIXES).sort());
});

test("every distributed table's tenant_id is NOT NULL and of the anchor's type", async () => {
  const report = checkDistribution(await facts());
  const distributed = report.classified.filter((c) => c.placement.kind === "distributed");
  for (const { table, placement } of distributed) {
    const column = placement.kind === "distributed" ? table.columns.find((c) => c.name === placement.column) : undefined;
    expect({ table: table.name, notNull: column?.notNull, type: column?.type }).toEqual({ table: table.name, notNull: true, type: "uuid" });
  }
});

// Probes: each adds a table or key in a rolled-back transaction and checks that the rules see it.

test("a new table without tenant_id is reported as unclassified, with how to classify it", async () => {
  const report = await probing(async (c) => {
    await c.query("create table authhub.probe_things (id uuid primary key)");
    return checkDistribution(await facts(c));
  });
  expect(report.unclassified).toEqual(["authhub.probe_things"]);
  expect(howToClassify(report.unclassified)).toMatch(/PLACEMENTS in db\/distribution\.ts/);
});

test("a new tenant table is distributed by tenant_id, and its keys and foreign keys are checked", async () => {
  const report = await probing(async (c) => {
    await c.query(`create table authhub.probe_things (
      tenant_id uuid not null, id uuid not null, code text not null, user_id uuid, owner_id uuid,
      constraint probe_things_pkey primary key (tenant_id, id),
      constraint probe_things_code_key unique (code),
      constraint probe_things_user_fkey foreign key (tenant_id, user_id) references authhub.users (tenant_id, id) on delete set null,
      constraint probe_things_owner_fkey foreign key (owner_id, tenant_id) references authhub.users (tenant_id, id))`);
    await c.query("create unique index probe_things_lower_code on authhub.probe_things (tenant_id, lower(code))");
    return checkDistribution(await facts(c));
  });
  expect(report.unclassified).toEqual([]);
  const probe = report.findings.filter((f) => f.table === "authhub.probe_things");
  expect(probe.map(findingKey).sort()).toEqual([
    "authhub.probe_things probe_things_code_key unique-key",
    "authhub.probe_things probe_things_owner_fkey fk-columns",
    "authhub.probe_things probe_things_user_fkey fk-action",
  ]);
  expect(sortFindings(report.findings).unexpected.map(findingKey).sort()).toEqual(probe.map(findingKey).sort());
});

test("a reference table may not point into a distributed table, nor a coordinator table into a Citus one", async () => {
  const report = await probing(async (c) => {
    // level_permissions is a reference table, signing_keys a coordinator table.
    await c.query("alter table authhub.level_permissions add column tenant_ref uuid");
    await c.query("alter table authhub.level_permissions add constraint probe_into_tenants foreign key (tenant_ref) references authhub.tenants (id)");
    await c.query("alter table authhub_private.signing_keys add column permission_ref text");
    await c.query("alter table authhub_private.signing_keys add constraint probe_into_catalogue foreign key (permission_ref) references authhub.permissions (key)");
    return checkDistribution(await facts(c));
  });
  expect(sortFindings(report.findings).unexpected.map(findingKey).sort()).toEqual([
    "authhub.level_permissions probe_into_tenants fk-into-distributed",
    "authhub_private.signing_keys probe_into_catalogue fk-coordinator",
  ]);
});

test("a nullable tenant_id, a key without it and a missing primary key are each reported", async () => {
  const report = await probing(async (c) => {
    await c.query("create table authhub_private.probe_counts (tenant_id uuid, name text unique, n int)");
    return checkDistribution(await facts(c));
  });
  const probe = report.findings.filter((f) => f.table === "authhub_private.probe_counts");
  expect(probe.map((f) => f.rule).sort()).toEqual(["no-primary-key", "nullable", "unique-key"]);
});

test("the rules are pure: synthetic facts give the findings Citus's own checks would", () => {
  const table = (name: string, extra: Partial<TableFacts> = {}): TableFacts => ({
    name,
    unlogged: false,
    columns: [
      { name: "tenant_id", type: "uuid", notNull: true, identity: false },
      { name: "id", type: "uuid", notNull: true, identity: false },
    ],
    keys: [{ name: `${name}_pkey`, kind: "primary key", columns: ["tenant_id", "id"], partial: false }],
    foreignKeys: [],
    triggers: [],
    ...extra,
  });
  const anchor: TableFacts = {
    ...table(COLOCATION_ANCHOR),
    columns: [{ name: "id", type: "uuid", notNull: true, identity: false }],
    keys: [{ name: "tenants_pkey", kind: "primary key", columns: ["id"], partial: false }],
  };
  const child = table("x.children", {
    columns: [
      { name: "tenant_id", type: "bigint", notNull: true, identity: false },
      { name: "id", type: "uuid", notNull: true, identity: false },
    ],
    foreignKeys: [
      { name: "ok_fkey", columns: ["tenant_id"], references: COLOCATION_ANCHOR, referencedColumns: ["id"], onDelete: "c", onUpdate: "a" },
      { name: "update_fkey", columns: ["tenant_id", "id"], references: "x.parents", referencedColumns: ["tenant_id", "id"], onDelete: "c", onUpdate: "c" },
      { name: "catalogue_fkey", columns: ["id"], references: "authhub.permissions", referencedColumns: ["key"], onDelete: "n", onUpdate: "c" },
    ],
  });
  const parents = table("x.parents");
  const permissions: TableFacts = {
    ...table("authhub.permissions"),
    columns: [{ name: "key", type: "text", notNull: true, identity: false }],
    keys: [{ name: "permissions_pkey", kind: "primary key", columns: ["key"], partial: false }],
  };
  const report = checkDistribution({ tables: [anchor, child, parents, permissions], functions: [], policyExpressions: [] });
  expect(report.findings.map((f) => `${f.table} ${f.object} ${f.rule}`).sort()).toEqual([
    // A distribution column of another type cannot be colocated.
    "x.children tenant_id column-type",
    "x.children update_fkey fk-action",
  ]);
  // Reference tables need a primary key too (the catalogue's probe has none); its key columns are free.
  expect(checkDistribution({ tables: [{ ...permissions, keys: [] }], functions: [], policyExpressions: [] }).findings.map((f) => f.rule)).toEqual(["no-primary-key"]);
});
