/**
 * The audit log through the entry points: a GraphQL mutation records the user
 * and the request's trace id, the CLI records itself, and audit:read holders
 * query the log with filters and grouped counts.
 */
import { jest } from "@jest/globals";
import { randomBytes } from "node:crypto";
import request from "supertest";
import { runCli } from "../../server/cli.js";
import type { TestDatabase } from "../helpers/db.js";
import { cast, type Fixtures } from "../helpers/fixtures.js";
import { TEST_ISSUER, useFixtureServer, type TestServer } from "../helpers/server.js";

let db: TestDatabase;
let f: Fixtures;
let srv: TestServer;

useFixtureServer((database, fixtures, server) => {
  db = database;
  f = fixtures;
  srv = server;
});

test("a GraphQL mutation is recorded with its user and the request's trace id", async () => {
  const res = await request(srv.app)
    .post("/graphql")
    .set("Authorization", `Bearer ${await srv.mint(cast(f, f.a).tenantAdmin)}`)
    .set("X-Trace-Id", "trace-audit-0001")
    .send({ query: `mutation { createOrganization(input: { organization: { slug: "audited", name: "Audited" } }) { organization { rowId } } }` });
  const id = res.body.data.createOrganization.organization.rowId;
  const { rows } = await db.owner.query(
    "select operation, actor, trace_id, organization_id from authhub.audit_events where table_name = 'organizations' and row_key ->> 'id' = $1",
    [id],
  );
  expect(rows).toEqual([{ operation: "INSERT", actor: `user:${f.a.users.tenantAdmin}`, trace_id: "trace-audit-0001", organization_id: id }]);
});

test("a CLI command is recorded as the CLI", async () => {
  const quiet = jest.spyOn(process.stdout, "write").mockImplementation(() => true);
  try {
    const env = { NODE_ENV: "test", DATABASE_URL: db.ownerUrl, AUTHHUB_MASTER_KEY: randomBytes(32).toString("base64"), AUTHHUB_ISSUER: TEST_ISSUER };
    expect(await runCli(["bootstrap", "--tenant", "from-cli", "--admin-email", "root@from-cli.test"], env)).toBe(0);
  } finally {
    quiet.mockRestore();
  }
  const { rows } = await db.owner.query("select table_name, actor from authhub.audit_events where actor like 'system:%' and table_name in ('tenants', 'users') order by id");
  expect(rows).toEqual([
    { table_name: "tenants", actor: "system:cli:bootstrap" },
    { table_name: "users", actor: "system:cli:bootstrap" },
  ]);
});

test("audit:read holders query the log with filters and grouped counts; others get nothing", async () => {
  const query = `{
    auditEvents(condition: { tableName: "users" }, orderBy: OCCURRED_AT_DESC, first: 3) { totalCount nodes { tableName operation actor } }
    byOperation: auditEvents { groupedAggregates(groupBy: [OPERATION]) { keys distinctCount { rowId } } }
    byDay: auditEvents { groupedAggregates(groupBy: [OCCURRED_AT_TRUNCATED_TO_DAY]) { keys distinctCount { rowId } } }
  }`;
  const ask = async (who: ReturnType<typeof cast>["tenantAdmin"]) =>
    (
      await request(srv.app)
        .post("/graphql")
        .set("Authorization", `Bearer ${await srv.mint(who)}`)
        .send({ query })
    ).body;
  const admin = await ask(cast(f, f.a).tenantAdmin);
  expect(admin.errors).toBeUndefined();
  expect(admin.data.auditEvents.totalCount).toBe(6);
  expect(admin.data.auditEvents.nodes.every((n: { tableName: string }) => n.tableName === "users")).toBe(true);
  const ops = Object.fromEntries(admin.data.byOperation.groupedAggregates.map((g: { keys: string[]; distinctCount: { rowId: string } }) => [g.keys[0], g.distinctCount.rowId]));
  expect(Number(ops.INSERT)).toBeGreaterThanOrEqual(6 + 4 + 4 + 1);
  expect(admin.data.byDay.groupedAggregates).toHaveLength(1);
  const member = await ask(cast(f, f.a).member);
  expect(member.data.auditEvents.totalCount).toBe(0);
});

test("searchAuditEvents filters by time range, table, operation, actor and row, with grouped counts", async () => {
  const token = await srv.mint(cast(f, f.a).tenantAdmin);
  const ask = async (variables: Record<string, unknown>) =>
    (
      await request(srv.app)
        .post("/graphql")
        .set("Authorization", `Bearer ${token}`)
        .send({
          query: `query($since: Datetime!, $until: Datetime, $table: String, $op: AuditOperation, $actor: String, $row: UUID) {
            searchAuditEvents(since: $since, until: $until, tableName: $table, operation: $op, actor: $actor, rowId: $row, first: 50) {
              totalCount
              nodes { tableName operation actor rowKey }
              groupedAggregates(groupBy: [ACTOR]) { keys distinctCount { rowId } }
            }
          }`,
          variables,
        })
    ).body;
  const hourAgo = new Date(Date.now() - 3_600_000).toISOString();
  const all = await ask({ since: hourAgo });
  expect(all.errors).toBeUndefined();
  expect(all.data.searchAuditEvents.totalCount).toBeGreaterThan(10);
  const member = await ask({ since: hourAgo, table: "users", op: "INSERT", row: f.a.users.member });
  expect(member.data.searchAuditEvents.nodes).toEqual([
    { tableName: "users", operation: "INSERT", actor: "db:authhub_owner", rowKey: { id: f.a.users.member, tenant_id: f.a.id } },
  ]);
  const future = await ask({ since: new Date(Date.now() + 3_600_000).toISOString() });
  expect(future.data.searchAuditEvents.totalCount).toBe(0);
  const byActor = await ask({ since: hourAgo, actor: "db:authhub_owner" });
  expect(byActor.data.searchAuditEvents.groupedAggregates).toEqual([{ keys: ["db:authhub_owner"], distinctCount: { rowId: String(byActor.data.searchAuditEvents.totalCount) } }]);
});
