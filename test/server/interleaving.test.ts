/**
 * The attack catalogue's interleaving check (issue 12; issue 15 runs it through
 * a transaction-mode pooler too): two tenants' callers, interleaved at high
 * concurrency over every surface — GraphQL reads and writes, the Open API's
 * signed reads and writes, the decision API, client-credentials tokens used on
 * GraphQL — over one server and its pool. Every answer must succeed and carry
 * nothing of the other tenant: no id, no slug, no e-mail address of theirs
 * appears anywhere in it.
 *
 * INTERLEAVING_REQUESTS (default 1,200) and INTERLEAVING_CONCURRENCY (default
 * 48) size it. `npm run test:pooled` runs it again with the server's
 * connections through PgBouncer in transaction mode (test/helpers/server.ts).
 */
import { jest } from "@jest/globals";
import type http from "node:http";
import type { AddressInfo } from "node:net";
import { signRequest } from "../../client/index.js";
import { issueApiKey } from "../../server/openapi/issue.js";
import type { TestDatabase } from "../helpers/db.js";
import { createTestDatabase } from "../helpers/db.js";
import { cast, seedFixtures, type Fixtures, type TenantFixture } from "../helpers/fixtures.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

jest.setTimeout(180_000);

const REQUESTS = Number(process.env.INTERLEAVING_REQUESTS ?? 1200);
const CONCURRENCY = Number(process.env.INTERLEAVING_CONCURRENCY ?? 48);

let db: TestDatabase;
let f: Fixtures;
let srv: TestServer;
let httpServer: http.Server;
let base: string;

beforeAll(async () => {
  db = await createTestDatabase();
  f = await seedFixtures(db);
  const limits = {
    // Isolation is what this checks, not latency: on a loaded machine 48 callers may wait for the pool's 20 connections.
    AUTHHUB_DB_ACQUIRE_TIMEOUT_MS: "60000",
    AUTHHUB_GRAPHQL_RATE_LIMIT_USER: "1000000",
    AUTHHUB_GRAPHQL_RATE_LIMIT_TENANT: "1000000",
    AUTHHUB_TOKEN_RATE_LIMIT_IP: "1000000",
    AUTHHUB_TOKEN_RATE_LIMIT_SUBJECT: "1000000",
  };
  srv = await startTestServer(db, limits);
  httpServer = srv.server.listen(0, "127.0.0.1");
  await new Promise((r) => httpServer.once("listening", r));
  base = `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => httpServer.close(r));
  await srv.close();
  await db.close();
});

interface Side {
  tenant: TenantFixture;
  other: TenantFixture;
  token: string;
  key: { keyId: string; secret: string };
  /** Strings of the other tenant that must never appear in this side's answers. */
  foreign: string[];
}

async function side(tenant: TenantFixture, other: TenantFixture): Promise<Side> {
  const key = await issueApiKey(db.owner, srv.masterKey, {
    name: "Interleaving",
    tenantId: tenant.id,
    scopes: ["user:read", "user:write", "org:read"],
    rateLimitPerMinute: 1_000_000,
  });
  const foreign = [other.id, ...Object.values(other.orgs), ...Object.values(other.users), `@${other.slug}.test`, `il-${other.slug}-`];
  return { tenant, other, token: await srv.mint(cast(f, tenant).tenantAdmin, { ttlSeconds: 3600 }), key: { keyId: key.keyId, secret: key.secret }, foreign };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are read field by field, as a client would
type Check = (status: number, body: any) => string | null;

async function send(method: string, path: string, headers: Record<string, string>, body?: string) {
  const res = await fetch(`${base}${path}`, { method, headers: { ...headers, ...(body ? { "Content-Type": "application/json" } : {}) }, body });
  const text = await res.text();
  return { status: res.status, text, body: text ? (JSON.parse(text) as unknown) : null };
}

let counter = 0;
/** One request of a randomly chosen kind as `s`; answers a problem, or null. */
async function oneRequest(s: Side): Promise<string | null> {
  const n = counter++;
  const gql = (query: string, token = s.token) => send("POST", "/graphql", { Authorization: `Bearer ${token}` }, JSON.stringify({ query }));
  const signed = (method: string, path: string, body?: string) =>
    send(method, path, signRequest({ keyId: s.key.keyId, secret: s.key.secret, method, url: path, body: body ?? null }), body);
  const expect200: Check = (status, body) => (status === 200 ? null : `${status} ${JSON.stringify(body)}`);
  const noErrors: Check = (status, body) => (status === 200 && !body?.errors ? null : `${status} ${JSON.stringify(body).slice(0, 300)}`);
  const kinds: [string, () => Promise<{ status: number; text: string; body: unknown }>, Check][] = [
    [
      "graphql read",
      () => gql("{ currentTenant { rowId slug } users(first: 20) { nodes { rowId tenantId email } } organizations(first: 20) { nodes { rowId tenantId slug parentId } } }"),
      noErrors,
    ],
    ["graphql audit", () => gql("{ auditEvents(first: 10, orderBy: OCCURRED_AT_DESC) { nodes { tenantId rowKey new } } }"), noErrors],
    [
      "graphql write",
      () =>
        gql(
          `mutation { updateUser(input: { tenantId: "${s.tenant.id}", rowId: "${s.tenant.users.member}", patch: { displayName: "Member ${n}" } }) { user { rowId tenantId displayName } } }`,
        ),
      (status, body) => noErrors(status, body) ?? (body.data.updateUser?.user?.displayName === `Member ${n}` ? null : `write lost: ${JSON.stringify(body)}`),
    ],
    [
      "graphql create",
      () =>
        gql(
          `mutation { createOrganization(input: { organization: { slug: "il-${s.tenant.slug}-${n}", name: "Interleaved ${n}", parentId: "${s.tenant.orgs.sibling}" } }) { organization { rowId tenantId } } }`,
        ),
      (status, body) => noErrors(status, body) ?? (body.data.createOrganization.organization.tenantId === s.tenant.id ? null : "created elsewhere"),
    ],
    ["open api users", () => signed("GET", "/open/v1/users?limit=20"), expect200],
    ["open api organizations", () => signed("GET", "/open/v1/organizations?limit=20"), expect200],
    [
      "open api create",
      () => signed("POST", "/open/v1/users", JSON.stringify({ email: `il-${n}@${s.tenant.slug}.test` })),
      (status, body) => (status === 201 ? null : `${status} ${JSON.stringify(body)}`),
    ],
    [
      "authorize",
      () =>
        send(
          "POST",
          "/v1/authorize",
          { Authorization: `Bearer ${s.token}` },
          JSON.stringify({
            checks: [{ permission: "user:read" }, { permission: "org:read", organizationId: s.tenant.orgs.root }, { permission: "org:read", organizationId: s.other.orgs.root }],
          }),
        ),
      (status, body) =>
        status === 200 && JSON.stringify(body) === JSON.stringify({ results: [{ allowed: true }, { allowed: true }, { allowed: false }] })
          ? null
          : `${status} ${JSON.stringify(body)}`,
    ],
    [
      "client credentials then graphql",
      async () => {
        const t = await send("POST", "/auth/token", {}, JSON.stringify({ grant_type: "client_credentials", client_id: s.key.keyId, client_secret: s.key.secret }));
        if (t.status !== 200) return t;
        return gql("{ users(first: 5) { nodes { rowId tenantId email } } }", (t.body as { access_token: string }).access_token);
      },
      noErrors,
    ],
  ];
  const [name, run, check] = kinds[n % kinds.length]!;
  const answer = await run();
  const problem = check(answer.status, answer.body);
  if (problem) return `${name}: ${problem}`;
  const leaked = s.foreign.find((x) => answer.text.includes(x));
  return leaked ? `${name}: the answer carries ${leaked} of the other tenant: ${answer.text.slice(0, 300)}` : null;
}

test(`two tenants, ${REQUESTS} requests at concurrency ${CONCURRENCY} over every surface: no error, no foreign row`, async () => {
  const sides = [await side(f.a, f.b), await side(f.b, f.a)];
  const problems: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < REQUESTS) {
        const i = next++;
        const problem = await oneRequest(sides[i % 2]!).catch((err: Error) => `request failed: ${err.message}${err.cause instanceof Error ? ` (${err.cause.message})` : ""}`);
        if (problem) problems.push(problem);
      }
    }),
  );
  expect(problems.slice(0, 10)).toEqual([]);
  expect(problems.length).toBe(0);
  // What the writes did stayed in their tenants (control: they did happen).
  const orgs = await db.owner.query(
    "select t.slug, count(*)::int as n from authhub.organizations o join authhub.tenants t on t.id = o.tenant_id where o.slug like 'il-' || t.slug || '-%' group by 1 order by 1",
  );
  expect(orgs.rows.map((r) => r.slug)).toEqual(["tenant-a", "tenant-b"]);
  const crossed = await db.owner.query(
    "select count(*)::int as n from authhub.organizations o join authhub.tenants t on t.id = o.tenant_id where o.slug like 'il-%' and o.slug not like 'il-' || t.slug || '-%'",
  );
  expect(crossed.rows[0].n).toBe(0);
});
