/**
 * Authentication at /graphql: the attacks a bearer token can carry, trusted
 * issuers' JWKS, gateway header mode, and what production mode hides.
 */
import { exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { randomBytes } from "node:crypto";
import request from "supertest";
import { TokenVerifier } from "../../server/auth/verify.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { cast, seedFixtures, type Fixtures } from "../helpers/fixtures.js";
import { startTestServer, TEST_ISSUER, type TestServer } from "../helpers/server.js";

let db: TestDatabase;
let f: Fixtures;
let srv: TestServer;
let jwksServer: http.Server;
let trustedIssuer: string;
let trustedKey: CryptoKey;

beforeAll(async () => {
  db = await createTestDatabase();
  f = await seedFixtures(db);
  // A local JWKS server stands in for a trusted identity provider.
  const pair = await generateKeyPair("RS256", { extractable: true });
  trustedKey = pair.privateKey;
  const publicJwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: "idp-key-1", alg: "RS256", use: "sig" };
  jwksServer = http.createServer((_req, res) => {
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify({ keys: [publicJwk] }));
  });
  await new Promise<void>((resolve) => jwksServer.listen(0, "127.0.0.1", resolve));
  const port = (jwksServer.address() as AddressInfo).port;
  trustedIssuer = `http://127.0.0.1:${port}`;
  srv = await startTestServer(db, {
    AUTHHUB_TRUSTED_ISSUERS: JSON.stringify([{ issuer: trustedIssuer, jwksUri: `${trustedIssuer}/.well-known/jwks.json`, audience: "authhub-partner" }]),
    AUTHHUB_GATEWAY_SECRET: "gateway-secret-for-tests",
  });
});
afterAll(async () => {
  await srv.close();
  await new Promise((resolve) => jwksServer.close(resolve));
  await db.close();
});

const WHOAMI = `{ currentUser { email } }`;

function post(headers: Record<string, string>, query = WHOAMI) {
  const req = request(srv.app).post("/graphql").set("Content-Type", "application/json").set("Accept", "application/json");
  for (const [k, v] of Object.entries(headers)) req.set(k, v);
  return req.send({ query });
}
const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

/** A token with AuthHub's claim shape, signed by `key` with `alg`. */
async function forge(
  key: CryptoKey | Uint8Array,
  alg: string,
  overrides: { claims?: Record<string, unknown>; issuer?: string; audience?: string; exp?: number; iat?: number; kid?: string; subject?: string } = {},
) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ tenant_id: f.a.id, roles: ["TENANT_ADMIN"], ...overrides.claims })
    .setProtectedHeader({ alg, kid: overrides.kid ?? srv.key.kid })
    .setSubject(overrides.subject ?? f.a.users.tenantAdmin)
    .setIssuer(overrides.issuer ?? TEST_ISSUER)
    .setAudience(overrides.audience ?? "authhub")
    .setIssuedAt(overrides.iat ?? now - 10)
    .setExpirationTime(overrides.exp ?? now + 300)
    .sign(key);
}

describe("bearer tokens", () => {
  test("a token minted by AuthHub is accepted", async () => {
    const res = await post(bearer(await srv.mint(cast(f, f.a).tenantAdmin)));
    expect(res.status).toBe(200);
    expect(res.body.data.currentUser.email).toBe("tenant-admin@tenant-a.test");
  });

  test.each([
    ["malformed", async () => "not.a.jwt"],
    ["signed with another key", async () => forge((await generateKeyPair("ES256")).privateKey, "ES256")],
    ["from an unknown issuer", async () => forge(srv.key.privateKey, "ES256", { issuer: "https://evil.example" })],
    ["for another audience", async () => forge(srv.key.privateKey, "ES256", { audience: "someone-else" })],
    ["expired", async () => forge(srv.key.privateKey, "ES256", { exp: Math.floor(Date.now() / 1000) - 60 })],
    ["issued 10 minutes in the future", async () => forge(srv.key.privateKey, "ES256", { iat: Math.floor(Date.now() / 1000) + 600, exp: Math.floor(Date.now() / 1000) + 900 })],
    ["with an unknown role only", async () => forge(srv.key.privateKey, "ES256", { claims: { roles: ["authhub_owner"] } })],
    ["with no roles", async () => forge(srv.key.privateKey, "ES256", { claims: { roles: [] } })],
    ["with a non-uuid tenant", async () => forge(srv.key.privateKey, "ES256", { claims: { tenant_id: "x' or 1=1" } })],
    [
      "with alg none",
      async () => {
        const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
        const now = Math.floor(Date.now() / 1000);
        return `${enc({ alg: "none", typ: "JWT" })}.${enc({ iss: TEST_ISSUER, aud: "authhub", sub: f.a.users.tenantAdmin, tenant_id: f.a.id, roles: ["SUPER_ADMIN"], iat: now, exp: now + 300 })}.`;
      },
    ],
    [
      "HS256 keyed with AuthHub's public key",
      async () => {
        const jwks = await db.auth.query("select authhub_private.public_signing_keys() as k");
        return forge(new TextEncoder().encode(JSON.stringify(jwks.rows[0].k)), "HS256");
      },
    ],
  ])("a token %s is refused with 401 unauthenticated", async (_name, make) => {
    const res = await post(bearer(await make()));
    expect(res.status).toBe(401);
    expect(res.body.errors[0].extensions.code).toBe("unauthenticated");
    expect(res.headers["www-authenticate"]).toMatch(/^Bearer/);
    expect(res.body.data).toBeUndefined();
  });

  test("claims cannot set the Postgres role or any other setting", async () => {
    // A tenant admin's token at USER level, carrying claims named like settings.
    const token = await forge(srv.key.privateKey, "ES256", {
      claims: { roles: ["USER"], role: "authhub_super_admin", "jwt.claims.tenant_id": f.b.id, search_path: "evil", statement_timeout: "0" },
    });
    const res = await post(bearer(token), `{ users { totalCount nodes { email } } tenants { totalCount nodes { slug } } }`);
    // Runs as authhub_user in tenant A: sees itself and its tenant, nothing more.
    expect(res.body.data).toEqual({
      users: { totalCount: 1, nodes: [{ email: "tenant-admin@tenant-a.test" }] },
      tenants: { totalCount: 1, nodes: [{ slug: "tenant-a" }] },
    });
  });

  test("a trusted issuer's token is verified against its JWKS and audience, and names the user by external id", async () => {
    await db.owner.query("update authhub.users set external_id = 'user_idp_admin' where id = $1", [f.a.users.tenantAdmin]);
    const trusted = (subject: string, more: { audience?: string; kid?: string } = {}) =>
      forge(trustedKey, "RS256", { issuer: trustedIssuer, audience: "authhub-partner", kid: "idp-key-1", subject, ...more });
    const res = await post(bearer(await trusted("user_idp_admin")));
    expect(res.body.data.currentUser.email).toBe("tenant-admin@tenant-a.test");
    expect((await post(bearer(await trusted("user_idp_admin", { audience: "authhub" })))).status).toBe(401);
    expect((await post(bearer(await trusted("user_idp_admin", { kid: "other" })))).status).toBe(401);
  });

  test("a trusted issuer cannot name an AuthHub user id, an unknown external id, or a suspended user", async () => {
    const trusted = (subject: string) => forge(trustedKey, "RS256", { issuer: trustedIssuer, audience: "authhub-partner", kid: "idp-key-1", subject });
    // The super admin has no external id: an AuthHub id in `sub` resolves to nobody.
    expect((await post(bearer(await trusted(f.superAdmin)))).status).toBe(401);
    expect((await post(bearer(await trusted("user_nobody")))).status).toBe(401);
    await db.owner.query("update authhub.users set external_id = 'user_idp_suspended' where id = $1", [f.a.users.suspended]);
    const res = await post(bearer(await trusted("user_idp_suspended")));
    expect(res.status).toBe(401);
    expect(res.body.errors[0].message).toBe("The token's user is not known to AuthHub.");
  });

  test("a trusted issuer cannot sign for AuthHub's own issuer", async () => {
    const token = await forge(trustedKey, "RS256", { issuer: TEST_ISSUER, kid: "idp-key-1" });
    expect((await post(bearer(token))).status).toBe(401);
  });

  test("a malformed Authorization header is refused rather than treated as anonymous", async () => {
    const res = await post({ Authorization: "Basic dXNlcjpwYXNz" });
    expect(res.status).toBe(401);
  });
});

describe("what a token may claim about time and keys", () => {
  test("a trusted issuer's token older than the issuer's maximum age is refused as a bearer token, whatever its expiry", async () => {
    await db.owner.query("update authhub.users set external_id = 'user_idp_admin' where id = $1", [f.a.users.tenantAdmin]);
    const now = Math.floor(Date.now() / 1000);
    const aged = await forge(trustedKey, "RS256", {
      issuer: trustedIssuer,
      audience: "authhub-partner",
      kid: "idp-key-1",
      subject: "user_idp_admin",
      iat: now - 2 * 3600,
      exp: now + 3600,
    });
    // The default maximum age is an hour.
    const refused = await post(bearer(aged));
    expect(refused.status).toBe(401);
    expect(refused.body.errors[0].message).toBe("The token is too old to be accepted.");
    // An issuer configured with a longer one accepts it.
    const lenient = await startTestServer(db, {
      AUTHHUB_TRUSTED_ISSUERS: JSON.stringify([
        { issuer: trustedIssuer, jwksUri: `${trustedIssuer}/.well-known/jwks.json`, audience: "authhub-partner", maxTokenAgeSeconds: 3 * 3600 },
      ]),
    });
    try {
      const res = await request(lenient.app).post("/graphql").set(bearer(aged)).send({ query: WHOAMI });
      expect(res.body.data.currentUser.email).toBe("tenant-admin@tenant-a.test");
    } finally {
      await lenient.close();
    }
  });

  test("a token dated in the future beyond the clock tolerance is refused, from AuthHub or a trusted issuer", async () => {
    const now = Math.floor(Date.now() / 1000);
    const own = await forge(srv.key.privateKey, "ES256", { iat: now + 600, exp: now + 900 });
    const trusted = await forge(trustedKey, "RS256", { issuer: trustedIssuer, audience: "authhub-partner", kid: "idp-key-1", subject: "user_idp_admin", iat: now + 600 });
    for (const token of [own, trusted]) {
      const res = await post(bearer(token));
      expect(res.status).toBe(401);
      expect(res.body.errors[0].message).toBe("The token is issued in the future.");
    }
    // Within the tolerance (a few seconds of clock difference) it is accepted.
    expect((await post(bearer(await forge(srv.key.privateKey, "ES256", { iat: now + 2 })))).body.data.currentUser.email).toBe("tenant-admin@tenant-a.test");
  });

  test("unknown kids reach the database at most once per cool-down, however many arrive at once", async () => {
    let loads = 0;
    const verifier = new TokenVerifier({
      issuer: TEST_ISSUER,
      trustedIssuers: [],
      // The app's own loader, counted: every call is a query.
      loadOwnKeys: async () => {
        loads++;
        const { rows } = await db.auth.query<{ jwk: Record<string, unknown> }>("select authhub_private.public_signing_keys() as jwk");
        return { keys: rows.map((r) => r.jwk) };
      },
      resolveExternalUser: async () => null,
      unknownKidCooldownMs: 60_000,
    });
    const randomKid = () => forge(srv.key.privateKey, "ES256", { kid: randomBytes(8).toString("hex") });
    const tokens = await Promise.all(Array.from({ length: 200 }, randomKid));
    const results = await Promise.allSettled(tokens.map((t) => verifier.verify(t)));
    expect(results.every((r) => r.status === "rejected")).toBe(true);
    // One load for the first of them (the set was empty); the rest waited for it.
    expect(loads).toBe(1);
    // More made-up kids within the cool-down are answered from memory.
    for (let i = 0; i < 20; i++) await expect(verifier.verify(await randomKid())).rejects.toThrow(/signature/);
    expect(loads).toBe(1);
    // The real kid still verifies.
    await expect(verifier.verify(await forge(srv.key.privateKey, "ES256"))).resolves.toMatchObject({ userId: f.a.users.tenantAdmin });
  });
});

describe("gateway header mode", () => {
  const as = (userId: string, tenantId: string, roles: string) => ({ "X-User-Id": userId, "X-Tenant-Id": tenantId, "X-Roles": roles });

  test("with the gateway token, the identity headers are trusted (and still confirmed by SQL)", async () => {
    const res = await post({ "X-Gateway-Token": "gateway-secret-for-tests", ...as(f.a.users.member, f.a.id, "USER") });
    expect(res.body.data.currentUser.email).toBe("member@tenant-a.test");
    const forged = await post({ "X-Gateway-Token": "gateway-secret-for-tests", ...as(f.a.users.member, f.a.id, "SUPER_ADMIN") }, `{ tenants { totalCount } }`);
    expect(forged.body.data.tenants.totalCount).toBe(1);
  });

  test("without the gateway token the identity headers are ignored", async () => {
    const res = await post(as(f.a.users.tenantAdmin, f.a.id, "TENANT_ADMIN"), `{ users { totalCount } }`);
    expect(res.body.errors[0].extensions.code).toBe("forbidden");
  });

  test("a wrong gateway token is refused", async () => {
    const res = await post({ "X-Gateway-Token": "guess", ...as(f.a.users.tenantAdmin, f.a.id, "TENANT_ADMIN") });
    expect(res.status).toBe(401);
  });

  test("gateway identity headers must be well-formed", async () => {
    const res = await post({ "X-Gateway-Token": "gateway-secret-for-tests", ...as("me", f.a.id, "USER") });
    expect(res.status).toBe(401);
  });
});

describe("production mode", () => {
  let prod: TestServer;
  beforeAll(async () => {
    // A function that fails the way a bug would: its message must not reach clients.
    await db.owner.query(`
      create function authhub.boom() returns int language plpgsql stable as $$
      begin raise exception 'select secret from authhub_private.signing_keys'; end $$;
      grant execute on function authhub.boom() to authhub_user;`);
    prod = await startTestServer(db, {
      NODE_ENV: "production",
      DATABASE_URL: db.ownerUrl,
      AUTHHUB_MASTER_KEY: randomBytes(32).toString("base64"),
    });
  });
  afterAll(async () => {
    await prod.close();
    await db.owner.query("drop function authhub.boom()");
  });

  test("no GraphiQL, no explain, and internal errors carry an id but no detail", async () => {
    expect((await request(prod.app).get("/graphiql").set("Accept", "text/html")).status).toBe(404);
    const token = await prod.mint(cast(f, f.a).member);
    const res = await request(prod.app)
      .post("/graphql")
      .set("Authorization", `Bearer ${token}`)
      .set("X-GraphQL-Explain", "plan,sql")
      .send({ query: `{ boom currentUser { email } }` });
    expect(res.body.extensions?.explain).toBeUndefined();
    expect(res.body.errors).toEqual([expect.objectContaining({ message: "An internal error occurred.", extensions: { code: "internal", errorId: expect.any(String) } })]);
    expect(res.text).not.toMatch(/secret|signing_keys|authhub_private/);
    expect(res.body.data.currentUser).toEqual({ email: "member@tenant-a.test" });
  });
});
