/**
 * The Auth API (issue 5) over real HTTP against a real database: discovery and
 * JWKS, token exchange from a local identity provider, refresh rotation with
 * reuse detection, revocation, key rotation, and the abuse limits.
 */
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from "jose";
import type { AddressInfo } from "node:net";
import request from "supertest";
import { TOKEN_EXCHANGE } from "../../server/auth/authApi.js";
import { newSigningKeyMaterial } from "../../server/auth/signingKeys.js";
import { useFixtureDatabase, type Fixtures } from "../helpers/fixtures.js";
import type { TestDatabase } from "../helpers/db.js";
import { startLocalIdp, type LocalIdp } from "../helpers/idp.js";
import { startTestServer, TEST_ISSUER, type TestServer } from "../helpers/server.js";

let db: TestDatabase;
let f: Fixtures;
let srv: TestServer;
let idp: LocalIdp;
let base: string;

const JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt";

useFixtureDatabase(async (database, fixtures) => {
  db = database;
  f = fixtures;
  idp = await startLocalIdp();
  for (const [user, externalId] of [
    [f.a.users.member, "idp|member"],
    [f.a.users.orgAdmin, "idp|org-admin"],
    [f.a.users.tenantAdmin, "idp|tenant-admin"],
    [f.a.users.suspended, "idp|suspended"],
  ] as const) {
    await db.owner.query("update authhub.users set external_id = $2 where id = $1", [user, externalId]);
  }
  srv = await startTestServer(db, {
    AUTHHUB_TRUSTED_ISSUERS: JSON.stringify([{ issuer: idp.issuer, jwksUri: idp.jwksUri }]),
    AUTHHUB_TOKEN_RATE_LIMIT_SUBJECT: "1000",
    AUTHHUB_TOKEN_RATE_LIMIT_IP: "100000",
  });
  // A listening server, so a sibling service can fetch the JWKS by URL.
  await new Promise<void>((resolve) => srv.server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(srv.server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => srv.server.close(resolve));
  await srv.close();
  await idp.close();
});

const token = (params: Record<string, string>) => request(srv.app).post("/auth/token").type("form").send(params);
const exchange = async (subject: string, params: Record<string, string> = {}) =>
  token({ grant_type: TOKEN_EXCHANGE, subject_token: await idp.sign(subject), subject_token_type: JWT_TYPE, tenant: f.a.slug, ...params });
const refresh = (refreshToken: string) => token({ grant_type: "refresh_token", refresh_token: refreshToken });
const whoami = (accessToken: string) =>
  request(srv.app)
    .post("/graphql")
    .set("Authorization", `Bearer ${accessToken}`)
    .send({ query: "{ currentUser { email } }" })
    // The user's email; null when the request is served but names no user; the status otherwise.
    .then((r) => (r.status === 200 && r.body.data ? ((r.body.data.currentUser?.email as string | undefined) ?? null) : `HTTP ${r.status}`));

describe("discovery", () => {
  test("openid-configuration names the issuer, the JWKS and the endpoints", async () => {
    const res = await request(srv.app).get("/.well-known/openid-configuration");
    expect(res.status).toBe(200);
    expect(res.headers["cache-control"]).toMatch(/max-age=\d+/);
    expect(res.body).toMatchObject({
      issuer: TEST_ISSUER,
      jwks_uri: `${TEST_ISSUER}/.well-known/jwks.json`,
      token_endpoint: `${TEST_ISSUER}/auth/token`,
      revocation_endpoint: `${TEST_ISSUER}/auth/revoke`,
      grant_types_supported: [TOKEN_EXCHANGE, "refresh_token", "client_credentials"],
    });
  });

  test("the JWKS publishes public members only, with a cache lifetime", async () => {
    const res = await request(srv.app).get("/.well-known/jwks.json");
    expect(res.status).toBe(200);
    expect(res.headers["cache-control"]).toMatch(/public, max-age=\d+/);
    expect(res.body.keys.length).toBeGreaterThan(0);
    for (const key of res.body.keys) {
      expect(Object.keys(key).sort()).toEqual(["alg", "crv", "kid", "kty", "use", "x", "y"]);
      for (const secret of ["d", "p", "q", "dp", "dq", "qi", "k"]) expect(key).not.toHaveProperty(secret);
    }
    expect(res.body.keys.map((k: { kid: string }) => k.kid)).toContain(srv.key.kid);
  });
});

describe("token exchange", () => {
  test("a trusted issuer's token becomes an AuthHub access token and refresh token; roles come from the database", async () => {
    const res = await exchange("idp|member");
    expect(res.status).toBe(200);
    expect(res.headers["cache-control"]).toBe("no-store");
    expect(res.body).toMatchObject({
      token_type: "Bearer",
      issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
      expires_in: 900,
    });
    expect(res.body.refresh_token).toMatch(/^rt_[A-Za-z0-9_-]{43}$/);
    const claims = decodeJwt(res.body.access_token);
    expect(claims).toMatchObject({ iss: TEST_ISSUER, aud: "authhub", sub: f.a.users.member, tenant_id: f.a.id, roles: ["USER"] });
    expect(claims.exp! - claims.iat!).toBe(900);
    const family = await db.owner.query("select id, issuer from authhub_private.refresh_families where user_id = $1", [f.a.users.member]);
    expect(claims.sid).toBe(family.rows[0].id);
    expect(family.rows[0].issuer).toBe(idp.issuer);
    expect(await whoami(res.body.access_token)).toBe("member@tenant-a.test");
  });

  test("JSON bodies work too, and an organization (slug or id) selects the active org and its level", async () => {
    const res = await request(srv.app)
      .post("/auth/token")
      .send({ grant_type: TOKEN_EXCHANGE, subject_token: await idp.sign("idp|org-admin"), subject_token_type: JWT_TYPE, tenant: f.a.id, organization: "child" });
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token)).toMatchObject({ org_id: f.a.orgs.child, roles: ["ORG_ADMIN"] });
    const byId = await exchange("idp|org-admin", { organization: f.a.orgs.child });
    expect(decodeJwt(byId.body.access_token)).toMatchObject({ org_id: f.a.orgs.child });
  });

  test("a login is recorded in the audit log as the user's own act", async () => {
    const res = await exchange("idp|tenant-admin");
    const { rows } = await db.owner.query("select actor, operation from authhub.audit_events where table_name = 'refresh_families' and row_key ->> 'id' = $1", [
      decodeJwt(res.body.access_token).sid,
    ]);
    expect(rows).toEqual([{ actor: `user:${f.a.users.tenantAdmin}`, operation: "INSERT" }]);
  });

  test.each([
    ["unknown user", "idp|nobody", {}],
    ["suspended user", "idp|suspended", {}],
    ["tenant the user is not in", "idp|member", { tenant: "tenant-b" }],
    ["tenant that does not exist", "idp|member", { tenant: "no-such-tenant" }],
    ["organization the user is not in", "idp|member", { organization: "sibling" }],
    ["organization that does not exist", "idp|member", { organization: "no-such-org" }],
  ])("%s: invalid_target, said the same way", async (_name, subject, params) => {
    const res = await exchange(subject, params);
    expect(res.status).toBe(400);
    expect(res.body).toEqual({
      error: "invalid_target",
      error_description: "No token can be issued for this subject in the tenant or organization requested.",
    });
  });

  test.each([
    ["an untrusted issuer", () => idp.sign("idp|member", { issuer: "https://evil.example" })],
    ["another audience", () => idp.sign("idp|member", { audience: "someone-else" })],
    ["an expired token", () => idp.sign("idp|member", { exp: Math.floor(Date.now() / 1000) - 60 })],
    [
      "alg none",
      async () => {
        const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
        const now = Math.floor(Date.now() / 1000);
        return `${b64({ alg: "none", typ: "JWT" })}.${b64({ iss: idp.issuer, aud: "authhub", sub: "idp|member", iat: now, exp: now + 300 })}.`;
      },
    ],
    ["HS256 keyed with the published public key", () => idp.sign("idp|member", { alg: "HS256", key: new TextEncoder().encode(JSON.stringify(idp.publicJwk)) })],
    [
      "a key the issuer never published (unknown kid)",
      async () => {
        const { generateKeyPair } = await import("jose");
        const other = await generateKeyPair("RS256");
        return idp.sign("idp|member", { kid: "idp-key-unknown", key: other.privateKey });
      },
    ],
    ["not a JWT", async () => "definitely-not-a-jwt"],
  ])("%s: invalid_grant, nothing issued", async (_name, make) => {
    const before = await db.owner.query("select count(*)::int as n from authhub_private.refresh_families");
    const res = await token({ grant_type: TOKEN_EXCHANGE, subject_token: await make(), subject_token_type: JWT_TYPE, tenant: f.a.slug });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe("invalid_grant");
    expect(res.body).not.toHaveProperty("access_token");
    const after = await db.owner.query("select count(*)::int as n from authhub_private.refresh_families");
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });

  test("an unknown kid refetches the issuer's JWKS at most once per cool-down", async () => {
    // A fresh issuer and server, so no earlier test's fetch has started the cool-down.
    const { generateKeyPair } = await import("jose");
    const other = await generateKeyPair("RS256");
    const fresh = await startLocalIdp();
    const server = await startTestServer(db, {
      AUTHHUB_TRUSTED_ISSUERS: JSON.stringify([{ issuer: fresh.issuer, jwksUri: fresh.jwksUri }]),
      AUTHHUB_TOKEN_RATE_LIMIT_IP: "100000",
    });
    try {
      for (let i = 0; i < 3; i++) {
        const res = await request(server.app)
          .post("/auth/token")
          .type("form")
          .send({
            grant_type: TOKEN_EXCHANGE,
            subject_token: await fresh.sign("idp|member", { kid: `unknown-${i}`, key: other.privateKey }),
            subject_token_type: JWT_TYPE,
            tenant: f.a.slug,
          });
        expect(res.body.error).toBe("invalid_grant");
      }
      // The first unknown kid fetched the set; the next two, within the cool-down, did not.
      expect(fresh.fetches()).toBe(1);
    } finally {
      await server.close();
      await fresh.close();
    }
  });

  test.each([
    ["no grant_type", "invalid_request", {}],
    ["an unknown grant_type", "unsupported_grant_type", { grant_type: "password" }],
    ["no subject_token", "invalid_request", { grant_type: TOKEN_EXCHANGE, subject_token_type: JWT_TYPE, tenant: "tenant-a" }],
    [
      "a non-JWT subject_token_type",
      "invalid_request",
      { grant_type: TOKEN_EXCHANGE, subject_token: "x", subject_token_type: "urn:ietf:params:oauth:token-type:saml2", tenant: "tenant-a" },
    ],
    ["no tenant", "invalid_request", { grant_type: TOKEN_EXCHANGE, subject_token: "x", subject_token_type: JWT_TYPE }],
  ])("%s: %s", async (_name, error, params) => {
    const res = await token(params);
    expect(res.status).toBe(400);
    expect(res.body.error).toBe(error);
    expect(typeof res.body.error_description).toBe("string");
  });

  test("a subject token issued more than an hour ago is not exchanged, whatever its expiry", async () => {
    const now = Math.floor(Date.now() / 1000);
    const old = await idp.sign("idp|member", { exp: now + 86_400, iat: now - 7200 });
    const res = await token({ grant_type: TOKEN_EXCHANGE, subject_token: old, subject_token_type: JWT_TYPE, tenant: f.a.slug });
    expect(res.body).toEqual({ error: "invalid_grant", error_description: "The token is too old to be accepted." });
  });

  test("control characters in a parameter are invalid_request, not a server error", async () => {
    const res = await exchange("idp|member", { tenant: "tenant-a\u0000" });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe("invalid_request");
  });

  test("a repeated parameter is refused", async () => {
    const res = await request(srv.app).post("/auth/token").type("form").send("grant_type=refresh_token&grant_type=refresh_token");
    expect(res.body.error).toBe("invalid_request");
  });
});

describe("client credentials (API keys)", () => {
  test("an Open API key gets an access token for GraphQL with its tenant and scopes; no refresh token", async () => {
    const { issueApiKey } = await import("../../server/openapi/issue.js");
    const key = await issueApiKey(db.owner, srv.masterKey, { name: "reporting", scopes: ["user:read"], tenantId: f.a.id });
    const res = await token({ grant_type: "client_credentials", client_id: key.keyId, client_secret: key.secret });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ token_type: "Bearer", expires_in: 900, scope: "user:read" });
    expect(res.body).not.toHaveProperty("refresh_token");
    expect(decodeJwt(res.body.access_token)).toMatchObject({ sub: key.keyId, api_key_id: key.id, tenant_id: f.a.id, scope: "user:read" });
    const gql = (tokenValue: string, query: string) =>
      request(srv.app)
        .post("/graphql")
        .set("Authorization", `Bearer ${tokenValue}`)
        .send({ query })
        .then((r) => r.body);
    const seen = await gql(res.body.access_token, "{ users { totalCount } organizations { totalCount } currentUser { email } }");
    const users = (await db.owner.query("select count(*)::int as n from authhub.users where tenant_id = $1", [f.a.id])).rows[0].n;
    expect(seen.data).toEqual({ users: { totalCount: users }, organizations: { totalCount: 0 }, currentUser: null });
    const decide = await request(srv.app)
      .post("/v1/authorize")
      .set("Authorization", `Bearer ${res.body.access_token}`)
      .send({ checks: [{ permission: "user:read" }, { permission: "user:write" }] });
    expect(decide.body).toEqual({ results: [{ allowed: true }, { allowed: false }] });
    // HTTP Basic works as well.
    const basic = await request(srv.app)
      .post("/auth/token")
      .set("Authorization", `Basic ${Buffer.from(`${key.keyId}:${key.secret}`).toString("base64")}`)
      .type("form")
      .send({ grant_type: "client_credentials" });
    expect(basic.status).toBe(200);
    // Revoking the key ends its tokens at once.
    await db.owner.query("select authhub.revoke_api_key($1)", [key.id]);
    expect((await gql(res.body.access_token, "{ users { totalCount } }")).data).toEqual({ users: { totalCount: 0 } });
    await new Promise((r) => setTimeout(r, 1100));
    expect((await token({ grant_type: "client_credentials", client_id: key.keyId, client_secret: key.secret })).body.error).toBe("invalid_client");
  });

  test("a wrong secret and an unknown key are the same invalid_client", async () => {
    const { issueApiKey } = await import("../../server/openapi/issue.js");
    const key = await issueApiKey(db.owner, srv.masterKey, { name: "x", scopes: ["org:read"], tenantId: f.a.id });
    const wrong = await token({ grant_type: "client_credentials", client_id: key.keyId, client_secret: `sk_${"z".repeat(43)}` });
    const unknown = await token({ grant_type: "client_credentials", client_id: `ak_${"Q".repeat(22)}`, client_secret: key.secret });
    expect(wrong.status).toBe(401);
    expect(wrong.body).toEqual(unknown.body);
    expect(wrong.body.error).toBe("invalid_client");
  });
});

describe("client credentials failures", () => {
  test("wrong secrets from one address slow that address down and never lock the key's owner out", async () => {
    const { issueApiKey } = await import("../../server/openapi/issue.js");
    const key = await issueApiKey(db.owner, srv.masterKey, { name: "guessed", scopes: ["user:read"], tenantId: f.a.id });
    const limited = await startTestServer(db, { AUTHHUB_TOKEN_RATE_LIMIT_SUBJECT: "3", AUTHHUB_TOKEN_RATE_LIMIT_IP: "1000", AUTHHUB_TRUST_PROXY: "loopback" });
    try {
      const left = 60_000 - (Date.now() % 60_000);
      if (left < 5_000) await new Promise((r) => setTimeout(r, left + 100));
      const from = (address: string, secret: string) =>
        request(limited.app)
          .post("/auth/token")
          .set("X-Forwarded-For", address)
          .type("form")
          .send({ grant_type: "client_credentials", client_id: key.keyId, client_secret: secret });
      const wrong = `sk_${"z".repeat(43)}`;
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await from("198.51.100.66", wrong)).status);
      expect(statuses).toEqual([401, 401, 401, 429, 429]);
      // The guesser's address stays refused, even with the right secret…
      const guesser = await from("198.51.100.66", key.secret);
      expect(guesser.status).toBe(429);
      expect(guesser.headers["retry-after"]).toBeDefined();
      // …while the owner, elsewhere, gets tokens as often as it likes.
      for (let i = 0; i < 5; i++) expect((await from("203.0.113.10", key.secret)).status).toBe(200);
    } finally {
      await limited.close();
      await db.owner.query("delete from authhub_private.rate_limits");
    }
  });
});

describe("client_credentials guesses at once", () => {
  test("a concurrent burst of wrong secrets from one address gets no more tries than the limit; a right secret gives its count back", async () => {
    const { issueApiKey } = await import("../../server/openapi/issue.js");
    const key = await issueApiKey(db.owner, srv.masterKey, { name: "burst", scopes: ["user:read"], tenantId: f.a.id });
    const limited = await startTestServer(db, { AUTHHUB_TOKEN_RATE_LIMIT_SUBJECT: "3", AUTHHUB_TOKEN_RATE_LIMIT_IP: "1000", AUTHHUB_TRUST_PROXY: "loopback" });
    try {
      const left = 60_000 - (Date.now() % 60_000);
      if (left < 10_000) await new Promise((r) => setTimeout(r, left + 100));
      const from = (address: string, secret: string) =>
        request(limited.app)
          .post("/auth/token")
          .set("X-Forwarded-For", address)
          .type("form")
          .send({ grant_type: "client_credentials", client_id: key.keyId, client_secret: secret });
      // Successes from an address leave its failure count as it was: five of them, then three wrong tries still answer 401.
      for (let i = 0; i < 5; i++) expect((await from("198.51.100.77", key.secret)).status).toBe(200);
      // Twelve wrong secrets at once: each is counted before it is tried, so at most three are tried.
      const statuses = (await Promise.all(Array.from({ length: 12 }, () => from("198.51.100.78", `sk_${"y".repeat(43)}`)))).map((r) => r.status);
      expect(statuses.filter((s) => s === 401)).toHaveLength(3);
      expect(statuses.filter((s) => s === 429)).toHaveLength(9);
      const wrongAfterSuccesses: number[] = [];
      for (let i = 0; i < 4; i++) wrongAfterSuccesses.push((await from("198.51.100.77", `sk_${"y".repeat(43)}`)).status);
      expect(wrongAfterSuccesses).toEqual([401, 401, 401, 429]);
    } finally {
      await limited.close();
      await db.owner.query("delete from authhub_private.rate_limits");
    }
  });
});

describe("authorized parties (Clerk's default session tokens carry azp, no aud)", () => {
  const clerkLike = (app: TestServer, subjectToken: string) =>
    request(app.app).post("/auth/token").type("form").send({ grant_type: TOKEN_EXCHANGE, subject_token: subjectToken, subject_token_type: JWT_TYPE, tenant: f.a.slug });

  test("an allowed azp stands in for the audience; a token with neither is refused", async () => {
    const server = await startTestServer(db, {
      AUTHHUB_TRUSTED_ISSUERS: JSON.stringify([{ issuer: idp.issuer, jwksUri: idp.jwksUri, authorizedParties: ["https://app.acme.test"] }]),
      AUTHHUB_TOKEN_RATE_LIMIT_IP: "100000",
    });
    try {
      const ok = await clerkLike(server, await idp.sign("idp|member", { audience: null, claims: { azp: "https://app.acme.test" } }));
      expect(ok.status).toBe(200);
      expect(decodeJwt(ok.body.access_token)).toMatchObject({ sub: f.a.users.member, aud: "authhub" });
      // The audience alone still works.
      expect((await clerkLike(server, await idp.sign("idp|member"))).status).toBe(200);
      for (const [audience, azp] of [
        [null, "https://evil.example"],
        [null, undefined],
        ["someone-else", "https://evil.example"],
        [null, ["https://app.acme.test"]],
      ] as const) {
        const res = await clerkLike(server, await idp.sign("idp|member", { audience, claims: azp === undefined ? {} : { azp } }));
        expect(res.status).toBe(400);
        expect(res.body).toEqual({ error: "invalid_grant", error_description: "The token is not meant for AuthHub or is missing required claims." });
      }
    } finally {
      await server.close();
    }
  });

  test("without authorizedParties, azp counts for nothing", async () => {
    // Control: the same subject, with the audience, is exchanged by this server.
    expect((await clerkLike(srv, await idp.sign("idp|member", { claims: { azp: "https://app.acme.test" } }))).status).toBe(200);
    const res = await clerkLike(srv, await idp.sign("idp|member", { audience: null, claims: { azp: "https://app.acme.test" } }));
    expect(res.body).toEqual({ error: "invalid_grant", error_description: "The token is not meant for AuthHub or is missing required claims." });
  });

  test("a subject token dated in the future is not exchanged", async () => {
    const now = Math.floor(Date.now() / 1000);
    const res = await clerkLike(srv, await idp.sign("idp|member", { iat: now + 600, exp: now + 900 }));
    expect(res.body).toEqual({ error: "invalid_grant", error_description: "The token is issued in the future." });
  });
});

describe("refresh", () => {
  test("every use rotates; a retry within the grace period gets the same successor", async () => {
    const first = (await exchange("idp|member")).body;
    const second = await refresh(first.refresh_token);
    expect(second.status).toBe(200);
    expect(second.body.refresh_token).not.toBe(first.refresh_token);
    expect(decodeJwt(second.body.access_token).sid).toBe(decodeJwt(first.access_token).sid);
    const retry = await refresh(first.refresh_token);
    expect(retry.status).toBe(200);
    expect(retry.body.refresh_token).toBe(second.body.refresh_token);
    const third = await refresh(second.body.refresh_token);
    expect(third.status).toBe(200);
    expect(await whoami(third.body.access_token)).toBe("member@tenant-a.test");
    // Only hashes are stored: the token's SHA-256 is there, the token itself nowhere.
    const { createHash } = await import("node:crypto");
    const hashOf = (t: string) => createHash("sha256").update(t, "utf8").digest("hex");
    const stored = await db.owner.query<{ hash: string; row: string }>("select encode(token_hash, 'hex') as hash, r::text as row from authhub_private.refresh_tokens r");
    expect(stored.rows.map((r) => r.hash)).toContain(hashOf(first.refresh_token));
    expect(stored.rows.some((r) => r.row.includes(first.refresh_token) || r.row.includes(first.refresh_token.slice(3)))).toBe(false);
  });

  test("concurrent refreshes with one token all get the same successor", async () => {
    const first = (await exchange("idp|member")).body;
    const answers = await Promise.all(Array.from({ length: 5 }, () => refresh(first.refresh_token)));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(new Set(answers.map((r) => r.body.refresh_token)).size).toBe(1);
  });

  test("reuse of a rotated token after the grace period revokes the whole family", async () => {
    const first = (await exchange("idp|member")).body;
    const second = (await refresh(first.refresh_token)).body;
    // Eleven seconds later (the rotation moved back in time rather than the test waiting).
    await db.owner.query("update authhub_private.refresh_tokens set rotated_at = rotated_at - interval '11 seconds' where rotated_at is not null");
    const reuse = await refresh(first.refresh_token);
    expect(reuse.status).toBe(400);
    expect(reuse.body).toEqual({ error: "invalid_grant", error_description: "The refresh token is invalid, expired or revoked." });
    // The legitimate successor dies with the family.
    expect((await refresh(second.refresh_token)).body.error).toBe("invalid_grant");
    const family = await db.owner.query("select revoked_reason from authhub_private.refresh_families where id = $1", [decodeJwt(first.access_token).sid]);
    expect(family.rows).toEqual([{ revoked_reason: "reuse" }]);
  });

  test("a retry whose successor was already used counts as reuse", async () => {
    const first = (await exchange("idp|member")).body;
    const second = (await refresh(first.refresh_token)).body;
    expect((await refresh(second.refresh_token)).status).toBe(200);
    expect((await refresh(first.refresh_token)).body.error).toBe("invalid_grant");
  });

  test("refresh re-reads roles from the database", async () => {
    const first = (await exchange("idp|member")).body;
    await db.owner.query("update authhub.memberships set level = 'ORG_ADMIN' where user_id = $1 and organization_id = $2", [f.a.users.member, f.a.orgs.grandchild]);
    try {
      const next = await refresh(first.refresh_token);
      expect(decodeJwt(next.body.access_token).roles).toEqual(["ORG_ADMIN"]);
    } finally {
      await db.owner.query("update authhub.memberships set level = 'USER' where user_id = $1 and organization_id = $2", [f.a.users.member, f.a.orgs.grandchild]);
    }
  });

  test("a suspended user cannot refresh, and the login ends", async () => {
    const first = (await exchange("idp|tenant-admin")).body;
    await db.owner.query("update authhub.users set status = 'suspended' where id = $1", [f.a.users.tenantAdmin]);
    try {
      const res = await refresh(first.refresh_token);
      expect(res.body.error).toBe("invalid_grant");
      const family = await db.owner.query("select revoked_reason from authhub_private.refresh_families where id = $1", [decodeJwt(first.access_token).sid]);
      expect(family.rows).toEqual([{ revoked_reason: "inactive" }]);
    } finally {
      await db.owner.query("update authhub.users set status = 'active' where id = $1", [f.a.users.tenantAdmin]);
    }
  });

  test("malformed, unknown and expired refresh tokens are invalid_grant", async () => {
    expect((await refresh("not-a-token")).body.error).toBe("invalid_grant");
    expect((await refresh(`rt_${"A".repeat(43)}`)).body.error).toBe("invalid_grant");
    const first = (await exchange("idp|member")).body;
    await db.owner.query("update authhub_private.refresh_tokens set expires_at = now() - interval '1 second' where family_id = $1", [decodeJwt(first.access_token).sid]);
    expect((await refresh(first.refresh_token)).body.error).toBe("invalid_grant");
  });
});

test("signing out (revoke) ends the login's access tokens at once, not at their expiry", async () => {
  const first = (await exchange("idp|member")).body;
  expect(await whoami(first.access_token)).toBe("member@tenant-a.test");
  await request(srv.app).post("/auth/revoke").type("form").send({ token: first.refresh_token });
  expect(await whoami(first.access_token)).toBeNull();
});

describe("revoke", () => {
  const revoke = (params: Record<string, string>) => request(srv.app).post("/auth/revoke").type("form").send(params);

  test("revoking a refresh token ends its login; unknown tokens answer 200 too", async () => {
    const first = (await exchange("idp|member")).body;
    const second = (await refresh(first.refresh_token)).body;
    // Any token of the family revokes it (here the rotated one).
    expect((await revoke({ token: first.refresh_token, token_type_hint: "refresh_token" })).status).toBe(200);
    expect((await refresh(second.refresh_token)).body.error).toBe("invalid_grant");
    expect((await revoke({ token: `rt_${"B".repeat(43)}` })).status).toBe(200);
    const { rows } = await db.owner.query(
      "select actor, changed_columns from authhub.audit_events where table_name = 'refresh_families' and operation = 'UPDATE' and row_key ->> 'id' = $1",
      [decodeJwt(first.access_token).sid],
    );
    expect(rows).toEqual([{ actor: `user:${f.a.users.member}`, changed_columns: ["revoked_at", "revoked_reason"] }]);
  });

  test("access tokens are not revocable; a missing token is invalid_request", async () => {
    const first = (await exchange("idp|member")).body;
    expect((await revoke({ token: first.access_token })).body.error).toBe("unsupported_token_type");
    expect((await revoke({})).body.error).toBe("invalid_request");
  });
});

describe("signing keys", () => {
  test("a sibling service verifies AuthHub tokens with jose's remote JWKS and nothing else", async () => {
    const { access_token } = (await exchange("idp|member")).body;
    const jwks = createRemoteJWKSet(new URL(`${base}/.well-known/jwks.json`));
    const { payload } = await jwtVerify(access_token, jwks, { issuer: TEST_ISSUER, audience: "authhub" });
    expect(payload.sub).toBe(f.a.users.member);
  });

  test("rotation: old tokens stay valid until they expire, new tokens verify at once, the retired key drops out after", async () => {
    const before = (await exchange("idp|member")).body.access_token;
    const oldKid = decodeProtectedHeader(before).kid;
    const sibling = createRemoteJWKSet(new URL(`${base}/.well-known/jwks.json`), { cooldownDuration: 0 });
    await jwtVerify(before, sibling, { issuer: TEST_ISSUER, audience: "authhub" });

    // What `npx authhub keys rotate` does (the CLI test runs the command itself).
    const serverKey = await newSigningKeyMaterial(srv.masterKey);
    await db.owner.query("select * from authhub_private.rotate_signing_key($1, $2, $3, interval '15 minutes')", [
      serverKey.kid,
      JSON.stringify(serverKey.publicJwk),
      serverKey.privateKeyEncrypted,
    ]);
    // The verifier reloads on an unknown kid at most once a second.
    await new Promise((r) => setTimeout(r, 1100));

    const after = (await exchange("idp|member")).body.access_token;
    expect(decodeProtectedHeader(after).kid).toBe(serverKey.kid);
    expect(await whoami(after)).toBe("member@tenant-a.test");
    await jwtVerify(after, sibling, { issuer: TEST_ISSUER, audience: "authhub" });
    // The old token still works everywhere until it expires.
    expect(await whoami(before)).toBe("member@tenant-a.test");
    await jwtVerify(before, sibling, { issuer: TEST_ISSUER, audience: "authhub" });
    const kids = (await request(srv.app).get("/.well-known/jwks.json")).body.keys.map((k: { kid: string }) => k.kid);
    expect(kids).toEqual(expect.arrayContaining([oldKid, serverKey.kid]));

    // Past its publication period the retired key is gone from the JWKS, and a
    // server that reloads its keys no longer accepts what it signed.
    await db.owner.query("update authhub_private.signing_keys set publish_until = now() - interval '1 second' where kid = $1", [oldKid]);
    // The JWKS is read from the database at most once a second.
    await new Promise((r) => setTimeout(r, 1100));
    const later = (await request(srv.app).get("/.well-known/jwks.json")).body.keys.map((k: { kid: string }) => k.kid);
    expect(later).toEqual([serverKey.kid]);
    const fresh = await startTestServer(db);
    try {
      const res = await request(fresh.app).post("/graphql").set("Authorization", `Bearer ${before}`).send({ query: "{ currentUser { email } }" });
      expect(res.status).toBe(401);
    } finally {
      await fresh.close();
    }
    // Rotations are audited (global events) without the private part.
    const { rows } = await db.owner.query("select tenant_id, operation, new from authhub.audit_events where table_name = 'signing_keys' and row_key ->> 'kid' = $1", [
      serverKey.kid,
    ]);
    expect(rows).toHaveLength(1);
    expect(rows[0].tenant_id).toBe("00000000-0000-0000-0000-000000000000");
    expect(rows[0].new).not.toHaveProperty("private_key_encrypted");
  });
});

describe("abuse limits", () => {
  test("clients are counted by address: an IPv6 host by its /64, and X-Forwarded-For only from trusted proxies", async () => {
    const { clientAddress } = await import("../../server/auth/authApi.js");
    const at = (ip: string) => clientAddress({ ip, socket: { remoteAddress: "10.9.9.9" } } as never);
    expect(at("203.0.113.7")).toBe("203.0.113.7");
    expect(at("203.0.113.7:5678")).toBe("203.0.113.7");
    expect(at("::ffff:203.0.113.7")).toBe("203.0.113.7");
    expect(at("::FFFF:cb00:7107")).toBe("203.0.113.7");
    expect(at("2001:db8:1:2:aaaa:bbbb:cccc:dddd")).toBe("2001:db8:1:2::/64");
    expect(at("2001:db8:1:2::1")).toBe("2001:db8:1:2::/64");
    expect(at("2001:0DB8:0001:0002::ffff")).toBe("2001:db8:1:2::/64");
    expect(at("[2001:db8::1]:443")).toBe("2001:db8:0:0::/64");
    expect(at("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
    expect(at("::1")).toBe("0:0:0:0::/64");
    // Not an address (a proxy's odd header): the TCP peer counts instead.
    expect(at("01.02.03.04")).toBe("10.9.9.9");
    expect(at("not-an-ip")).toBe("10.9.9.9");

    // Through Express's own request object: X-Forwarded-For counts only when AUTHHUB_TRUST_PROXY names the peer.
    const viaProxy = async (trustProxy: Record<string, string>) => {
      const s = await startTestServer(db, trustProxy);
      try {
        const req = Object.assign(Object.create(s.app.request), {
          app: s.app,
          headers: { "x-forwarded-for": "198.51.100.9" },
          socket: { remoteAddress: "127.0.0.1" },
          connection: { remoteAddress: "127.0.0.1" },
        });
        return clientAddress(req);
      } finally {
        await s.close();
      }
    };
    expect(await viaProxy({})).toBe("127.0.0.1");
    expect(await viaProxy({ AUTHHUB_TRUST_PROXY: "loopback" })).toBe("198.51.100.9");
    expect(await viaProxy({ AUTHHUB_TRUST_PROXY: "10.0.0.0/8" })).toBe("127.0.0.1");
  });

  test("refreshes are counted per login, across rotations", async () => {
    const limited = await startTestServer(db, {
      AUTHHUB_TRUSTED_ISSUERS: JSON.stringify([{ issuer: idp.issuer, jwksUri: idp.jwksUri }]),
      AUTHHUB_TOKEN_RATE_LIMIT_SUBJECT: "3",
      AUTHHUB_TOKEN_RATE_LIMIT_IP: "1000",
    });
    try {
      const send = (params: Record<string, string>) => request(limited.app).post("/auth/token").type("form").send(params);
      // A new server fetches the provider's JWKS at its first exchange; while this
      // process is busy (another server's schema, a loaded machine) that fetch can
      // outlast jose's 5 s timeout, so it is made here, before anything is counted.
      for (let i = 0; i < 5; i++) {
        const warm = await send({ grant_type: TOKEN_EXCHANGE, subject_token: await idp.sign("idp|member"), subject_token_type: JWT_TYPE, tenant: f.a.slug });
        if (warm.body.error !== "invalid_grant") break;
      }
      const left = 60_000 - (Date.now() % 60_000);
      if (left < 5_000) await new Promise((r) => setTimeout(r, left + 100));
      let current = (await send({ grant_type: TOKEN_EXCHANGE, subject_token: await idp.sign("idp|tenant-admin"), subject_token_type: JWT_TYPE, tenant: f.a.slug })).body
        .refresh_token as string;
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) {
        const res = await send({ grant_type: "refresh_token", refresh_token: current });
        statuses.push(res.status);
        if (res.status === 200) current = res.body.refresh_token;
      }
      expect(statuses).toEqual([200, 200, 200, 429, 429]);
    } finally {
      await limited.close();
      await db.owner.query("delete from authhub_private.rate_limits");
    }
  });

  test("per subject and per client IP: 429 with Retry-After, counted across server instances", async () => {
    const env = {
      AUTHHUB_TRUSTED_ISSUERS: JSON.stringify([{ issuer: idp.issuer, jwksUri: idp.jwksUri }]),
      AUTHHUB_TOKEN_RATE_LIMIT_SUBJECT: "2",
      AUTHHUB_TOKEN_RATE_LIMIT_IP: "5",
    };
    const limited = await startTestServer(db, env);
    const other = await startTestServer(db, env);
    try {
      // Limits count per minute-long window: start well inside one.
      const left = 60_000 - (Date.now() % 60_000);
      if (left < 5_000) await new Promise((r) => setTimeout(r, left + 100));
      await db.owner.query("delete from authhub_private.rate_limits");
      const ask = async (subject: string, via = limited) =>
        request(via.app)
          .post("/auth/token")
          .type("form")
          .send({ grant_type: TOKEN_EXCHANGE, subject_token: await idp.sign(subject), subject_token_type: JWT_TYPE, tenant: f.a.slug });
      // Two servers, one count.
      expect((await ask("idp|org-admin")).status).toBe(200);
      expect((await ask("idp|org-admin", other)).status).toBe(200);
      const third = await ask("idp|org-admin");
      expect(third.status).toBe(429);
      expect(third.body.error).toBe("rate_limited");
      expect(Number(third.headers["retry-after"])).toBeGreaterThanOrEqual(1);
      // Another subject from the same address gets through until the address's limit.
      expect((await ask("idp|member")).status).toBe(200);
      expect((await ask("idp|member")).status).toBe(200);
      const overIp = await ask("idp|tenant-admin");
      expect(overIp.status).toBe(429);
      expect(overIp.headers["retry-after"]).toBeDefined();
    } finally {
      await limited.close();
      await other.close();
      await db.owner.query("delete from authhub_private.rate_limits");
    }
  });
});
