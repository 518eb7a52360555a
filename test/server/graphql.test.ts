/**
 * /graphql end to end through supertest: tenancy through node ids, nested
 * relations, counts and aggregates; mutations that reach into another tenant;
 * error codes without leaks; the limits that hold in every mode.
 */
import request from "supertest";
import type { Identity } from "../../db/claims.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { cast, seedFixtures, type Fixtures } from "../helpers/fixtures.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let db: TestDatabase;
let f: Fixtures;
let srv: TestServer;

beforeAll(async () => {
  db = await createTestDatabase();
  f = await seedFixtures(db);
  srv = await startTestServer(db, { AUTHHUB_GRAPHQL_DEFAULT_PAGE_SIZE: "3", AUTHHUB_GRAPHQL_MAX_PAGE_SIZE: "20", AUTHHUB_GRAPHQL_MAX_DEPTH: "7" });
});
afterAll(async () => {
  await srv.close();
  await db.close();
});

interface GraphQLResponse {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the data of whatever query a test sends, walked freely and checked by expect()
  body: { data?: Record<string, any> | null; errors?: { message: string; extensions?: Record<string, unknown> }[] };
  text: string;
}

async function gql(who: Identity | null, query: string, variables: Record<string, unknown> = {}): Promise<GraphQLResponse> {
  const req = request(srv.app).post("/graphql").set("Content-Type", "application/json").set("Accept", "application/json");
  if (who) req.set("Authorization", `Bearer ${await srv.mint(who)}`);
  const res = await req.send({ query, variables });
  return { status: res.status, body: res.body, text: res.text };
}

const codes = (r: GraphQLResponse) => (r.body.errors ?? []).map((e) => e.extensions?.code);

/** Nothing internal in what a client reads: no SQL, no schema or constraint names, no stack. */
function expectNoLeak(r: GraphQLResponse) {
  expect(r.text).not.toMatch(/authhub_private|authhub\.|violates|constraint|SQLSTATE|select |insert |\.ts:\d+|at .*\(/i);
}

describe("reads", () => {
  test("a tenant admin lists its users with totalCount, nested relations and aggregates", async () => {
    const r = await gql(
      cast(f, f.a).tenantAdmin,
      `{ users(orderBy: EMAIL_ASC, first: 10) {
           totalCount
           nodes { email memberships { nodes { level organization { slug parent { slug } } } } }
           aggregates { distinctCount { email level } }
         }
         byLevel: users { groupedAggregates(groupBy: [LEVEL]) { keys distinctCount { email } } } }`,
    );
    expect(r.body.errors).toBeUndefined();
    const users = r.body.data!.users;
    expect(users.totalCount).toBe(6);
    expect(users.aggregates.distinctCount).toEqual({ email: "6", level: "3" });
    const member = users.nodes.find((u: { email: string }) => u.email === "member@tenant-a.test");
    expect(member.memberships.nodes).toEqual([{ level: "USER", organization: { slug: "grandchild", parent: { slug: "child" } } }]);
    expect(users.nodes.every((u: { email: string }) => u.email.endsWith("@tenant-a.test"))).toBe(true);
    const groups = Object.fromEntries(r.body.data!.byLevel.groupedAggregates.map((g: { keys: string[]; distinctCount: { email: string } }) => [g.keys[0], g.distinctCount.email]));
    expect(groups).toEqual({ USER: "4", TENANT_ADMIN: "1", SUPER_ADMIN: "1" });
  });

  test("another tenant's rows are invisible through node(id:), by primary key and through relations", async () => {
    const b = await gql(cast(f, f.b).tenantAdmin, `{ users(condition: { email: "member@tenant-b.test" }) { nodes { id rowId } } }`);
    const { id, rowId } = b.body.data!.users.nodes[0];
    const a = await gql(
      cast(f, f.a).tenantAdmin,
      `query($id: ID!, $tenantId: UUID!, $rowId: UUID!) {
         node(id: $id) { id }
         userById(id: $id) { email }
         user(tenantId: $tenantId, rowId: $rowId) { email }
         tenant(rowId: $tenantId) { slug }
       }`,
      { id, tenantId: f.b.id, rowId },
    );
    expect(a.body.errors).toBeUndefined();
    expect(a.body.data).toEqual({ node: null, userById: null, user: null, tenant: null });
    // Control: the row is there for its own tenant.
    const again = await gql(cast(f, f.b).tenantAdmin, `query($id: ID!) { node(id: $id) { id } }`, { id });
    expect(again.body.data!.node).toEqual({ id });
  });

  test("an org admin's connection counts only its subtree", async () => {
    const r = await gql(cast(f, f.a).orgAdmin, `{ organizations { totalCount nodes { slug } } users { totalCount } }`);
    expect(r.body.data!.organizations.totalCount).toBe(2);
    expect(r.body.data!.users.totalCount).toBe(3);
  });

  test("currentUser and currentTenant describe the caller", async () => {
    const r = await gql(cast(f, f.a).member, `{ currentUser { email level } currentTenant { slug } }`);
    expect(r.body.data).toEqual({ currentUser: { email: "member@tenant-a.test", level: "USER" }, currentTenant: { slug: "tenant-a" } });
  });

  test("anonymous callers read public branding and nothing else", async () => {
    await db.owner.query("update authhub.tenants set display_name = 'Tenant A', primary_color = '#123456' where id = $1", [f.a.id]);
    const ok = await gql(null, `{ tenantBranding(slug: "tenant-a") { slug displayName primaryColor logoUrl } }`);
    expect(ok.body.data).toEqual({ tenantBranding: { slug: "tenant-a", displayName: "Tenant A", primaryColor: "#123456", logoUrl: null } });
    const denied = await gql(null, `{ users { totalCount } }`);
    expect(codes(denied)).toEqual(["forbidden"]);
    expectNoLeak(denied);
  });
});

describe("mutations", () => {
  test("a tenant admin creates a user in its own tenant (tenantId defaults to the caller's)", async () => {
    const r = await gql(cast(f, f.a).tenantAdmin, `mutation { createUser(input: { user: { email: "Fresh@Tenant-A.test" } }) { user { email tenantId level } } }`);
    expect(r.body.errors).toBeUndefined();
    expect(r.body.data!.createUser.user).toEqual({ email: "fresh@tenant-a.test", tenantId: f.a.id, level: "USER" });
  });

  test("creating a row in another tenant is forbidden and changes nothing", async () => {
    const r = await gql(cast(f, f.a).tenantAdmin, `mutation($t: UUID!) { createUser(input: { user: { tenantId: $t, email: "spy@tenant-b.test" } }) { user { rowId } } }`, {
      t: f.b.id,
    });
    expect(codes(r)).toEqual(["forbidden"]);
    expectNoLeak(r);
    const { rowCount } = await db.owner.query("select 1 from authhub.users where email = 'spy@tenant-b.test'");
    expect(rowCount).toBe(0);
  });

  test("pointing at another tenant's row is refused as a missing reference", async () => {
    const r = await gql(
      cast(f, f.a).tenantAdmin,
      `mutation($t: UUID!, $id: UUID!, $p: UUID!) {
         updateOrganization(input: { tenantId: $t, rowId: $id, patch: { parentId: $p } }) { organization { slug } } }`,
      { t: f.a.id, id: f.a.orgs.sibling, p: f.b.orgs.root },
    );
    expect(codes(r)).toEqual(["invalid_input"]);
    expect(r.body.errors![0]!.extensions!.details).toEqual([{ field: "parentId", message: "does not exist" }]);
    expectNoLeak(r);
    const { rows } = await db.owner.query("select parent_id from authhub.organizations where id = $1", [f.a.orgs.sibling]);
    expect(rows[0].parent_id).toBeNull();
  });

  test("a row cannot be moved to another tenant: tenantId is not part of any patch", async () => {
    const r = await gql(
      cast(f, f.a).superAdmin,
      `mutation($t: UUID!, $id: UUID!, $b: UUID!) { updateUser(input: { tenantId: $t, rowId: $id, patch: { tenantId: $b } }) { user { tenantId } } }`,
      { t: f.a.id, id: f.a.users.member, b: f.b.id },
    );
    expect(r.body.data).toBeUndefined();
    expect(r.body.errors![0]!.message).toMatch(/tenantId/);
    const { rows } = await db.owner.query("select tenant_id from authhub.users where id = $1", [f.a.users.member]);
    expect(rows[0].tenant_id).toBe(f.a.id);
  });

  test("another tenant's row cannot be updated through its node id: nothing is found, nothing changes", async () => {
    const b = await gql(cast(f, f.b).tenantAdmin, `{ users(condition: { email: "member@tenant-b.test" }) { nodes { id } } }`);
    const r = await gql(cast(f, f.a).tenantAdmin, `mutation($id: ID!) { updateUserById(input: { id: $id, patch: { displayName: "Hijacked" } }) { user { displayName } } }`, {
      id: b.body.data!.users.nodes[0].id,
    });
    // PostGraphile V5 answers an update that matched no visible row with a null record.
    expect(r.body).toEqual({ data: { updateUserById: { user: null } } });
    const { rows } = await db.owner.query("select display_name from authhub.users where id = $1", [f.b.users.member]);
    expect(rows[0].display_name).toBe("member");
  });

  test("invalid input answers invalid_input naming the field, and stores nothing", async () => {
    const r = await gql(cast(f, f.a).tenantAdmin, `mutation { createUser(input: { user: { email: "not-an-email" } }) { user { rowId } } }`);
    expect(codes(r)).toEqual(["invalid_input"]);
    expect(r.body.errors![0]!.extensions!.details).toEqual([{ field: "email", message: expect.any(String) }]);
    expectNoLeak(r);
    const dup = await gql(cast(f, f.a).tenantAdmin, `mutation { createUser(input: { user: { email: "MEMBER@tenant-a.test" } }) { user { rowId } } }`);
    expect(codes(dup)).toEqual(["conflict"]);
    expectNoLeak(dup);
  });

  test("a tenant admin binds a user's external identity to its issuer; a malformed issuer is invalid_input", async () => {
    const ok = await gql(
      cast(f, f.a).tenantAdmin,
      `mutation($t: UUID!, $id: UUID!) { updateUser(input: { tenantId: $t, rowId: $id, patch: { externalId: "user_42", externalIssuer: "https://clerk.example.com" } }) { user { externalId externalIssuer } } }`,
      { t: f.a.id, id: f.a.users.outsider },
    );
    expect(ok.body).toEqual({ data: { updateUser: { user: { externalId: "user_42", externalIssuer: "https://clerk.example.com" } } } });
    const bad = await gql(
      cast(f, f.a).tenantAdmin,
      `mutation($t: UUID!, $id: UUID!) { updateUser(input: { tenantId: $t, rowId: $id, patch: { externalIssuer: "has spaces" } }) { user { externalIssuer } } }`,
      { t: f.a.id, id: f.a.users.outsider },
    );
    expect(codes(bad)).toEqual(["invalid_input"]);
    expect(bad.body.errors![0]!.extensions!.details).toEqual([{ field: "externalIssuer", message: expect.any(String) }]);
    expectNoLeak(bad);
  });

  test("a plain user whose token claims TENANT_ADMIN cannot promote itself through GraphQL", async () => {
    const forged = { ...cast(f, f.a).member, level: "TENANT_ADMIN" as const };
    const r = await gql(forged, `mutation($t: UUID!, $id: UUID!) { updateUser(input: { tenantId: $t, rowId: $id, patch: { level: SUPER_ADMIN } }) { user { level } } }`, {
      t: f.a.id,
      id: f.a.users.member,
    });
    expect(codes(r)).toEqual(["forbidden"]);
    const { rows } = await db.owner.query("select level from authhub.users where id = $1", [f.a.users.member]);
    expect(rows[0].level).toBe("USER");
  });

  test("a plain user cannot escalate through GraphQL", async () => {
    const r = await gql(
      cast(f, f.a).member,
      `mutation($t: UUID!, $id: UUID!) { updateUser(input: { tenantId: $t, rowId: $id, patch: { level: TENANT_ADMIN } }) { user { level } } }`,
      { t: f.a.id, id: f.a.users.member },
    );
    expect(codes(r)).toEqual(["forbidden"]);
    const { rows } = await db.owner.query("select level from authhub.users where id = $1", [f.a.users.member]);
    expect(rows[0].level).toBe("USER");
  });
});

describe("limits", () => {
  test("connections default to the configured page size and refuse pages above the cap", async () => {
    const r = await gql(cast(f, f.a).tenantAdmin, `{ users { totalCount nodes { email } pageInfo { hasNextPage } } }`);
    expect(r.body.data!.users.nodes).toHaveLength(3);
    expect(r.body.data!.users.pageInfo.hasNextPage).toBe(true);
    const big = await gql(cast(f, f.a).tenantAdmin, `{ users(first: 1000) { nodes { email } } }`);
    expect(codes(big)).toEqual(["invalid_input"]);
    const lastBig = await gql(cast(f, f.a).tenantAdmin, `query($n: Int) { users(last: $n) { nodes { email } } }`, { n: 21 });
    expect(codes(lastBig)).toEqual(["invalid_input"]);
    const last = await gql(cast(f, f.a).tenantAdmin, `{ users(last: 2) { nodes { email } } }`);
    expect(last.body.data!.users.nodes).toHaveLength(2);
  });

  test("documents deeper than the limit are refused before execution", async () => {
    const deep = `{ users { nodes { memberships { nodes { organization { parent { parent { parent { slug } } } } } } } } }`;
    const r = await gql(cast(f, f.a).tenantAdmin, deep);
    expect(codes(r)).toEqual(["query_too_deep"]);
    expect(r.body.data).toBeUndefined();
  });

  test("request bodies above the size limit are refused with 413", async () => {
    const res = await request(srv.app)
      .post("/graphql")
      .set("Content-Type", "application/json")
      .send({ query: `{ __typename }`, variables: { pad: "x".repeat(srv.config.graphql.maxRequestBytes) } });
    expect(res.status).toBe(413);
  });
});

describe("tracing", () => {
  test("a valid X-Trace-Id is echoed; an invalid one is replaced", async () => {
    const ok = await request(srv.app).get("/healthz").set("X-Trace-Id", "trace-abc-12345678");
    expect(ok.headers["x-trace-id"]).toBe("trace-abc-12345678");
    const bad = await request(srv.app).get("/healthz").set("X-Trace-Id", "bad id; drop");
    expect(bad.headers["x-trace-id"]).toMatch(/^[0-9a-f]{32}$/);
    const none = await request(srv.app).get("/healthz");
    expect(none.headers["x-trace-id"]).toMatch(/^[0-9a-f]{32}$/);
  });

  test("the trace id reaches SQL as a transaction setting, within the request's transaction", async () => {
    // A probe trigger (test database only) records what SQL sees while a mutation runs.
    await db.owner.query(`
      create schema probe;
      create table probe.seen (trace_id text, sub text, role text);
      create function probe.tg_record() returns trigger language plpgsql security definer set search_path = pg_catalog as $$
      begin
        insert into probe.seen values (authhub.current_trace_id(), current_setting('jwt.claims.sub', true), current_setting('role'));
        return new;
      end $$;
      create trigger _999_probe after insert on authhub.organizations for each row execute function probe.tg_record();`);
    try {
      const res = await request(srv.app)
        .post("/graphql")
        .set("Authorization", `Bearer ${await srv.mint(cast(f, f.a).tenantAdmin)}`)
        .set("X-Trace-Id", "trace-probe-0001")
        .send({ query: `mutation { createOrganization(input: { organization: { slug: "traced", name: "Traced" } }) { organization { slug } } }` });
      expect(res.body.errors).toBeUndefined();
      expect(res.headers["x-trace-id"]).toBe("trace-probe-0001");
      const { rows } = await db.owner.query("select * from probe.seen");
      expect(rows).toEqual([{ trace_id: "trace-probe-0001", sub: f.a.users.tenantAdmin, role: "authhub_tenant_admin" }]);
    } finally {
      await db.owner.query("drop trigger _999_probe on authhub.organizations; drop schema probe cascade");
    }
  });
});

describe("operations", () => {
  test("/healthz answers while the process is up; /readyz checks the database and migrations", async () => {
    expect((await request(srv.app).get("/healthz")).body).toEqual({ status: "ok" });
    const ready = await request(srv.app).get("/readyz");
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: "ready", checks: { database: true, migrations: true }, pool: expect.objectContaining({ waiting: 0 }) });
  });

  test("/readyz answers 503 when the database's migrations are not the ones this code ships", async () => {
    const { rows } = await db.owner.query<{ hash: string }>("select hash from graphile_migrate.migrations order by filename desc limit 1");
    await db.owner.query("insert into graphile_migrate.migrations (hash, previous_hash, filename, date) values ('sha1:from-the-future', $1, '999999.sql', now())", [rows[0]!.hash]);
    try {
      const res = await request(srv.app).get("/readyz");
      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({ status: "unavailable", checks: { database: true, migrations: false } });
    } finally {
      await db.owner.query("delete from graphile_migrate.migrations where filename = '999999.sql'");
    }
  });

  test("unknown paths answer the standard error body", async () => {
    const res = await request(srv.app).get("/nope");
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: { code: "not_found", message: "No such endpoint." } });
  });

  test("GraphiQL is not served outside development", async () => {
    const res = await request(srv.app).get("/graphiql").set("Accept", "text/html");
    expect(res.status).toBe(404);
  });
});
