/**
 * The Open API over real HTTP (issue 6): signed requests per DESIGN.md §6 made
 * with the package's own signing client, every way a signature can fail
 * answering the same 401, scopes and tenancy, the resources with cursor
 * pagination and validation, rate limits, and the OpenAPI 3.1 document.
 */
import { Validator } from "@seriousme/openapi-schema-validator";
import request from "supertest";
import { signRequest } from "../../client/index.js";
import { issueApiKey, rotateApiKeySecret, type IssuedKey, type IssueInput } from "../../server/openapi/issue.js";
import { routes } from "../../server/openapi/routes.js";
import type { TestDatabase } from "../helpers/db.js";
import type { Fixtures } from "../helpers/fixtures.js";
import { useFixtureServer, type TestServer } from "../helpers/server.js";

let db: TestDatabase;
let f: Fixtures;
let srv: TestServer;

useFixtureServer((database, fixtures, server) => {
  db = database;
  f = fixtures;
  srv = server;
});

/** A key issued by the operator (the CLI's path) in tenant A unless said otherwise. */
const key = (input: Partial<IssueInput> & { scopes: string[] }): Promise<IssuedKey> => issueApiKey(db.owner, srv.masterKey, { name: "Partner", tenantId: f.a.id, ...input });

interface Call {
  method?: string;
  path: string;
  body?: unknown;
  /** Changes to the signed headers or the request after signing. */
  tamper?: (h: Record<string, string>) => void;
  timestamp?: number;
  nonce?: string;
  app?: TestServer;
}

/** A request signed with the package's signing client, as a partner would send it. */
function call(k: Pick<IssuedKey, "keyId" | "secret">, { method = "GET", path, body, tamper, timestamp, nonce, app = srv }: Call) {
  const raw = body === undefined ? undefined : JSON.stringify(body);
  const headers: Record<string, string> = { ...signRequest({ keyId: k.keyId, secret: k.secret, method, url: path, body: raw, timestamp, nonce }) };
  tamper?.(headers);
  let req = request(app.app)[method.toLowerCase() as "get"](path).set(headers);
  if (raw !== undefined) req = req.set("Content-Type", "application/json").send(raw);
  return req;
}

const UNAUTHENTICATED = { error: { code: "unauthenticated", message: "The request is not signed by a valid API key." } };

describe("signatures", () => {
  let k: IssuedKey;
  beforeAll(async () => {
    k = await key({ scopes: ["user:read", "user:write"] });
  });

  test("a signed request passes, with rate-limit headers on the answer", async () => {
    const res = await call(k, { path: "/open/v1/users?limit=2" });
    expect(res.status).toBe(200);
    expect(res.body.data).toHaveLength(2);
    expect(res.headers["ratelimit-limit"]).toBe("1000");
    expect(Number(res.headers["ratelimit-remaining"])).toBeLessThan(1000);
    expect(Number(res.headers["ratelimit-reset"])).toBeGreaterThan(0);
  });

  test.each([
    [
      "a replayed nonce",
      async () => {
        const nonce = "replay-0123456789abcdef";
        expect((await call(k, { path: "/open/v1/me", nonce })).status).toBe(200);
        return call(k, { path: "/open/v1/me", nonce });
      },
    ],
    // Well outside the 300 s window (a test under load takes a moment between signing and checking).
    ["a timestamp 310 s old", () => call(k, { path: "/open/v1/me", timestamp: Math.floor(Date.now() / 1000) - 310 })],
    ["a timestamp 310 s ahead", () => call(k, { path: "/open/v1/me", timestamp: Math.floor(Date.now() / 1000) + 310 })],
    [
      "one body byte changed",
      () => {
        const headers = signRequest({ keyId: k.keyId, secret: k.secret, method: "POST", url: "/open/v1/users", body: '{"email":"ada@tenant-a.test"}' });
        return request(srv.app).post("/open/v1/users").set(headers).set("Content-Type", "application/json").send('{"email":"adb@tenant-a.test"}');
      },
    ],
    [
      "the method swapped",
      () => {
        const headers = signRequest({ keyId: k.keyId, secret: k.secret, method: "GET", url: `/open/v1/users/${f.a.users.member}` });
        return request(srv.app).delete(`/open/v1/users/${f.a.users.member}`).set(headers);
      },
    ],
    [
      "the path swapped",
      () => {
        const headers = signRequest({ keyId: k.keyId, secret: k.secret, method: "GET", url: `/open/v1/users/${f.a.users.member}` });
        return request(srv.app).get(`/open/v1/users/${f.a.users.outsider}`).set(headers);
      },
    ],
    [
      "the query swapped",
      () => {
        const headers = signRequest({ keyId: k.keyId, secret: k.secret, method: "GET", url: "/open/v1/users?limit=1" });
        return request(srv.app).get("/open/v1/users?limit=2").set(headers);
      },
    ],
    ["a wrong secret", () => call({ keyId: k.keyId, secret: `sk_${"x".repeat(43)}` }, { path: "/open/v1/me" })],
    ["an unknown key", () => call({ keyId: `ak_${"A".repeat(22)}`, secret: k.secret }, { path: "/open/v1/me" })],
    ["a missing signature", () => call(k, { path: "/open/v1/me", tamper: (h) => delete h["X-Signature"] })],
    ["a malformed nonce", () => call(k, { path: "/open/v1/me", nonce: "short" })],
  ])("%s: the same 401", async (_name, send) => {
    const res = await send();
    expect(res.status).toBe(401);
    expect(res.body).toEqual(UNAUTHENTICATED);
  });

  test("timestamps inside the window pass, either way", async () => {
    for (const skew of [-290, 290]) expect((await call(k, { path: "/open/v1/me", timestamp: Math.floor(Date.now() / 1000) + skew })).status).toBe(200);
  });

  test("the query's order and encoding do not matter; its content does", async () => {
    const headers = signRequest({ keyId: k.keyId, secret: k.secret, method: "GET", url: "/open/v1/users?limit=1&email=member%40tenant-a.test" });
    const res = await request(srv.app).get("/open/v1/users?email=member%40tenant-a.test&limit=1").set(headers);
    expect(res.status).toBe(200);
    expect(res.body.data.map((u: { email: string }) => u.email)).toEqual(["member@tenant-a.test"]);
  });

  test("revoked and expired keys are refused at once, whatever the server cached", async () => {
    const doomed = await key({ scopes: ["user:read"] });
    expect((await call(doomed, { path: "/open/v1/me" })).status).toBe(200);
    await db.owner.query("select authhub.revoke_api_key($1)", [doomed.id]);
    expect((await call(doomed, { path: "/open/v1/me" })).body).toEqual(UNAUTHENTICATED);
    const expiring = await key({ scopes: ["user:read"], expiresAt: new Date(Date.now() + 60_000) });
    expect((await call(expiring, { path: "/open/v1/me" })).status).toBe(200);
    await db.owner.query("update authhub.api_keys set expires_at = now() - interval '1 second' where id = $1", [expiring.id]);
    expect((await call(expiring, { path: "/open/v1/me" })).body).toEqual(UNAUTHENTICATED);
  });

  test("a rotated secret works at once; the old one only for the grace period", async () => {
    const rotating = await key({ scopes: ["user:read"] });
    const next = await rotateApiKeySecret(db.owner, srv.masterKey, rotating.id, 3600);
    expect((await call({ keyId: rotating.keyId, secret: next.secret }, { path: "/open/v1/me" })).status).toBe(200);
    expect((await call(rotating, { path: "/open/v1/me" })).status).toBe(200);
    const last = await rotateApiKeySecret(db.owner, srv.masterKey, rotating.id, 0);
    // The key store re-reads a key at most once a second.
    await new Promise((r) => setTimeout(r, 1100));
    expect((await call({ keyId: rotating.keyId, secret: last.secret }, { path: "/open/v1/me" })).status).toBe(200);
    expect((await call({ keyId: rotating.keyId, secret: next.secret }, { path: "/open/v1/me" })).status).toBe(401);
  });

  test("the secret is in no table in the clear, no audit row and no log", async () => {
    const fresh = await key({ scopes: ["org:read"] });
    const { rows } = await db.owner.query(
      "select (select json_agg(s) from authhub_private.api_key_secrets s)::text as secrets, (select json_agg(e) from authhub.audit_events e)::text as audit",
    );
    expect(rows[0].secrets).not.toContain(fresh.secret);
    expect(rows[0].audit).not.toContain(fresh.secret);
    expect(fresh.secret).toMatch(/^sk_[0-9A-Za-z]{43}$/);
    expect(fresh.keyId).toMatch(/^ak_[0-9A-Za-z]{22}$/);
  });
});

describe("scopes and tenancy", () => {
  test("GET /me names the key, its tenant and its limits", async () => {
    const k = await key({ scopes: ["org:read"], organizationId: f.a.orgs.child, rateLimitPerMinute: 500 });
    const res = await call(k, { path: "/open/v1/me" });
    expect(res.body).toMatchObject({
      key: { id: k.keyId, organizationId: f.a.orgs.child, scopes: ["org:read"], rateLimitPerMinute: 500, expiresAt: null },
      tenant: { id: f.a.id, slug: "tenant-a" },
      rateLimit: { limit: 500 },
    });
  });

  test("a missing scope is 403 insufficient_scope; another tenant's ids are 404", async () => {
    const reader = await key({ scopes: ["user:read"] });
    const res = await call(reader, { method: "POST", path: "/open/v1/users", body: { email: "nope@tenant-a.test" } });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe("insufficient_scope");
    expect((await call(reader, { path: `/open/v1/users/${f.b.users.member}` })).status).toBe(404);
    expect((await call(reader, { path: `/open/v1/users/${f.a.users.member}` })).status).toBe(200);
    const writer = await key({ scopes: ["user:read", "user:write"] });
    expect((await call(writer, { method: "PATCH", path: `/open/v1/users/${f.b.users.member}`, body: { displayName: "x" } })).status).toBe(404);
    expect((await call(writer, { method: "DELETE", path: `/open/v1/users/${f.b.users.member}` })).status).toBe(404);
    // Tenant B's user is there, unchanged.
    const { rows } = await db.owner.query("select display_name, status from authhub.users where id = $1", [f.b.users.member]);
    expect(rows).toEqual([{ display_name: "member", status: "active" }]);
  });

  test("an organization key sees its subtree only", async () => {
    const k = await key({ scopes: ["org:read", "user:read"], organizationId: f.a.orgs.child });
    const orgs = (await call(k, { path: "/open/v1/organizations" })).body.data.map((o: { id: string }) => o.id).sort();
    expect(orgs).toEqual([f.a.orgs.child, f.a.orgs.grandchild].sort());
    expect((await call(k, { path: `/open/v1/organizations/${f.a.orgs.sibling}` })).status).toBe(404);
    const users = (await call(k, { path: "/open/v1/users" })).body.data.map((u: { id: string }) => u.id).sort();
    expect(users).toEqual([f.a.users.orgAdmin, f.a.users.member, f.a.users.suspended].sort());
  });

  test("a key manages plain users only: an admin is visible but not changed (403)", async () => {
    const k = await key({ scopes: ["user:read", "user:write"] });
    const res = await call(k, { method: "PATCH", path: `/open/v1/users/${f.a.users.tenantAdmin}`, body: { status: "suspended" } });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe("forbidden");
    const { rows } = await db.owner.query("select status from authhub.users where id = $1", [f.a.users.tenantAdmin]);
    expect(rows[0].status).toBe("active");
  });
});

describe("resources", () => {
  let k: IssuedKey;
  beforeAll(async () => {
    k = await key({ scopes: ["user:read", "user:write", "org:read", "org:write", "membership:read", "membership:write"] });
  });

  test("users: create (201, id is the row id), get, update, page through, delete; changes audited as the key", async () => {
    const created = await call(k, { method: "POST", path: "/open/v1/users", body: { email: "Grace@Tenant-A.test", displayName: "Grace", externalId: "idp|grace" } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ email: "grace@tenant-a.test", displayName: "Grace", externalId: "idp|grace", level: "USER", status: "active" });
    const id = created.body.id;
    expect((await call(k, { path: `/open/v1/users/${id}` })).body.email).toBe("grace@tenant-a.test");
    const updated = await call(k, { method: "PATCH", path: `/open/v1/users/${id}`, body: { displayName: "Grace H.", status: "suspended" } });
    expect(updated.body).toMatchObject({ displayName: "Grace H.", status: "suspended" });

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res = await call(k, { path: `/open/v1/users?limit=2${cursor ? `&cursor=${cursor}` : ""}` });
      expect(res.status).toBe(200);
      seen.push(...res.body.data.map((u: { id: string }) => u.id));
      cursor = res.body.nextCursor;
    } while (cursor);
    const all = (await db.owner.query("select id from authhub.users where tenant_id = $1 order by id", [f.a.id])).rows.map((r) => r.id);
    expect(seen).toEqual(all);

    const { rows } = await db.owner.query("select actor from authhub.audit_events where table_name = 'users' and row_key ->> 'id' = $1 order by id", [id]);
    expect(rows.map((r) => r.actor)).toEqual([`api_key:${k.id}`, `api_key:${k.id}`]);
    expect((await call(k, { method: "DELETE", path: `/open/v1/users/${id}` })).status).toBe(204);
    expect((await call(k, { path: `/open/v1/users/${id}` })).status).toBe(404);
  });

  test("organizations and memberships: create, read, change, remove", async () => {
    const org = await call(k, { method: "POST", path: "/open/v1/organizations", body: { slug: "partners", name: "Partners", parentId: f.a.orgs.root } });
    expect(org.status).toBe(201);
    expect((await call(k, { method: "PATCH", path: `/open/v1/organizations/${org.body.id}`, body: { name: "Partner Co" } })).body.name).toBe("Partner Co");
    expect((await call(k, { path: `/open/v1/organizations?parentId=${f.a.orgs.root}` })).body.data.map((o: { slug: string }) => o.slug).sort()).toEqual(["child", "partners"]);
    const m = await call(k, { method: "POST", path: "/open/v1/memberships", body: { organizationId: org.body.id, userId: f.a.users.outsider } });
    expect(m.status).toBe(201);
    expect(m.body).toMatchObject({ organizationId: org.body.id, userId: f.a.users.outsider, level: "USER" });
    const path = `/open/v1/memberships/${org.body.id}/${f.a.users.outsider}`;
    expect((await call(k, { path })).status).toBe(200);
    expect((await call(k, { path: `/open/v1/memberships?organizationId=${org.body.id}` })).body.data).toHaveLength(1);
    // A key is not a tenant admin: it gives no ORG_ADMIN memberships.
    expect((await call(k, { method: "PATCH", path, body: { level: "ORG_ADMIN" } })).status).toBe(403);
    expect((await call(k, { method: "DELETE", path })).status).toBe(204);
    expect((await call(k, { path })).status).toBe(404);
    expect((await call(k, { method: "DELETE", path })).status).toBe(404);
    expect((await call(k, { method: "DELETE", path: `/open/v1/organizations/${org.body.id}` })).status).toBe(204);
  });

  test("bad input is invalid_input naming the fields, and changes nothing", async () => {
    const count = async () => (await db.owner.query("select count(*)::int as n from authhub.users")).rows[0].n as number;
    const before = await count();
    const cases: [unknown, { field: string }[]][] = [
      [{}, [{ field: "email" }]],
      [{ email: "x@tenant-a.test", level: "TENANT_ADMIN" }, [{ field: "level" }]],
      [{ email: 42 }, [{ field: "email" }]],
      [{ email: "not-an-email" }, [{ field: "email" }]],
    ];
    for (const [body, details] of cases) {
      const res = await call(k, { method: "POST", path: "/open/v1/users", body });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe("invalid_input");
      expect(res.body.error.details).toEqual(details.map((d) => expect.objectContaining(d)));
      expect(JSON.stringify(res.body)).not.toMatch(/authhub\.|constraint|select|insert/i);
    }
    expect((await call(k, { path: "/open/v1/users?limit=1000" })).body.error.details).toEqual([expect.objectContaining({ field: "limit" })]);
    expect((await call(k, { path: "/open/v1/users?cursor=bogus" })).body.error.details).toEqual([expect.objectContaining({ field: "cursor" })]);
    expect((await call(k, { path: "/open/v1/users/not-a-uuid" })).body.error.details).toEqual([expect.objectContaining({ field: "id" })]);
    expect((await call(k, { method: "POST", path: "/open/v1/users", body: { email: "MEMBER@tenant-a.test" } })).body.error.code).toBe("conflict");
    expect(await count()).toBe(before);
  });
});

describe("rate limits", () => {
  test("over the key's limit: 429 with Retry-After, and the request did nothing", async () => {
    const k = await key({ scopes: ["user:read", "user:write"], rateLimitPerMinute: 2 });
    const left = 60_000 - (Date.now() % 60_000);
    if (left < 5_000) await new Promise((r) => setTimeout(r, left + 100));
    expect((await call(k, { path: "/open/v1/me" })).status).toBe(200);
    expect((await call(k, { path: "/open/v1/me" })).headers["ratelimit-remaining"]).toBe("0");
    const over = await call(k, { method: "POST", path: "/open/v1/users", body: { email: "limited@tenant-a.test" } });
    expect(over.status).toBe(429);
    expect(over.body.error.code).toBe("rate_limited");
    expect(Number(over.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    expect(over.headers["ratelimit-limit"]).toBe("2");
    expect((await db.owner.query("select 1 from authhub.users where email = 'limited@tenant-a.test'")).rowCount).toBe(0);
  });

  test("a tenant's ceiling is shared by all its keys", async () => {
    await db.owner.query("update authhub.tenants set api_rate_limit_per_minute = 3 where id = $1", [f.b.id]);
    try {
      const left = 60_000 - (Date.now() % 60_000);
      if (left < 5_000) await new Promise((r) => setTimeout(r, left + 100));
      const one = await key({ scopes: ["org:read"], tenantId: f.b.id });
      const two = await key({ scopes: ["org:read"], tenantId: f.b.id });
      const statuses = [];
      for (const k of [one, two, one, two]) statuses.push((await call(k, { path: "/open/v1/me" })).status);
      expect(statuses).toEqual([200, 200, 200, 429]);
    } finally {
      await db.owner.query("update authhub.tenants set api_rate_limit_per_minute = null where id = $1", [f.b.id]);
    }
  });
});

describe("the OpenAPI document", () => {
  test("is a valid OpenAPI 3.1 document covering every route, the security scheme and the error shape", async () => {
    const res = await request(srv.app).get("/open/v1/openapi.json");
    expect(res.status).toBe(200);
    const validator = new Validator();
    const result = await validator.validate(res.body);
    expect(result).toEqual({ valid: true });
    expect(validator.version).toBe("3.1");
    for (const r of routes) expect(res.body.paths[r.path]?.[r.method]?.operationId).toBe(r.operationId);
    expect(Object.keys(res.body.components.securitySchemes).sort()).toEqual(["ApiKey", "Nonce", "Signature", "Timestamp"]);
    expect(res.body.components.schemas.Error.properties.error.required).toEqual(["code", "message"]);
  });
});

describe("managing keys through GraphQL", () => {
  const gql = async (actor: Parameters<TestServer["mint"]>[0], query: string, variables: Record<string, unknown> = {}) =>
    request(srv.app)
      .post("/graphql")
      .set("Authorization", `Bearer ${await srv.mint(actor)}`)
      .send({ query, variables });
  const CREATE = `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { keyId secret apiKey { rowId name scopes organizationId rateLimitPerMinute lastUsedAt requestCount } } }`;

  test("a tenant admin creates a key (the secret shown once), which then works; rotates it; revokes it", async () => {
    const { cast } = await import("../helpers/fixtures.js");
    const admin = cast(f, f.a).tenantAdmin;
    const res = await gql(admin, CREATE, { input: { name: "CRM sync", scopes: ["user:read"], rateLimitPerMinute: 600 } });
    expect(res.body.errors).toBeUndefined();
    const created = res.body.data.createApiKey;
    expect(created).toMatchObject({
      keyId: expect.stringMatching(/^ak_/),
      secret: expect.stringMatching(/^sk_/),
      apiKey: { name: "CRM sync", scopes: ["user:read"], rateLimitPerMinute: 600, requestCount: "0" },
    });
    expect((await call({ keyId: created.keyId, secret: created.secret }, { path: "/open/v1/me" })).status).toBe(200);
    // Uses are recorded about every 100 ms.
    let listed: Awaited<ReturnType<typeof gql>> | undefined;
    let mine: { requestCount: string; lastUsedAt: string | null } | undefined;
    for (let i = 0; i < 40 && mine?.requestCount !== "1"; i++) {
      await new Promise((r) => setTimeout(r, 50));
      listed = await gql(admin, `{ apiKeys { nodes { keyId requestCount lastUsedAt } } }`);
      mine = listed.body.data.apiKeys.nodes.find((k: { keyId: string }) => k.keyId === created.keyId);
    }
    expect(mine).toMatchObject({ requestCount: "1", lastUsedAt: expect.any(String) });
    expect(JSON.stringify(listed!.body)).not.toContain(created.secret);

    const rotated = await gql(admin, `mutation($id: UUID!) { rotateApiKeySecret(input: { id: $id, gracePeriodSeconds: 0 }) { keyId secret } }`, { id: created.apiKey.rowId });
    expect(rotated.body.data.rotateApiKeySecret.secret).not.toBe(created.secret);
    const revoked = await gql(admin, `mutation($id: UUID!) { revokeApiKey(input: { id: $id }) { apiKey { revokedAt } } }`, { id: created.apiKey.rowId });
    expect(revoked.body.data.revokeApiKey.apiKey.revokedAt).toEqual(expect.any(String));
    expect((await call({ keyId: created.keyId, secret: rotated.body.data.rotateApiKeySecret.secret }, { path: "/open/v1/me" })).status).toBe(401);
  });

  test("nobody creates a key with more than they hold: errors carry stable codes", async () => {
    const { cast } = await import("../helpers/fixtures.js");
    const orgAdmin = cast(f, f.a).orgAdmin;
    const beyond = await gql(orgAdmin, CREATE, { input: { name: "x", scopes: ["org:read"] } });
    expect(beyond.body.errors[0].extensions.code).toBe("forbidden");
    const unknown = await gql(cast(f, f.a).tenantAdmin, CREATE, { input: { name: "x", scopes: ["made:up"] } });
    expect(unknown.body.errors[0].extensions.code).toBe("invalid_input");
    const member = await gql(cast(f, f.a).member, CREATE, { input: { name: "x", scopes: ["org:read"] } });
    expect(member.body.errors[0].extensions.code).toBe("forbidden");
    const inScope = await gql(orgAdmin, CREATE, { input: { name: "Org sync", scopes: ["org:read"], organizationId: f.a.orgs.child } });
    expect(inScope.body.data.createApiKey.apiKey.organizationId).toBe(f.a.orgs.child);
  });
});

describe("review: replays, shared ceilings, odd input", () => {
  test("a request that failed or was refused cannot be replayed: its nonce is recorded first", async () => {
    const k = await key({ scopes: ["org:read", "org:write"], rateLimitPerMinute: 1000 });
    const body = JSON.stringify({ slug: "child", name: "Dup", parentId: f.a.orgs.root });
    const headers = signRequest({ keyId: k.keyId, secret: k.secret, method: "POST", url: "/open/v1/organizations", body });
    const send = () => request(srv.app).post("/open/v1/organizations").set(headers).set("Content-Type", "application/json").send(body);
    expect((await send()).status).toBe(409);
    expect((await send()).body).toEqual(UNAUTHENTICATED);
  });

  test("one key over its own limit does not use up its tenant's ceiling", async () => {
    // Tenant A's ceiling has not been counted yet (tenant B's was, above).
    await db.owner.query("update authhub.tenants set api_rate_limit_per_minute = 4 where id = $1", [f.a.id]);
    try {
      const greedy = await key({ scopes: ["org:read"], rateLimitPerMinute: 2 });
      const polite = await key({ scopes: ["org:read"] });
      const statuses = [];
      for (let i = 0; i < 6; i++) statuses.push((await call(greedy, { path: "/open/v1/me" })).status);
      expect(statuses).toEqual([200, 200, 429, 429, 429, 429]);
      expect((await call(polite, { path: "/open/v1/me" })).status).toBe(200);
      expect((await call(polite, { path: "/open/v1/me" })).status).toBe(200);
      expect((await call(polite, { path: "/open/v1/me" })).status).toBe(429);
    } finally {
      await db.owner.query("update authhub.tenants set api_rate_limit_per_minute = null where id = $1", [f.a.id]);
    }
  });

  test("a `+` in the query means what was signed: a plus", async () => {
    const k = await key({ scopes: ["user:read", "user:write"] });
    expect((await call(k, { method: "POST", path: "/open/v1/users", body: { email: "ada+x@tenant-a.test" } })).status).toBe(201);
    const res = await call(k, { path: "/open/v1/users?email=ada+x@tenant-a.test" });
    expect(res.status).toBe(200);
    expect(res.body.data.map((u: { email: string }) => u.email)).toEqual(["ada+x@tenant-a.test"]);
  });

  test("control characters are invalid_input, never a server error", async () => {
    const k = await key({ scopes: ["user:read", "user:write"] });
    const res = await call(k, { method: "POST", path: "/open/v1/users", body: { email: "nul@tenant-a.test", displayName: "a\u0000b" } });
    expect(res.status).toBe(400);
    expect(res.body.error.details).toEqual([expect.objectContaining({ field: "displayName" })]);
    expect((await call(k, { path: "/open/v1/users?email=%00" })).status).toBe(400);
  });
});
