/**
 * docs/scale-out.md is generated from the catalog, db/distribution.ts and
 * db/scaleOut.limits.md: it must be what they give now, on either server
 * version CI runs (PostgreSQL 15 and the embedded 18).
 */
import { readFile } from "node:fs/promises";
import { renderScaleOut, renderScaleOutFrom, SCALE_OUT_DOC } from "../../db/scaleOut.js";
import { readDistributionFacts } from "../../db/distribution.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db.close();
});

test("docs/scale-out.md is what the migrations and db/distribution.ts give", async () => {
  const client = await db.owner.connect();
  let rendered: string;
  try {
    rendered = await renderScaleOutFrom(client);
  } finally {
    client.release();
  }
  const committed = await readFile(SCALE_OUT_DOC, "utf8");
  if (rendered !== committed) {
    const want = rendered.split("\n");
    const have = committed.split("\n");
    const line = want.findIndex((l, i) => l !== have[i]);
    throw new Error(
      `docs/scale-out.md is stale: run \`npm run docs:scale-out\` and commit it.\n  first difference, line ${line + 1}:\n    committed: ${have[line] ?? "(end of file)"}\n    database:  ${want[line] ?? "(end of file)"}`,
    );
  }
});

test("the generated calls and the hand-written limits are both in it, the limits as written", async () => {
  const client = await db.owner.connect();
  try {
    const facts = await readDistributionFacts(client);
    const doc = renderScaleOut(facts, "## Known Citus limits the design must respect\n\nProbe limits.\n");
    expect(doc).toContain("select create_reference_table('authhub.permissions');");
    expect(doc).toContain("select create_distributed_table('authhub.tenants', 'id', colocate_with => 'none');");
    expect(doc).toContain("select create_distributed_table('authhub.users', 'tenant_id', colocate_with => 'authhub.tenants');");
    // A table is distributed after the tables its foreign keys point to.
    expect(doc.indexOf("'authhub.memberships', 'tenant_id'")).toBeGreaterThan(doc.indexOf("'authhub.users', 'tenant_id'"));
    expect(doc.indexOf("'authhub.role_permissions', 'tenant_id'")).toBeGreaterThan(doc.indexOf("create_reference_table('authhub.permissions')"));
    expect(doc).not.toContain("'authhub_private.rate_limits'");
    expect(doc.endsWith("## Known Citus limits the design must respect\n\nProbe limits.\n")).toBe(true);
  } finally {
    client.release();
  }
});
