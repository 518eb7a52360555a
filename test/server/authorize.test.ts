/**
 * POST /v1/authorize (the decision API) and the GraphQL currentPermissions field.
 */
import request from "supertest";
import type { Identity } from "../../db/claims.js";
import { MAX_CHECKS } from "../../server/authorize.js";
import type { TestDatabase } from "../helpers/db.js";
import { cast, type Fixtures } from "../helpers/fixtures.js";
import { useFixtureServer, type TestServer } from "../helpers/server.js";

let db: TestDatabase;
let f: Fixtures;
let srv: TestServer;

useFixtureServer((database, fixtures, server) => {
  db = database;
  f = fixtures;
  srv = server;
});

async function ask(who: Identity | null, body: unknown) {
  const req = request(srv.app).post("/v1/authorize").set("Content-Type", "application/json");
  if (who) req.set("Authorization", `Bearer ${await srv.mint(who)}`);
  return req.send(typeof body === "string" ? body : JSON.stringify(body));
}

test("a single check answers allowed true or false", async () => {
  const { tenantAdmin, member, orgAdmin } = cast(f, f.a);
  expect((await ask(tenantAdmin, { permission: "user:write" })).body).toEqual({ allowed: true });
  expect((await ask(member, { permission: "user:write" })).body).toEqual({ allowed: false });
  expect((await ask(orgAdmin, { permission: "org:write", organizationId: f.a.orgs.grandchild })).body).toEqual({ allowed: true });
  expect((await ask(orgAdmin, { permission: "org:write", organizationId: f.a.orgs.sibling })).body).toEqual({ allowed: false });
});

test("a batch answers each check in order", async () => {
  const res = await ask(cast(f, f.a).orgAdmin, {
    checks: [
      { permission: "membership:write", organizationId: f.a.orgs.child },
      { permission: "membership:write" },
      { permission: "user:read", organizationId: f.a.orgs.root },
      { permission: "org:read", organizationId: f.a.orgs.grandchild },
    ],
  });
  expect(res.status).toBe(200);
  expect(res.body).toEqual({ results: [{ allowed: true }, { allowed: false }, { allowed: false }, { allowed: true }] });
});

test("another tenant's organization answers false, never an error that reveals it exists", async () => {
  const res = await ask(cast(f, f.a).tenantAdmin, {
    checks: [
      { permission: "org:read", organizationId: f.b.orgs.root },
      { permission: "org:read", organizationId: "00000000-0000-4000-8000-000000000000" },
    ],
  });
  expect(res.body).toEqual({ results: [{ allowed: false }, { allowed: false }] });
  // Control: the organization exists, and its own tenant's admin is allowed.
  expect((await ask(cast(f, f.b).tenantAdmin, { permission: "org:read", organizationId: f.b.orgs.root })).body).toEqual({ allowed: true });
});

test("authority is live: a removed membership answers false on the next call with the same token", async () => {
  const token = await srv.mint(cast(f, f.a).orgAdmin);
  const call = () => request(srv.app).post("/v1/authorize").set("Authorization", `Bearer ${token}`).send({ permission: "org:write", organizationId: f.a.orgs.child });
  expect((await call()).body).toEqual({ allowed: true });
  await db.owner.query("update authhub.memberships set level = 'USER' where organization_id = $1 and user_id = $2", [f.a.orgs.child, f.a.users.orgAdmin]);
  try {
    expect((await call()).body).toEqual({ allowed: false });
  } finally {
    await db.owner.query("update authhub.memberships set level = 'ORG_ADMIN' where organization_id = $1 and user_id = $2", [f.a.orgs.child, f.a.users.orgAdmin]);
  }
});

test("invalid input answers invalid_input with field paths", async () => {
  const admin = cast(f, f.a).tenantAdmin;
  const unknown = await ask(admin, { checks: [{ permission: "user:read" }, { permission: "nope:never" }] });
  expect(unknown.status).toBe(400);
  expect(unknown.body).toEqual({
    error: { code: "invalid_input", message: "Unknown permission.", details: [{ field: "checks[1].permission", message: "is not in the permission catalogue" }] },
  });
  const bad = await ask(admin, { permission: "User Read", organizationId: "x", extra: 1 });
  expect(bad.status).toBe(400);
  expect(bad.body.error.details.map((d: { field: string }) => d.field).sort()).toEqual(["extra", "organizationId", "permission"]);
  const tooMany = await ask(admin, { checks: Array.from({ length: MAX_CHECKS + 1 }, () => ({ permission: "user:read" })) });
  expect(tooMany.body.error.details).toEqual([{ field: "checks", message: `must be a list of 1 to ${MAX_CHECKS} checks` }]);
  const notJson = await ask(admin, "{not json");
  expect(notJson.status).toBe(400);
  expect(notJson.body.error.code).toBe("invalid_input");
});

test("without a valid token the answer is 401", async () => {
  expect((await ask(null, { permission: "user:read" })).status).toBe(401);
  const res = await request(srv.app).post("/v1/authorize").set("Authorization", "Bearer a.b.c").send({ permission: "user:read" });
  expect(res.status).toBe(401);
  expect(res.body.error.code).toBe("unauthenticated");
});

test("GraphQL currentPermissions lists the caller's permissions per scope", async () => {
  const token = await srv.mint(cast(f, f.a).orgAdmin);
  const res = await request(srv.app).post("/graphql").set("Authorization", `Bearer ${token}`).send({ query: "{ currentPermissions { permission organizationId } }" });
  const grants = res.body.data.currentPermissions as { permission: string; organizationId: string | null }[];
  expect(grants).toContainEqual({ permission: "org:write", organizationId: f.a.orgs.child });
  expect(grants).toContainEqual({ permission: "org:write", organizationId: f.a.orgs.grandchild });
  expect(grants.filter((g) => g.organizationId === null)).toEqual([]);
  const member = await request(srv.app)
    .post("/graphql")
    .set("Authorization", `Bearer ${await srv.mint(cast(f, f.a).member)}`)
    .send({ query: "{ currentPermissions { permission organizationId } }" });
  expect(member.body.data.currentPermissions).toEqual([]);
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the data of whatever query a test sends, walked freely and checked by expect()
type GraphQLBody = { data?: Record<string, any>; errors?: { extensions: { code: string } }[] };

describe("role management through GraphQL", () => {
  const gql = async (who: Identity, query: string, variables: Record<string, unknown> = {}) =>
    (
      await request(srv.app)
        .post("/graphql")
        .set("Authorization", `Bearer ${await srv.mint(who)}`)
        .send({ query, variables })
    ).body as GraphQLBody;

  test("a tenant admin creates a role, maps a permission and assigns it; the holder's rights follow", async () => {
    const admin = cast(f, f.a).tenantAdmin;
    const created = await gql(admin, `mutation { createRole(input: { role: { key: "auditor", name: "Auditor" } }) { role { rowId level } } }`);
    const roleId = created.data!.createRole.role.rowId;
    expect(created.data!.createRole.role.level).toBe("ORG_ADMIN");
    const mapped = await gql(
      admin,
      `mutation($r: UUID!) { createRolePermission(input: { rolePermission: { roleId: $r, permissionKey: "audit:read" } }) { rolePermission { permissionKey } } }`,
      { r: roleId },
    );
    expect(mapped.errors).toBeUndefined();
    const assigned = await gql(
      admin,
      `mutation($r: UUID!, $u: UUID!, $o: UUID) { createRoleAssignment(input: { roleAssignment: { roleId: $r, userId: $u, organizationId: $o } }) { roleAssignment { rowId } } }`,
      { r: roleId, u: f.a.users.member, o: f.a.orgs.child },
    );
    expect(assigned.errors).toBeUndefined();
    const decision = await ask(cast(f, f.a).member, { permission: "audit:read", organizationId: f.a.orgs.grandchild });
    expect(decision.body).toEqual({ allowed: true });
    const revoked = await gql(admin, `mutation($id: UUID!, $t: UUID!) { deleteRoleAssignment(input: { tenantId: $t, rowId: $id }) { roleAssignment { rowId } } }`, {
      id: assigned.data!.createRoleAssignment.roleAssignment.rowId,
      t: f.a.id,
    });
    expect(revoked.errors).toBeUndefined();
    expect((await ask(cast(f, f.a).member, { permission: "audit:read", organizationId: f.a.orgs.grandchild })).body).toEqual({ allowed: false });
  });

  test("an org admin's escalation attempts answer forbidden and change nothing", async () => {
    const orgAdmin = cast(f, f.a).orgAdmin;
    const role = await gql(orgAdmin, `mutation { createRole(input: { role: { key: "mine", name: "Mine" } }) { role { rowId } } }`);
    expect(role.errors!.map((e) => e.extensions.code)).toEqual(["forbidden"]);
    const { rowCount } = await db.owner.query("select 1 from authhub.roles where key = 'mine'");
    expect(rowCount).toBe(0);
  });
});
