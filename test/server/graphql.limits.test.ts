/**
 * What one GraphQL request may ask for (issue 12, the attack catalogue's
 * findings): aliases, root fields and mutations per operation, an estimated
 * cost against the caller's ceiling, per-caller rate limits, introspection and
 * suggestions in production; and the codes of the answers that used to be
 * `internal` (a delete that finds nothing, a NUL byte). Every refusal is checked
 * to have changed nothing, with a control that the same thing within the limit
 * works.
 */
import request from "supertest";
import type { Identity } from "../../db/claims.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { cast, seedFixtures, type Fixtures } from "../helpers/fixtures.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let db: TestDatabase;
let f: Fixtures;
let srv: TestServer;
let production: TestServer;

beforeAll(async () => {
  db = await createTestDatabase();
  f = await seedFixtures(db);
  srv = await startTestServer(db, { AUTHHUB_GRAPHQL_MAX_ALIASES: "5", AUTHHUB_GRAPHQL_MAX_ROOT_FIELDS: "6", AUTHHUB_GRAPHQL_MAX_MUTATIONS: "3", AUTHHUB_GRAPHQL_MAX_COST: "5000" });
  production = await startTestServer(db, { NODE_ENV: "production", DATABASE_URL: db.ownerUrl, AUTHHUB_MASTER_KEY: "x".repeat(44) });
});
afterAll(async () => {
  await Promise.all([srv.close(), production.close()]);
  await db.close();
});

interface Answer {
  status: number;
  headers: Record<string, string>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the data of whatever query a test sends, walked freely and checked by expect()
  body: { data?: Record<string, any> | null; errors?: { message: string; extensions?: Record<string, unknown> }[] };
  text: string;
}

async function gql(server: TestServer, who: Identity | null, query: string, variables: Record<string, unknown> = {}): Promise<Answer> {
  const req = request(server.app).post("/graphql").set("Content-Type", "application/json").set("Accept", "application/json");
  if (who) req.set("Authorization", `Bearer ${await server.mint(who)}`);
  const res = await req.send({ query, variables });
  return { status: res.status, headers: res.headers, body: res.body, text: res.text };
}
const codes = (r: Answer) => (r.body.errors ?? []).map((e) => e.extensions?.code);
const displayNames = async () => (await db.owner.query("select display_name from authhub.users where id = $1", [f.a.users.member])).rows[0].display_name;

describe("the shape of an operation", () => {
  test("too many aliases are refused before anything runs; as many as allowed run", async () => {
    const { tenantAdmin } = cast(f, f.a);
    const aliased = (n: number) => `{ ${Array.from({ length: n }, (_, i) => `a${i}: users(first: 1) { totalCount }`).join(" ")} }`;
    const refused = await gql(srv, tenantAdmin, aliased(6));
    expect(codes(refused)).toEqual(["query_too_large"]);
    expect(refused.body.data).toBeUndefined();
    const allowed = await gql(srv, tenantAdmin, aliased(5));
    expect(allowed.body.errors).toBeUndefined();
    expect(allowed.body.data!.a4.totalCount).toBeGreaterThan(0);
  });

  test("aliases inside fragments count too", async () => {
    const r = await gql(srv, cast(f, f.a).tenantAdmin, `{ ...F } fragment F on Query { ${Array.from({ length: 6 }, (_, i) => `a${i}: currentUser { email }`).join(" ")} }`);
    expect(codes(r)).toContain("query_too_large");
  });

  test("more mutations than allowed in one request change nothing", async () => {
    const { tenantAdmin } = cast(f, f.a);
    const before = await displayNames();
    const renames = (n: number) =>
      `mutation { ${Array.from({ length: n }, (_, i) => `m${i}: updateUser(input: { tenantId: "${f.a.id}", rowId: "${f.a.users.member}", patch: { displayName: "Renamed ${i}" } }) { user { displayName } }`).join(" ")} }`;
    const auditBefore = (await db.owner.query("select count(*)::int as n from authhub.audit_events where table_name = 'users'")).rows[0].n;
    const refused = await gql(srv, tenantAdmin, renames(4));
    expect(codes(refused)).toEqual(["query_too_large"]);
    expect(await displayNames()).toBe(before);
    expect((await db.owner.query("select count(*)::int as n from authhub.audit_events where table_name = 'users'")).rows[0].n).toBe(auditBefore);
    // Control: within the limit they run (aliases too: 3 ≤ 5).
    const allowed = await gql(srv, tenantAdmin, renames(3));
    expect(allowed.body.errors).toBeUndefined();
    expect(await displayNames()).toBe("Renamed 2");
  });

  test("too many root fields are refused", async () => {
    const r = await gql(
      srv,
      cast(f, f.a).tenantAdmin,
      `{ currentUser { email } users { totalCount } organizations { totalCount } roles { totalCount } permissions { totalCount } currentTenant { slug } currentPermissions { permission } }`,
    );
    expect(codes(r)).toEqual(["query_too_large"]);
  });

  test("every validation error carries a code", async () => {
    const r = await gql(srv, cast(f, f.a).member, "{ userz { nodes { id } } }");
    expect(codes(r)).toEqual(["invalid_query"]);
  });
});

describe("the cost of an operation", () => {
  const nested = (outer: number, inner: number) => `{ users(first: ${outer}) { nodes { email memberships(first: ${inner}) { nodes { level organization { slug } } } } } }`;

  test("is estimated before anything runs and held to the caller's ceiling", async () => {
    const { tenantAdmin, member } = cast(f, f.a);
    // ~ 20 × (1 + 1 + 20 × 4) ≈ 1,660: over a user's ceiling (5000 / 5), within an admin's (5000).
    const refused = await gql(srv, member, nested(20, 20));
    expect(codes(refused)).toEqual(["query_too_costly"]);
    expect(refused.body.errors![0]!.extensions).toMatchObject({ ceiling: 1000 });
    expect(refused.body.errors![0]!.extensions!.cost).toBeGreaterThan(1000);
    const admin = await gql(srv, tenantAdmin, nested(20, 20));
    expect(admin.body.errors).toBeUndefined();
    // A user's smaller page is within its ceiling.
    const small = await gql(srv, member, nested(5, 5));
    expect(small.body.errors).toBeUndefined();
  });

  test("page sizes given as variables count", async () => {
    const q = "query($n: Int) { users(first: $n) { nodes { memberships(first: $n) { nodes { level organization { slug } } } } } }";
    expect(codes(await gql(srv, cast(f, f.a).member, q, { n: 20 }))).toEqual(["query_too_costly"]);
    expect((await gql(srv, cast(f, f.a).member, q, { n: 3 })).body.errors).toBeUndefined();
  });

  test("aggregates over whole sets cost more than a row", async () => {
    const aggregates = `{ ${Array.from({ length: 5 }, (_, i) => `a${i}: users { aggregates { distinctCount { email level displayName } } groupedAggregates(groupBy: [LEVEL]) { keys distinctCount { email } } }`).join(" ")} }`;
    // Anonymous callers' ceiling (5000 / 50 = 100) is far below five aggregate pairs' worth.
    const r = await gql(srv, null, aggregates);
    expect(codes(r)).toEqual(["query_too_costly"]);
  });
});

describe("rate limits per caller", () => {
  // A database of their own: counts are shared by every server on a database, and the other tests' requests would count.
  let limitedDb: TestDatabase;
  let limited: TestServer;
  let lf: Fixtures;
  beforeAll(async () => {
    limitedDb = await createTestDatabase();
    lf = await seedFixtures(limitedDb);
    limited = await startTestServer(limitedDb, { AUTHHUB_GRAPHQL_RATE_LIMIT_USER: "3", AUTHHUB_GRAPHQL_RATE_LIMIT_TENANT: "5", AUTHHUB_GRAPHQL_RATE_LIMIT_ANONYMOUS: "2" });
  });
  afterAll(async () => {
    await limited.close();
    await limitedDb.close();
  });

  test("a user over its limit is refused with Retry-After; another user of the tenant is not, until the tenant's limit", async () => {
    const { member, orgAdmin, outsider } = cast(lf, lf.a);
    const q = "{ currentUser { email } }";
    for (let i = 0; i < 3; i++) expect((await gql(limited, member, q)).body.errors).toBeUndefined();
    const refused = await gql(limited, member, q);
    expect(refused.status).toBe(429);
    expect(codes(refused)).toEqual(["rate_limited"]);
    expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);
    // Another user of the same tenant still gets through (the tenant has used 3 of 5)…
    expect((await gql(limited, orgAdmin, q)).body.errors).toBeUndefined();
    expect((await gql(limited, orgAdmin, q)).body.errors).toBeUndefined();
    // …until the tenant's own ceiling.
    expect(codes(await gql(limited, outsider, q))).toEqual(["rate_limited"]);
    // Another tenant is untouched.
    expect((await gql(limited, cast(lf, lf.b).member, q)).body.errors).toBeUndefined();
  });

  test("anonymous callers are counted per address", async () => {
    const q = '{ tenantBranding(slug: "tenant-a") { displayName } }';
    expect((await gql(limited, null, q)).body.errors).toBeUndefined();
    expect((await gql(limited, null, q)).body.errors).toBeUndefined();
    expect(codes(await gql(limited, null, q))).toEqual(["rate_limited"]);
  });
});

describe("production", () => {
  test("anonymous callers cannot introspect; signed-in callers can", async () => {
    const q = "{ __schema { queryType { name } } }";
    const anonymous = await gql(production, null, q);
    expect(codes(anonymous)).toEqual(["introspection_disabled"]);
    expect(anonymous.text).not.toMatch(/queryType/);
    expect((await gql(production, cast(f, f.a).member, q)).body.data).toEqual({ __schema: { queryType: { name: "Query" } } });
    // __typename is not introspection.
    expect((await gql(production, null, "{ __typename }")).body.data).toEqual({ __typename: "Query" });
  });

  test("no 'Did you mean' suggestions", async () => {
    const r = await gql(production, cast(f, f.a).member, "{ userz { nodes { id } } }");
    expect(codes(r)).toEqual(["invalid_query"]);
    expect(r.text).not.toMatch(/Did you mean/);
    // Control: development and test keep them.
    expect((await gql(srv, cast(f, f.a).member, "{ userz { nodes { id } } }")).text).toMatch(/Did you mean/);
  });
});

describe("answers that used to be internal", () => {
  test("deleting a row that is absent or invisible is not_found, and nothing changes", async () => {
    const { tenantAdmin } = cast(f, f.a);
    const del = (tenantId: string, rowId: string) => gql(srv, tenantAdmin, `mutation { deleteUser(input: { tenantId: "${tenantId}", rowId: "${rowId}" }) { user { rowId } } }`);
    const invisible = await del(f.b.id, f.b.users.member);
    expect(codes(invisible)).toEqual(["not_found"]);
    expect((await db.owner.query("select 1 from authhub.users where id = $1", [f.b.users.member])).rowCount).toBe(1);
    const absent = await del(f.a.id, "00000000-0000-4000-8000-000000000000");
    expect(codes(absent)).toEqual(["not_found"]);
    expect(absent.body.errors![0]!.message).toBe(invisible.body.errors![0]!.message);
  });

  test("a NUL byte in a string is invalid_input, for anonymous callers too, and nothing changes", async () => {
    const anonymous = await gql(srv, null, "query($s: String!) { tenantBranding(slug: $s) { displayName } }", { s: "a\u0000b" });
    expect(codes(anonymous)).toEqual(["invalid_input"]);
    const before = await displayNames();
    const signedIn = await gql(
      srv,
      cast(f, f.a).tenantAdmin,
      `mutation($n: DisplayText!) { updateUser(input: { tenantId: "${f.a.id}", rowId: "${f.a.users.member}", patch: { displayName: $n } }) { user { rowId } } }`,
      {
        n: "a\u0000b",
      },
    );
    expect(codes(signedIn)).toEqual(["invalid_input"]);
    expect(await displayNames()).toBe(before);
  });
});
