/**
 * The Auth API's SQL (issue 5), from SQL: session, rate-limit and signing-key
 * state is out of every request role's reach and reached by the server's login
 * role only through definer functions; those functions decide who gets a
 * token, at which level, and how refresh tokens rotate, are replayed, and are
 * revoked on reuse; the cleanup job removes what has ended.
 */
import { createHash, randomBytes } from "node:crypto";
import { asActor, attemptAs, type Actor, type TestDatabase } from "../helpers/db.js";
import { cast, useFixtureDatabase, type Fixtures } from "../helpers/fixtures.js";
import { runTask } from "../helpers/worker.js";

let db: TestDatabase;
let f: Fixtures;

useFixtureDatabase(async (database, fixtures) => {
  db = database;
  f = fixtures;
  await db.owner.query("update authhub.users set external_id = 'ext-member' where id = $1", [f.a.users.member]);
  await db.owner.query("update authhub.users set external_id = 'ext-org-admin' where id = $1", [f.a.users.orgAdmin]);
  await db.owner.query("update authhub.users set external_id = 'ext-suspended' where id = $1", [f.a.users.suspended]);
  await db.owner.query("update authhub.users set external_id = 'ext-tenant-admin' where id = $1", [f.a.users.tenantAdmin]);
  await db.owner.query("update authhub.users set external_id = 'ext-member' where id = $1", [f.b.users.member]);
});

const hash = (token: string) => createHash("sha256").update(token).digest();
const newToken = () => `rt_${randomBytes(32).toString("base64url")}`;

interface Session {
  tenant_id: string;
  user_id: string;
  organization_id: string | null;
  level: string;
  family_id: string;
}

const IDP = "https://idp.test";

/** As the server's login role (no request role): start a session. */
async function startSession(tenant: string, external: string, organization: string | null = null, options: { issuer?: string; trusted?: string[] } = {}) {
  const token = newToken();
  const { rows } = await db.auth.query<Session>("select * from authhub_private.start_session($1, $2, $3, $4, $5, $6, interval '1 day', interval '30 days', 'trace-sql')", [
    tenant,
    organization,
    external,
    options.issuer ?? IDP,
    options.trusted ?? [IDP],
    hash(token),
  ]);
  return { session: rows[0] ?? null, token };
}

async function rotate(token: string, successor: string | string[], options: { grace?: string; trusted?: string[] } = {}) {
  const candidates = (Array.isArray(successor) ? successor : [successor]).map(hash);
  const { rows } = await db.auth.query<Session & { outcome: string; successor: number | null }>(
    "select * from authhub_private.rotate_refresh_token($1, $2, $3, interval '1 day', $4::interval, 'trace-sql')",
    [hash(token), candidates, options.trusted ?? [IDP], options.grace ?? "10 seconds"],
  );
  return rows[0]!;
}

describe("reach", () => {
  const tables = ["authhub_private.refresh_families", "authhub_private.refresh_tokens", "authhub_private.rate_limits", "authhub_private.signing_keys"];
  const functions = [
    "authhub_private.start_session('tenant-a', null, 'ext-member', 'x', '{x}', '\\x00'::bytea, '1 day', '1 day', null)",
    "authhub_private.refresh_token_family('\\x00'::bytea)",
    "authhub_private.rotate_refresh_token('\\x00'::bytea, '{}'::bytea[], '{x}', '1 day', '10 seconds', null)",
    "authhub_private.revoke_refresh_token('\\x00'::bytea, null)",
    "authhub_private.user_id_for_external_id(gen_random_uuid(), 'x', 'x', '{x}')",
    "authhub_private.active_signing_key()",
    "authhub_private.purge_ended_sessions(10)",
  ];

  test("no request role reads or writes session, rate-limit or key state, or calls the session functions", async () => {
    const actors: Actor[] = ["anonymous", cast(f, f.a).member, cast(f, f.a).tenantAdmin, cast(f, f.a).superAdmin];
    for (const actor of actors) {
      for (const table of tables) {
        expect([table, await attemptAs(db, actor, `select 1 from ${table}`)]).toEqual([table, "42501"]);
        expect([table, await attemptAs(db, actor, `delete from ${table}`)]).toEqual([table, "42501"]);
      }
      for (const fn of functions) expect([fn, await attemptAs(db, actor, `select ${fn}`)]).toEqual([fn, "42501"]);
    }
  });

  test("the login role reaches the tables only through the functions, except the counters it keeps", async () => {
    for (const table of tables.filter((t) => t !== "authhub_private.rate_limits")) {
      await expect(db.auth.query(`select 1 from ${table}`)).rejects.toMatchObject({ code: "42501" });
    }
    // The cleanup belongs to the worker, the key rotation to the owner (CLI).
    await expect(db.auth.query("select authhub_private.purge_ended_sessions(10)")).rejects.toMatchObject({ code: "42501" });
    await expect(db.auth.query("select authhub_private.rotate_signing_key('k', '{}', 'x', '1 day')")).rejects.toMatchObject({ code: "42501" });
    // Rate-limit counters are the one table it writes directly (server/rateLimit.ts).
    await db.auth.query("insert into authhub_private.rate_limits (key, points, expire) values ('test:x', 1, 0)");
    await db.auth.query("delete from authhub_private.rate_limits where key = 'test:x'");
    // The active key's ciphertext is all it gets (the master key that opens it is the server's).
    const { loadActiveSigningKey } = await import("../../server/auth/signingKeys.js");
    const { parseMasterKey } = await import("../../server/auth/masterKey.js");
    const key = await loadActiveSigningKey(db.owner, parseMasterKey(randomBytes(32).toString("base64")));
    const { rows } = await db.auth.query("select * from authhub_private.active_signing_key()");
    expect(rows).toHaveLength(1);
    expect(Object.keys(rows[0]).sort()).toEqual(["kid", "private_key_encrypted"]);
    expect(rows[0].kid).toBe(key.kid);
    await expect(db.auth.query("select * from authhub_private.signing_keys")).rejects.toMatchObject({ code: "42501" });
  });
});

describe("token_level", () => {
  const level = async (tenant: string, user: string, org: string | null) =>
    (await db.owner.query("select authhub_private.token_level($1, $2, $3) as level", [tenant, user, org])).rows[0].level as string | null;

  test("the user's level, ORG_ADMIN where they administer, nothing for the inactive or non-members", async () => {
    expect(await level(f.a.id, f.a.users.tenantAdmin, null)).toBe("TENANT_ADMIN");
    expect(await level(f.a.id, f.a.users.member, null)).toBe("USER");
    expect(await level(f.a.id, f.a.users.member, f.a.orgs.grandchild)).toBe("USER");
    expect(await level(f.a.id, f.a.users.orgAdmin, null)).toBe("ORG_ADMIN");
    expect(await level(f.a.id, f.a.users.orgAdmin, f.a.orgs.child)).toBe("ORG_ADMIN");
    // Not a member of the grandchild (administers it through the child, but holds no membership there).
    expect(await level(f.a.id, f.a.users.orgAdmin, f.a.orgs.grandchild)).toBeNull();
    expect(await level(f.a.id, f.a.users.member, f.a.orgs.sibling)).toBeNull();
    expect(await level(f.a.id, f.a.users.suspended, null)).toBeNull();
    // Across tenants: a user of A named with B's tenant, or with B's organization.
    expect(await level(f.b.id, f.a.users.member, null)).toBeNull();
    expect(await level(f.a.id, f.a.users.member, f.b.orgs.grandchild)).toBeNull();
  });
});

describe("start_session", () => {
  test("maps the external id within the named tenant (slug or id), with an organization (slug or id)", async () => {
    const a = await startSession("tenant-a", "ext-member");
    expect(a.session).toMatchObject({ tenant_id: f.a.id, user_id: f.a.users.member, organization_id: null, level: "USER" });
    // The same external id names another user in tenant B: tenants are separate namespaces.
    const b = await startSession(f.b.id, "ext-member");
    expect(b.session).toMatchObject({ tenant_id: f.b.id, user_id: f.b.users.member });
    const org = await startSession("tenant-a", "ext-org-admin", "child");
    expect(org.session).toMatchObject({ organization_id: f.a.orgs.child, level: "ORG_ADMIN" });
    const orgById = await startSession("tenant-a", "ext-org-admin", f.a.orgs.child);
    expect(orgById.session).toMatchObject({ organization_id: f.a.orgs.child });
  });

  test("answers nothing, and stores nothing, for any refusal", async () => {
    const count = async () => (await db.owner.query("select count(*)::int as n from authhub_private.refresh_families")).rows[0].n as number;
    const before = await count();
    for (const [tenant, external, org] of [
      ["tenant-a", "ext-nobody", null],
      ["tenant-a", "ext-suspended", null],
      ["no-such-tenant", "ext-member", null],
      ["tenant-a", "ext-member", "sibling"],
      ["tenant-a", "ext-member", f.b.orgs.grandchild],
      ["tenant-a", "ext-member", "no-such-org"],
      ["tenant-a", "", null],
      ["Robert'); drop table authhub.users; --", "ext-member", null],
    ] as [string, string, string | null][]) {
      expect([tenant, external, org, (await startSession(tenant, external, org)).session]).toEqual([tenant, external, org, null]);
    }
    await db.owner.query("update authhub.tenants set status = 'suspended' where id = $1", [f.b.id]);
    try {
      expect((await startSession("tenant-b", "ext-member")).session).toBeNull();
    } finally {
      await db.owner.query("update authhub.tenants set status = 'active' where id = $1", [f.b.id]);
    }
    expect(await count()).toBe(before);
  });
});

describe("rotate_refresh_token", () => {
  test("rotated, then replayed within the grace period with the same successor only", async () => {
    const { token, session } = await startSession("tenant-a", "ext-member");
    const successor = newToken();
    expect(await rotate(token, successor)).toMatchObject({ outcome: "rotated", user_id: f.a.users.member, family_id: session!.family_id, level: "USER" });
    expect((await rotate(token, successor)).outcome).toBe("replayed");
    // Within the grace period, a successor this server cannot derive (another
    // master key) is refused without ending the login...
    expect((await rotate(token, newToken())).outcome).toBe("invalid");
    expect((await rotate(successor, newToken())).outcome).toBe("rotated");
    // ...and once the grace period is over, the spent token is reuse.
    expect((await rotate(token, newToken(), { grace: "0 seconds" })).outcome).toBe("reuse");
  });

  test("reuse after the grace period revokes the family; so does a retry after the successor was used", async () => {
    const first = await startSession("tenant-a", "ext-member");
    const second = newToken();
    await rotate(first.token, second);
    expect((await rotate(first.token, second, { grace: "0 seconds" })).outcome).toBe("reuse");
    const { rows } = await db.owner.query("select revoked_reason from authhub_private.refresh_families where id = $1", [first.session!.family_id]);
    expect(rows).toEqual([{ revoked_reason: "reuse" }]);

    const other = await startSession("tenant-a", "ext-member");
    const next = newToken();
    await rotate(other.token, next);
    expect((await rotate(next, newToken())).outcome).toBe("rotated");
    expect((await rotate(other.token, next)).outcome).toBe("reuse");
  });

  test("the user's current standing decides: suspension revokes, a lost membership revokes, the level is re-read", async () => {
    const org = await startSession("tenant-a", "ext-org-admin", "child");
    await db.owner.query("update authhub.memberships set level = 'USER' where user_id = $1 and organization_id = $2", [f.a.users.orgAdmin, f.a.orgs.child]);
    try {
      const next = newToken();
      expect(await rotate(org.token, next)).toMatchObject({ outcome: "rotated", level: "USER" });
      await db.owner.query("delete from authhub.memberships where user_id = $1 and organization_id = $2", [f.a.users.orgAdmin, f.a.orgs.child]);
      expect((await rotate(next, newToken())).outcome).toBe("inactive");
    } finally {
      await db.owner.query(
        "insert into authhub.memberships (tenant_id, organization_id, user_id, level) values ($1, $2, $3, 'ORG_ADMIN') on conflict (tenant_id, organization_id, user_id) do update set level = 'ORG_ADMIN'",
        [f.a.id, f.a.orgs.child, f.a.users.orgAdmin],
      );
    }
  });

  test("an expired family or token, or a revoked one, is invalid; deleting the user ends everything", async () => {
    const expired = await startSession("tenant-a", "ext-member");
    await db.owner.query("update authhub_private.refresh_families set expires_at = now() - interval '1 second' where id = $1", [expired.session!.family_id]);
    expect((await rotate(expired.token, newToken())).outcome).toBe("invalid");
    const revoked = await startSession("tenant-a", "ext-member");
    expect((await db.auth.query("select authhub_private.revoke_refresh_token($1, null) as r", [hash(revoked.token)])).rows[0].r).toBe(true);
    expect((await db.auth.query("select authhub_private.revoke_refresh_token($1, null) as r", [hash(revoked.token)])).rows[0].r).toBe(false);
    expect((await rotate(revoked.token, newToken())).outcome).toBe("invalid");

    const user = (
      await db.owner.query<{ id: string }>("insert into authhub.users (tenant_id, email, external_id) values ($1, 'leaver@tenant-a.test', 'ext-leaver') returning id", [f.a.id])
    ).rows[0]!.id;
    const leaver = await startSession("tenant-a", "ext-leaver");
    await db.owner.query("delete from authhub.users where id = $1", [user]);
    expect((await rotate(leaver.token, newToken())).outcome).toBe("invalid");
  });
});

describe("identity: issuer and external id", () => {
  const OTHER = "https://other-idp.test";

  test("with one trusted issuer, an unbound external id is its; with several, only the recorded issuer speaks for a user", async () => {
    expect((await startSession("tenant-a", "ext-member")).session).not.toBeNull();
    // Two issuers trusted, the user bound to none: neither may sign in as them.
    expect((await startSession("tenant-a", "ext-member", null, { trusted: [IDP, OTHER] })).session).toBeNull();
    expect((await startSession("tenant-a", "ext-member", null, { issuer: OTHER, trusted: [IDP, OTHER] })).session).toBeNull();
    await db.owner.query("update authhub.users set external_issuer = $2 where id = $1", [f.a.users.member, IDP]);
    try {
      expect((await startSession("tenant-a", "ext-member", null, { trusted: [IDP, OTHER] })).session).not.toBeNull();
      expect((await startSession("tenant-a", "ext-member", null, { issuer: OTHER, trusted: [IDP, OTHER] })).session).toBeNull();
      // An issuer that is not trusted at all never speaks, recorded or not.
      expect((await startSession("tenant-a", "ext-member", null, { trusted: [OTHER] })).session).toBeNull();
      const resolve = (issuer: string, trusted: string[]) =>
        db.auth.query("select authhub_private.user_id_for_external_id($1, $2, 'ext-member', $3) as id", [f.a.id, issuer, trusted]).then((r) => r.rows[0].id);
      expect(await resolve(IDP, [IDP, OTHER])).toBe(f.a.users.member);
      expect(await resolve(OTHER, [IDP, OTHER])).toBeNull();
    } finally {
      await db.owner.query("update authhub.users set external_issuer = null where id = $1", [f.a.users.member]);
    }
  });

  test("re-pointing a user's issuer takes a tenant admin", async () => {
    const custodian = (
      await db.owner.query<{ id: string }>("insert into authhub.roles (tenant_id, key, name, level) values ($1, 'custodian', 'Custodian', 'TENANT_ADMIN') returning id", [f.a.id])
    ).rows[0]!.id;
    await db.owner.query("insert into authhub.role_permissions (tenant_id, role_id, permission_key) values ($1, $2, 'user:read'), ($1, $2, 'user:write')", [f.a.id, custodian]);
    await db.owner.query("insert into authhub.role_assignments (tenant_id, user_id, role_id) values ($1, $2, $3)", [f.a.id, f.a.users.outsider, custodian]);
    try {
      const sql = "update authhub.users set external_issuer = 'https://evil.test' where id = $1";
      // A user:write holder can rename the member but not re-point its identity.
      expect(await attemptAs(db, cast(f, f.a).outsider, "update authhub.users set display_name = 'Renamed' where id = $1", [f.a.users.member])).toBe(1);
      expect(await attemptAs(db, cast(f, f.a).outsider, sql, [f.a.users.member])).toBe("42501");
      expect(await attemptAs(db, cast(f, f.a).tenantAdmin, sql, [f.a.users.member])).toBe(1);
      expect(await attemptAs(db, cast(f, f.b).tenantAdmin, sql, [f.a.users.member])).toBe(0);
    } finally {
      await db.owner.query("delete from authhub.roles where id = $1", [custodian]);
    }
  });

  test("a refresh holds only while the user keeps the identity and the issuer stays trusted", async () => {
    const unlinked = await startSession("tenant-a", "ext-org-admin");
    await db.owner.query("update authhub.users set external_id = 'ext-org-admin-2' where id = $1", [f.a.users.orgAdmin]);
    try {
      expect((await rotate(unlinked.token, newToken())).outcome).toBe("inactive");
    } finally {
      await db.owner.query("update authhub.users set external_id = 'ext-org-admin' where id = $1", [f.a.users.orgAdmin]);
    }
    // An issuer this server does not trust now is refused, but the login is not
    // ended for it (a misconfigured replica must not sign everyone out).
    const distrusted = await startSession("tenant-a", "ext-org-admin");
    expect((await rotate(distrusted.token, newToken(), { trusted: ["https://someone-else.test"] })).outcome).toBe("invalid");
    expect((await rotate(distrusted.token, newToken(), { trusted: [] })).outcome).toBe("invalid");
    expect((await rotate(distrusted.token, newToken())).outcome).toBe("rotated");
    // A user bound to another issuer than the login's: the identity changed, the login ends.
    const rebound = await startSession("tenant-a", "ext-org-admin");
    await db.owner.query("update authhub.users set external_issuer = 'https://other.test' where id = $1", [f.a.users.orgAdmin]);
    try {
      expect((await rotate(rebound.token, newToken())).outcome).toBe("inactive");
    } finally {
      await db.owner.query("update authhub.users set external_issuer = null where id = $1", [f.a.users.orgAdmin]);
    }
  });
});

describe("sessions end access at once", () => {
  test("a revoked login's sid makes the user inactive to every policy", async () => {
    const { session, token } = await startSession("tenant-a", "ext-member");
    const asSession = { ...cast(f, f.a).member, loginId: session!.family_id };
    const seen = () => attemptAs(db, asSession, "select 1 from authhub.users where id = $1", [f.a.users.member]);
    expect(await seen()).toBe(1);
    await db.auth.query("select authhub_private.revoke_refresh_token($1, null)", [hash(token)]);
    expect(await seen()).toBe(0);
    // Other sessions of the same user, and tokens without a login, are unaffected.
    const other = await startSession("tenant-a", "ext-member");
    expect(await attemptAs(db, { ...cast(f, f.a).member, loginId: other.session!.family_id }, "select 1 from authhub.users where id = $1", [f.a.users.member])).toBe(1);
    expect(await attemptAs(db, { ...cast(f, f.a).member, sessionId: "cli-token" }, "select 1 from authhub.users where id = $1", [f.a.users.member])).toBe(1);
    // A login that no longer exists (deleted with its organization, or cleaned up) has ended too.
    expect(await attemptAs(db, { ...cast(f, f.a).member, loginId: "00000000-0000-4000-8000-000000000000" }, "select 1 from authhub.users where id = $1", [f.a.users.member])).toBe(
      0,
    );
    expect(await attemptAs(db, { ...cast(f, f.a).member, loginId: "not-a-uuid" }, "select 1 from authhub.users where id = $1", [f.a.users.member])).toBe(0);
  });

  test("a tenant admin's ended login loses its tenant-wide permissions too, and the decision API says no", async () => {
    const { session, token } = await startSession("tenant-a", "ext-tenant-admin");
    const asSession = { ...cast(f, f.a).tenantAdmin, loginId: session!.family_id };
    const users = () => attemptAs(db, asSession, "select 1 from authhub.users");
    const decide = () => asActor(db, asSession, async (c) => (await c.query("select authhub_private.authorize('user:write', null) as ok")).rows[0].ok);
    expect(await users()).toBeGreaterThan(5);
    expect(await decide()).toBe(true);
    await db.auth.query("select authhub_private.revoke_refresh_token($1, null)", [hash(token)]);
    expect(await users()).toBe(0);
    expect(await decide()).toBe(false);
    expect(await attemptAs(db, asSession, "update authhub.users set display_name = 'x' where id = $1", [f.a.users.member])).toBe(0);
  });
});

test("logins and revocations are audited with the user and the request's trace", async () => {
  const { session, token } = await startSession("tenant-a", "ext-member");
  await db.auth.query("select authhub_private.revoke_refresh_token($1, 'trace-revoke')", [hash(token)]);
  const { rows } = await db.owner.query(
    "select operation, actor, actor_user_id, trace_id from authhub.audit_events where table_name = 'refresh_families' and row_key ->> 'id' = $1 order by id",
    [session!.family_id],
  );
  expect(rows).toEqual([
    { operation: "INSERT", actor: `user:${f.a.users.member}`, actor_user_id: f.a.users.member, trace_id: "trace-sql" },
    { operation: "UPDATE", actor: `user:${f.a.users.member}`, actor_user_id: f.a.users.member, trace_id: "trace-revoke" },
  ]);
});

test("a retry across a master-key rotation finds its successor among the candidates", async () => {
  const { token } = await startSession("tenant-a", "ext-member");
  const underOld = newToken();
  expect((await rotate(token, underOld)).outcome).toBe("rotated");
  // After the rotation the server's current key derives another successor; the old one is second.
  const retry = await rotate(token, [newToken(), underOld]);
  expect(retry).toMatchObject({ outcome: "replayed", successor: 2 });
});

test("the auth__cleanup job removes ended logins, as the worker", async () => {
  const live = await startSession("tenant-a", "ext-member");
  const expired = await startSession("tenant-a", "ext-member");
  const revokedLongAgo = await startSession("tenant-a", "ext-member");
  await db.owner.query("update authhub_private.refresh_families set expires_at = now() - interval '2 days' where id = $1", [expired.session!.family_id]);
  await db.owner.query("update authhub_private.refresh_families set revoked_at = now() - interval '2 days', revoked_reason = 'revoked' where id = $1", [
    revokedLongAgo.session!.family_id,
  ]);
  await runTask(db, "auth__cleanup");
  const { rows } = await db.owner.query<{ id: string }>("select id from authhub_private.refresh_families where id = any($1)", [
    [live.session!.family_id, expired.session!.family_id, revokedLongAgo.session!.family_id],
  ]);
  expect(rows.map((r) => r.id)).toEqual([live.session!.family_id]);
  const tokens = await db.owner.query("select count(*)::int as n from authhub_private.refresh_tokens where family_id = any($1)", [
    [expired.session!.family_id, revokedLongAgo.session!.family_id],
  ]);
  expect(tokens.rows[0].n).toBe(0);
  const audited = await db.owner.query(
    "select distinct actor from authhub.audit_events where table_name = 'refresh_families' and operation = 'DELETE' and row_key ->> 'id' = any($1)",
    [[expired.session!.family_id, revokedLongAgo.session!.family_id]],
  );
  expect(audited.rows).toEqual([{ actor: "system:auth__cleanup" }]);
});
