/**
 * The operator CLI against a real database: migrate, bootstrap (idempotent,
 * promotes, validates), token, whose output the server accepts, and the
 * signing-key and master-key rotations.
 */
import { jest } from "@jest/globals";
import { decodeProtectedHeader } from "jose";
import { randomBytes } from "node:crypto";
import request from "supertest";
import { runCli } from "../../server/cli.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestServer, TEST_ISSUER, type TestServer } from "../helpers/server.js";

let db: TestDatabase;
let env: Record<string, string>;

beforeAll(async () => {
  db = await createTestDatabase();
  env = {
    NODE_ENV: "test",
    DATABASE_URL: db.ownerUrl,
    AUTHHUB_MASTER_KEY: randomBytes(32).toString("base64"),
    AUTHHUB_ISSUER: TEST_ISSUER,
  };
});
afterAll(async () => {
  await db.close();
});

/** Runs the CLI, capturing what it writes. */
const cli = (...args: string[]) => cliWith({}, ...args);

async function cliWith(overrides: Record<string, string>, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const out = jest.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout += chunk.toString();
    return true;
  });
  const err = jest.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    stderr += chunk.toString();
    return true;
  });
  try {
    const code = await runCli(args, { ...env, ...overrides });
    return { code, stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

test("migrate reports an up-to-date database", async () => {
  const r = await cli("migrate", "--json");
  expect(r).toMatchObject({ code: 0 });
  expect(JSON.parse(r.stdout)).toEqual({ status: "ok" });
});

test("bootstrap creates a tenant and its admin, and is idempotent", async () => {
  const first = await cli("bootstrap", "--tenant", "acme", "--admin-email", "Admin@Acme.test", "--json");
  expect(first.code).toBe(0);
  const created = JSON.parse(first.stdout);
  expect(created).toMatchObject({ tenant: { slug: "acme", created: true }, user: { email: "admin@acme.test", level: "TENANT_ADMIN" } });
  const audited = async () =>
    (await db.owner.query("select table_name, operation, actor from authhub.audit_events where tenant_id = $1 order by table_name", [created.tenant.id])).rows;
  expect(await audited()).toEqual([
    { table_name: "tenants", operation: "INSERT", actor: "system:cli:bootstrap" },
    { table_name: "users", operation: "INSERT", actor: "system:cli:bootstrap" },
  ]);
  const again = JSON.parse((await cli("bootstrap", "--tenant", "acme", "--admin-email", "admin@acme.test", "--json")).stdout);
  expect(again).toMatchObject({ tenant: { id: created.tenant.id, created: false }, user: { id: created.user.id } });
  const { rows } = await db.owner.query("select count(*)::int as n from authhub.users where tenant_id = $1", [created.tenant.id]);
  expect(rows[0].n).toBe(1);
  // A rerun that changes nothing writes nothing (no touched rows in the audit log).
  expect(await audited()).toHaveLength(2);
});

test("bootstrap --super-admin promotes, and never demotes", async () => {
  await cli("bootstrap", "--tenant", "ops", "--admin-email", "root@ops.test", "--super-admin");
  const r = JSON.parse((await cli("bootstrap", "--tenant", "ops", "--admin-email", "root@ops.test", "--json")).stdout);
  expect(r.user.level).toBe("SUPER_ADMIN");
});

test("bad input is refused with a clear message and changes nothing", async () => {
  const r = await cli("bootstrap", "--tenant", "Not A Slug", "--admin-email", "x@y.test", "--json");
  expect(r.code).toBe(1);
  expect(JSON.parse(r.stderr)).toEqual({ error: { code: "invalid_input", message: expect.stringMatching(/slug/) } });
  const { rowCount } = await db.owner.query("select 1 from authhub.users where email = 'x@y.test'");
  expect(rowCount).toBe(0);
  const usage = await cli("bootstrap", "--tenant", "acme");
  expect(usage.code).toBe(2);
  expect(usage.stderr).toMatch(/--admin-email is required/);
  expect((await cli("frobnicate")).code).toBe(2);
});

describe("token", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer(db, { AUTHHUB_MASTER_KEY: env.AUTHHUB_MASTER_KEY! });
  });
  afterAll(async () => {
    await srv.close();
  });

  test("mints a short-lived token the server accepts, with roles from the database", async () => {
    const r = await cli("token", "--tenant", "acme", "--email", "ADMIN@acme.test", "--json");
    expect(r.code).toBe(0);
    const { token, roles, expires_at: expiresAt } = JSON.parse(r.stdout);
    expect(roles).toEqual(["TENANT_ADMIN"]);
    expect(new Date(expiresAt).getTime() - Date.now()).toBeLessThanOrEqual(900_000);
    const res = await request(srv.app).post("/graphql").set("Authorization", `Bearer ${token}`).send({ query: `{ currentUser { email level } currentTenant { slug } }` });
    expect(res.body.data).toEqual({ currentUser: { email: "admin@acme.test", level: "TENANT_ADMIN" }, currentTenant: { slug: "acme" } });
  });

  test("--org selects the active organization and the membership's level", async () => {
    const { rows } = await db.owner.query<{ id: string; tenant_id: string }>(
      "select u.id, u.tenant_id from authhub.users u join authhub.tenants t on t.id = u.tenant_id where t.slug = 'acme'",
    );
    const admin = rows[0]!;
    const org = await db.owner.query<{ id: string }>("insert into authhub.organizations (tenant_id, slug, name) values ($1, 'sales', 'Sales') returning id", [admin.tenant_id]);
    const user = await db.owner.query<{ id: string }>("insert into authhub.users (tenant_id, email) values ($1, 'lead@acme.test') returning id", [admin.tenant_id]);
    await db.owner.query("insert into authhub.memberships (tenant_id, organization_id, user_id, level) values ($1, $2, $3, 'ORG_ADMIN')", [
      admin.tenant_id,
      org.rows[0]!.id,
      user.rows[0]!.id,
    ]);
    const r = JSON.parse((await cli("token", "--tenant", "acme", "--email", "lead@acme.test", "--org", "sales", "--json")).stdout);
    expect(r).toMatchObject({ roles: ["ORG_ADMIN"], org_id: org.rows[0]!.id });
    const missing = await cli("token", "--tenant", "acme", "--email", "lead@acme.test", "--org", "nowhere");
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/not an active member of organization nowhere/);
  });

  test("refuses unknown and suspended users without minting anything", async () => {
    expect((await cli("token", "--tenant", "acme", "--email", "nobody@acme.test")).code).toBe(2);
    await db.owner.query("update authhub.users set status = 'suspended' where email = 'lead@acme.test'");
    const r = await cli("token", "--tenant", "acme", "--email", "lead@acme.test", "--json");
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
  });
});

describe("apikey", () => {
  test("create, list, rotate and revoke, with the secret shown once; bad input is refused", async () => {
    const created = await cli("apikey", "create", "--tenant", "acme", "--scopes", "user:read,org:read", "--rate", "120", "--name", "CRM", "--json");
    expect(created.code).toBe(0);
    const key = JSON.parse(created.stdout);
    expect(key).toMatchObject({
      key_id: expect.stringMatching(/^ak_[0-9A-Za-z]{22}$/),
      secret: expect.stringMatching(/^sk_[0-9A-Za-z]{43}$/),
      scopes: ["org:read", "user:read"],
      rate_limit_per_minute: 120,
    });
    const listed = await cli("apikey", "list", "--tenant", "acme", "--json");
    expect(JSON.parse(listed.stdout).keys).toEqual([expect.objectContaining({ key_id: key.key_id, name: "CRM", revoked_at: null })]);
    expect(listed.stdout).not.toContain(key.secret);
    const rotated = JSON.parse((await cli("apikey", "rotate", "--key", key.key_id, "--grace", "60", "--json")).stdout);
    expect(rotated.secret).not.toBe(key.secret);
    expect((await cli("apikey", "revoke", "--key", key.key_id, "--json")).code).toBe(0);
    const after = JSON.parse((await cli("apikey", "list", "--tenant", "acme", "--json")).stdout).keys[0];
    expect(after.revoked_at).not.toBeNull();
    const audited = await db.owner.query("select distinct actor from authhub.audit_events where table_name in ('api_keys', 'api_key_secrets') order by 1");
    expect(audited.rows.map((r) => r.actor)).toEqual(["system:cli:apikey-create", "system:cli:apikey-revoke", "system:cli:apikey-rotate"]);

    const bad = await cli("apikey", "create", "--tenant", "acme", "--scopes", "nope:nope", "--json");
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stderr).error.code).toBe("invalid_input");
    expect((await cli("apikey", "create", "--tenant", "acme", "--scopes", "user:read", "--rate", "0")).code).toBe(2);
    expect((await cli("apikey", "revoke", "--key", "ak_nope")).code).toBe(2);
  });
});

test("webhook create prints the endpoint's id, URL path and secret (given or new)", async () => {
  const made = JSON.parse((await cli("webhook", "create", "--tenant", "acme", "--issuer", "https://clerk.acme.test", "--json")).stdout);
  expect(made).toMatchObject({ id: expect.any(String), path: `/webhooks/clerk/${made.id}`, secret: expect.stringMatching(/^whsec_/) });
  const given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  expect(JSON.parse((await cli("webhook", "create", "--tenant", "acme", "--issuer", "https://clerk.acme.test", "--secret", given, "--json")).stdout).secret).toBe(given);
  const bad = await cli("webhook", "create", "--tenant", "acme", "--issuer", "https://clerk.acme.test", "--secret", "not-a-secret", "--json");
  expect(bad.code).toBe(1);
  expect(JSON.parse(bad.stderr).error.code).toBe("invalid_input");
});

/** Runs last: it changes the signing keys and, finally, the master key the earlier tests use. */
describe("keys", () => {
  const kidOf = async (overrides: Record<string, string> = {}) => {
    const r = await cliWith(overrides, "token", "--tenant", "acme", "--email", "admin@acme.test", "--json");
    expect(r.code).toBe(0);
    return decodeProtectedHeader(JSON.parse(r.stdout).token).kid;
  };
  const published = async () => (await db.auth.query<{ kid: string }>("select jwk ->> 'kid' as kid from authhub_private.public_signing_keys() jwk")).rows.map((r) => r.kid);

  test("rotate: a new key signs at once; the old one stays published a day (the longest token), or not at all with --retire-now", async () => {
    const first = await kidOf();
    const r = await cli("keys", "rotate", "--json");
    expect(r.code).toBe(0);
    const rotated = JSON.parse(r.stdout);
    expect(rotated.retired.kid).toBe(first);
    const until = new Date(rotated.retired.published_until).getTime() - Date.now();
    expect(until).toBeGreaterThan(86_000_000);
    expect(until).toBeLessThanOrEqual((86_400 + 60) * 1000);
    expect(await kidOf()).toBe(rotated.kid);
    expect(await published()).toEqual(expect.arrayContaining([first, rotated.kid]));

    const emergency = JSON.parse((await cli("keys", "rotate", "--retire-now", "--json")).stdout);
    expect(emergency.retired.kid).toBe(rotated.kid);
    const now = await published();
    expect(now).not.toContain(rotated.kid);
    expect(now).toEqual(expect.arrayContaining([first, emergency.kid]));
    const audited = await db.owner.query("select actor from authhub.audit_events where table_name = 'signing_keys' and row_key ->> 'kid' = $1", [emergency.kid]);
    expect(audited.rows).toEqual([{ actor: "system:cli:keys-rotate" }]);
  });

  test("rewrap: after a master-key rotation, secrets move to the new key; until then the old one must stay configured", async () => {
    const next = { AUTHHUB_MASTER_KEY: `2:${randomBytes(32).toString("base64")}` };
    const withoutOld = await cliWith(next, "token", "--tenant", "acme", "--email", "admin@acme.test");
    expect(withoutOld.code).toBe(1);
    expect(withoutOld.stderr).toMatch(/AUTHHUB_MASTER_KEY_PREVIOUS/);
    const both = { ...next, AUTHHUB_MASTER_KEY_PREVIOUS: env.AUTHHUB_MASTER_KEY! };
    const r = await cliWith(both, "keys", "rewrap", "--json");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ version: 2 });
    expect(JSON.parse(r.stdout).rewrapped).toBeGreaterThanOrEqual(3);
    const { rows } = await db.owner.query(
      `select private_key_encrypted as c from authhub_private.signing_keys
       union all select secret_encrypted from authhub_private.api_key_secrets
       union all select secret_encrypted from authhub_private.webhook_secrets`,
    );
    // Signing keys, API-key secrets and webhook secrets alike.
    expect(rows.length).toBeGreaterThanOrEqual(6);
    expect(rows.every((row) => row.c.startsWith("v2."))).toBe(true);
    // Nothing needs the old key any more.
    expect(await kidOf(next)).toBeDefined();
    expect(JSON.parse((await cliWith(next, "keys", "rewrap", "--json")).stdout).rewrapped).toBe(0);
  });
});
