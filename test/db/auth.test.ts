/**
 * The Auth API's SQL (issue 5), from SQL: session, rate-limit and signing-key
 * state is out of every request role's reach and reached by the server's login
 * role only through definer functions; those functions decide who gets a
 * token, at which level, and how refresh tokens rotate, are replayed, and are
 * revoked on reuse; the cleanup job removes what has ended.
 */
import { createHash, randomBytes } from "node:crypto";
import { attemptAs, type Actor, type TestDatabase } from "../helpers/db.js";
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

/** As the server's login role (no request role): start a session. */
async function startSession(tenant: string, external: string, organization: string | null = null, token = newToken()) {
  const { rows } = await db.auth.query<Session>(
    "select * from authhub_private.start_session($1, $2, $3, 'https://idp.test', $4, interval '1 day', interval '30 days')",
    [tenant, organization, external, hash(token)],
  );
  return { session: rows[0] ?? null, token };
}

async function rotate(token: string, successor: string, grace = "10 seconds") {
  const { rows } = await db.auth.query<Session & { outcome: string }>(
    "select * from authhub_private.rotate_refresh_token($1, $2, interval '1 day', $3::interval)",
    [hash(token), hash(successor), grace],
  );
  return rows[0]!;
}

describe("reach", () => {
  const tables = ["authhub_private.refresh_families", "authhub_private.refresh_tokens", "authhub_private.rate_limits", "authhub_private.signing_keys"];
  const functions = [
    "authhub_private.start_session('tenant-a', null, 'ext-member', 'x', '\\x00'::bytea, '1 day', '1 day')",
    "authhub_private.rotate_refresh_token('\\x00'::bytea, '\\x00'::bytea, '1 day', '10 seconds')",
    "authhub_private.revoke_refresh_token('\\x00'::bytea)",
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
    const { rows } = await db.auth.query("select * from authhub_private.active_signing_key()");
    expect(rows.length).toBeLessThanOrEqual(1);
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
    // A different successor for the same token is not a retry: the family ends.
    expect((await rotate(token, newToken())).outcome).toBe("reuse");
    expect((await rotate(successor, newToken())).outcome).toBe("invalid");
  });

  test("reuse after the grace period revokes the family; so does a retry after the successor was used", async () => {
    const first = await startSession("tenant-a", "ext-member");
    const second = newToken();
    await rotate(first.token, second);
    expect((await rotate(first.token, second, "0 seconds")).outcome).toBe("reuse");
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
    expect((await db.auth.query("select authhub_private.revoke_refresh_token($1) as r", [hash(revoked.token)])).rows[0].r).toBe(true);
    expect((await db.auth.query("select authhub_private.revoke_refresh_token($1) as r", [hash(revoked.token)])).rows[0].r).toBe(false);
    expect((await rotate(revoked.token, newToken())).outcome).toBe("invalid");

    const user = (
      await db.owner.query<{ id: string }>("insert into authhub.users (tenant_id, email, external_id) values ($1, 'leaver@tenant-a.test', 'ext-leaver') returning id", [f.a.id])
    ).rows[0]!.id;
    const leaver = await startSession("tenant-a", "ext-leaver");
    await db.owner.query("delete from authhub.users where id = $1", [user]);
    expect((await rotate(leaver.token, newToken())).outcome).toBe("invalid");
  });
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
