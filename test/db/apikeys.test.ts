/**
 * Open API keys from SQL (issue 6): who may issue, see, rotate and revoke keys
 * (never scopes beyond the issuer's own), and what a key's requests may do as
 * authhub_api_client under the ordinary policies: its scopes tenant-wide or for
 * its organization's subtree, at USER level, nothing once revoked or expired,
 * nothing in another tenant; nonces refused when reused.
 */
import { createHash, randomBytes } from "node:crypto";
import { asActor, attemptAs, sqlErrorCode, type Actor, type TestDatabase } from "../helpers/db.js";
import { cast, identity, useFixtureDatabase, type Fixtures } from "../helpers/fixtures.js";

let db: TestDatabase;
let f: Fixtures;

useFixtureDatabase((database, fixtures) => {
  db = database;
  f = fixtures;
});

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const keyId = () => `ak_${Array.from(randomBytes(22), (b) => BASE62[b % 62]).join("")}`;
const fingerprint = () => createHash("sha256").update(randomBytes(32)).digest("hex");

interface KeyRow {
  id: string;
  tenant_id: string;
  organization_id: string | null;
  scopes: string[];
}

const ISSUE =
  "select (k).id, (k).tenant_id, (k).organization_id, (k).scopes::text[] as scopes from (select authhub_private.issue_api_key($1, $2, $3, $4, $5, $6, $7, 'v1.x.y.z', $8) as k) s";

/** Issues a key as `actor` (or as the operator when actor is null); the key, or the SQLSTATE refusing it. */
async function issue(
  actor: Actor | null,
  options: { scopes: string[]; organizationId?: string | null; expiresAt?: Date | null; tenantId?: string | null },
): Promise<KeyRow | string> {
  const params = [keyId(), "Partner", options.scopes, options.organizationId ?? null, null, options.expiresAt ?? null, fingerprint(), options.tenantId ?? null];
  if (actor === null) return (await db.owner.query<KeyRow>(ISSUE, params)).rows[0]!;
  return asActor(db, actor, async (client) => {
    try {
      const row = (await client.query<KeyRow>(ISSUE, params)).rows[0]!;
      await client.query("commit");
      return row;
    } catch (err) {
      return (err as { code: string }).code;
    }
  });
}

const asKey = (k: KeyRow): Actor => ({ apiKey: { apiKeyId: k.id, tenantId: k.tenant_id, orgId: k.organization_id } });

describe("issuing", () => {
  test("a tenant admin issues tenant-wide keys with scopes it holds; the operator issues in any tenant", async () => {
    const k = await issue(cast(f, f.a).tenantAdmin, { scopes: ["user:write", "user:read", "user:read"] });
    expect(k).toMatchObject({ tenant_id: f.a.id, organization_id: null, scopes: ["user:read", "user:write"] });
    expect(await issue(null, { scopes: ["org:read"], tenantId: f.b.id })).toMatchObject({ tenant_id: f.b.id });
  });

  test("an org admin issues keys for its subtree only, with organization-scopable scopes it holds there", async () => {
    const orgAdmin = cast(f, f.a).orgAdmin;
    expect(await issue(orgAdmin, { scopes: ["org:read", "membership:write"], organizationId: f.a.orgs.grandchild })).toMatchObject({
      organization_id: f.a.orgs.grandchild,
    });
    expect(await issue(orgAdmin, { scopes: ["org:read"] })).toBe("AH403");
    expect(await issue(orgAdmin, { scopes: ["org:read"], organizationId: f.a.orgs.sibling })).toBe("AH403");
    // user:write is tenant-only: no organization key carries it, whoever asks.
    expect(await issue(cast(f, f.a).tenantAdmin, { scopes: ["user:write"], organizationId: f.a.orgs.child })).toBe("AH422");
    // Another tenant's organization does not exist here.
    expect(await issue(cast(f, f.a).tenantAdmin, { scopes: ["org:read"], organizationId: f.b.orgs.child })).toBe("AH404");
  });

  test("nobody gives a key more than they hold; plain users issue nothing; bad input is refused", async () => {
    const keyManager = (
      await db.owner.query<{ id: string }>("insert into authhub.roles (tenant_id, key, name, level) values ($1, 'key-manager', 'Keys', 'TENANT_ADMIN') returning id", [f.a.id])
    ).rows[0]!.id;
    await db.owner.query("insert into authhub.role_permissions (tenant_id, role_id, permission_key) values ($1, $2, 'apikey:write'), ($1, $2, 'org:read')", [f.a.id, keyManager]);
    await db.owner.query("insert into authhub.role_assignments (tenant_id, user_id, role_id) values ($1, $2, $3)", [f.a.id, f.a.users.outsider, keyManager]);
    try {
      const manager = cast(f, f.a).outsider;
      expect(await issue(manager, { scopes: ["org:read"] })).toMatchObject({ scopes: ["org:read"] });
      expect(await issue(manager, { scopes: ["org:read", "user:read"] })).toBe("AH403");
      expect(await issue(cast(f, f.a).member, { scopes: ["org:read"] })).toBe("AH403");
      expect(await issue(cast(f, f.a).tenantAdmin, { scopes: ["no:such"] })).toBe("AH422");
      expect(await issue(cast(f, f.a).tenantAdmin, { scopes: [] })).toBe("AH422");
      expect(await issue(cast(f, f.a).tenantAdmin, { scopes: ["org:read"], expiresAt: new Date(Date.now() - 1000) })).toBe("AH422");
    } finally {
      await db.owner.query("delete from authhub.roles where id = $1", [keyManager]);
    }
  });

  test("keys are not inserted or deleted directly, and their scopes never change", async () => {
    const admin = cast(f, f.a).tenantAdmin;
    expect(await attemptAs(db, admin, "insert into authhub.api_keys (key_id, name, scopes) values ($1, 'x', '{org:read}')", [keyId()])).toBe("42501");
    expect(await attemptAs(db, admin, "delete from authhub.api_keys")).toBe("42501");
    expect(await attemptAs(db, admin, "update authhub.api_keys set scopes = '{user:write}'")).toBe("42501");
    expect(await attemptAs(db, admin, "update authhub.api_keys set revoked_at = null")).toBe("42501");
  });
});

describe("seeing and managing keys", () => {
  let tenantKey: KeyRow;
  let childKey: KeyRow;
  let siblingKey: KeyRow;
  let bKey: KeyRow;
  beforeAll(async () => {
    tenantKey = (await issue(null, { scopes: ["user:read"], tenantId: f.a.id })) as KeyRow;
    childKey = (await issue(null, { scopes: ["org:read"], organizationId: f.a.orgs.child, tenantId: f.a.id })) as KeyRow;
    siblingKey = (await issue(null, { scopes: ["org:read"], organizationId: f.a.orgs.sibling, tenantId: f.a.id })) as KeyRow;
    bKey = (await issue(null, { scopes: ["user:read"], tenantId: f.b.id })) as KeyRow;
  });
  const visible = (actor: Actor) =>
    asActor(db, actor, async (c) =>
      (await c.query<{ id: string }>("select id from authhub.api_keys where id = any($1)", [[tenantKey.id, childKey.id, siblingKey.id, bKey.id]])).rows.map((r) => r.id).sort(),
    );

  test("apikey:read decides who sees which keys: tenant-wide, or the subtree's; never another tenant's", async () => {
    expect(await visible(cast(f, f.a).tenantAdmin)).toEqual([tenantKey.id, childKey.id, siblingKey.id].sort());
    expect(await visible(cast(f, f.a).orgAdmin)).toEqual([childKey.id]);
    expect(await visible(cast(f, f.a).member)).toEqual([]);
    expect(await visible(cast(f, f.b).tenantAdmin)).toEqual([bKey.id]);
  });

  test("apikey:write renames and revokes in scope; elsewhere the key does not exist", async () => {
    const orgAdmin = cast(f, f.a).orgAdmin;
    expect(await attemptAs(db, orgAdmin, "update authhub.api_keys set name = 'Renamed', rate_limit_per_minute = 50 where id = $1", [childKey.id])).toBe(1);
    expect(await attemptAs(db, orgAdmin, "update authhub.api_keys set name = 'Renamed' where id = $1", [siblingKey.id])).toBe(0);
    expect(await attemptAs(db, orgAdmin, "select authhub.revoke_api_key($1)", [siblingKey.id])).toBe("AH404");
    expect(await attemptAs(db, cast(f, f.b).tenantAdmin, "select authhub.revoke_api_key($1)", [childKey.id])).toBe("AH404");
    expect(await attemptAs(db, orgAdmin, "select authhub.revoke_api_key($1)", [childKey.id])).toBe(1);
  });

  test("a key never changes keys, even one holding apikey:write", async () => {
    const writer = (await issue(null, { scopes: ["apikey:read", "apikey:write"], tenantId: f.a.id })) as KeyRow;
    const change = "update authhub.api_keys set rate_limit_per_minute = 5, expires_at = null where id = $1";
    // Control: the rows are there and a tenant admin may change them.
    expect(await attemptAs(db, cast(f, f.a).tenantAdmin, change, [tenantKey.id])).toBe(1);
    expect(await attemptAs(db, cast(f, f.a).tenantAdmin, change, [writer.id])).toBe(1);
    // The key sees them (apikey:read), but changes neither another key nor itself.
    expect(await attemptAs(db, asKey(writer), "select 1 from authhub.api_keys where id = $1", [tenantKey.id])).toBe(1);
    expect(await attemptAs(db, asKey(writer), change, [tenantKey.id])).toBe(0);
    expect(await attemptAs(db, asKey(writer), change, [writer.id])).toBe(0);
  });

  test("rotation keeps the old secret for the grace period only", async () => {
    const secrets = async () =>
      (await db.owner.query<{ expires_at: Date | null }>("select expires_at from authhub_private.api_key_secrets where api_key_id = $1 order by created_at", [tenantKey.id])).rows;
    await asActor(db, cast(f, f.a).tenantAdmin, async (c) => {
      await c.query("select authhub_private.rotate_api_key_secret($1, $2, 'v1.a.b.c', interval '1 hour')", [tenantKey.id, fingerprint()]);
      await c.query("commit");
    });
    const after = await secrets();
    expect(after).toHaveLength(2);
    expect(after[0]!.expires_at!.getTime() - Date.now()).toBeGreaterThan(3_500_000);
    expect(after[1]!.expires_at).toBeNull();
    const publicId = (await db.owner.query("select key_id from authhub.api_keys where id = $1", [tenantKey.id])).rows[0].key_id;
    const { rows } = await db.auth.query("select cardinality(secrets) as n from authhub_private.api_key_for_request($1)", [publicId]);
    expect(rows).toEqual([{ n: 2 }]);
    expect(await attemptAs(db, cast(f, f.a).member, "select authhub_private.rotate_api_key_secret($1, $2, 'v1.a.b.c', interval '0')", [tenantKey.id, fingerprint()])).toBe("AH404");
  });

  test("secrets never reach the audit log; issuing and revoking do", async () => {
    const { rows } = await db.owner.query("select table_name, old, new from authhub.audit_events where table_name in ('api_keys', 'api_key_secrets')");
    expect(rows.length).toBeGreaterThan(3);
    expect(JSON.stringify(rows)).not.toContain("v1.x.y.z");
    expect(JSON.stringify(rows)).not.toContain("v1.a.b.c");
  });
});

describe("a key's requests", () => {
  const users = (actor: Actor) => asActor(db, actor, async (c) => (await c.query<{ id: string }>("select id from authhub.users")).rows.map((r) => r.id).sort());

  test("a tenant-wide key reads with its scopes, at USER level, in its tenant only", async () => {
    const k = (await issue(null, { scopes: ["user:read", "user:write"], tenantId: f.a.id })) as KeyRow;
    const all = (await db.owner.query<{ id: string }>("select id from authhub.users where tenant_id = $1", [f.a.id])).rows.map((r) => r.id).sort();
    expect(await users(asKey(k))).toEqual(all);
    // Writes plain users, never admins; never another tenant's rows.
    expect(await attemptAs(db, asKey(k), "insert into authhub.users (tenant_id, email) values ($1, 'new@tenant-a.test')", [f.a.id])).toBe(1);
    expect(await attemptAs(db, asKey(k), "insert into authhub.users (tenant_id, email, level) values ($1, 'boss@tenant-a.test', 'TENANT_ADMIN')", [f.a.id])).toBe("42501");
    // Control: it changes a plain user of its tenant; not that user's level, nor tenant B's same user.
    expect(await attemptAs(db, asKey(k), "update authhub.users set display_name = 'Seen' where id = $1", [f.a.users.member])).toBe(1);
    expect(await attemptAs(db, asKey(k), "update authhub.users set level = 'TENANT_ADMIN' where id = $1", [f.a.users.member])).toBe("42501");
    expect(await attemptAs(db, asKey(k), "update authhub.users set display_name = 'Seen' where id = $1", [f.b.users.member])).toBe(0);
    // Its claims naming tenant B find no key there: nothing at all.
    expect(await users({ apiKey: { apiKeyId: k.id, tenantId: f.b.id, orgId: null } })).toEqual([]);
    // No sub: the audit log names the key.
    await asActor(db, asKey(k), async (c) => {
      await c.query("insert into authhub.users (tenant_id, email) values ($1, 'by-key@tenant-a.test')", [f.a.id]);
      await c.query("commit");
    });
    const { rows } = await db.owner.query(
      "select actor, actor_user_id, trace_id from authhub.audit_events where table_name = 'users' and new ->> 'email' = 'by-key@tenant-a.test'",
    );
    expect(rows).toEqual([{ actor: `api_key:${k.id}`, actor_user_id: null, trace_id: "test-trace-0001" }]);
  });

  test("an organization key reaches its subtree only, and only with its scopes", async () => {
    const k = (await issue(null, { scopes: ["user:read", "org:read"], organizationId: f.a.orgs.child, tenantId: f.a.id })) as KeyRow;
    expect(await users(asKey(k))).toEqual([f.a.users.orgAdmin, f.a.users.member, f.a.users.suspended].sort());
    const orgs = await asActor(db, asKey(k), async (c) => (await c.query<{ id: string }>("select id from authhub.organizations")).rows.map((r) => r.id).sort());
    expect(orgs).toEqual([f.a.orgs.child, f.a.orgs.grandchild].sort());
    // No membership scope: no memberships (a key with the scope, same subtree, sees them).
    expect(await attemptAs(db, asKey(k), "select 1 from authhub.memberships")).toBe(0);
    const withScope = (await issue(null, { scopes: ["membership:read"], organizationId: f.a.orgs.child, tenantId: f.a.id })) as KeyRow;
    expect(await attemptAs(db, asKey(withScope), "select 1 from authhub.memberships")).toBeGreaterThan(0);
    expect(await attemptAs(db, asKey(k), "insert into authhub.organizations (tenant_id, slug, name, parent_id) values ($1, 'k', 'K', $2)", [f.a.id, f.a.orgs.child])).toBe("42501");
  });

  test("revoked or expired keys hold nothing, and their requests are refused at the first statement", async () => {
    const k = (await issue(null, { scopes: ["user:read"], tenantId: f.a.id })) as KeyRow;
    // As the server runs it: the login role, before the request's transaction.
    const begin = (nonce: string) => db.auth.query("select authhub_private.begin_api_request($1, $2, $3, 300, now()) as ok", [k.id, k.tenant_id, nonce]).then((r) => r.rows[0].ok);
    expect(await begin("nonce-one-0000000")).toBe(true);
    expect((await users(asKey(k))).length).toBeGreaterThan(0);
    await db.owner.query("select authhub.revoke_api_key($1)", [k.id]);
    expect(await users(asKey(k))).toEqual([]);
    expect(await begin("nonce-two-0000000")).toBe(false);
    const e = (await issue(null, { scopes: ["user:read"], tenantId: f.a.id, expiresAt: new Date(Date.now() + 60_000) })) as KeyRow;
    expect((await users(asKey(e))).length).toBeGreaterThan(0);
    await db.owner.query("update authhub.api_keys set expires_at = now() - interval '1 second' where id = $1", [e.id]);
    expect(await users(asKey(e))).toEqual([]);
  });

  test("a nonce is accepted once per key within its window; uses are recorded in batches", async () => {
    const k = (await issue(null, { scopes: ["user:read"], tenantId: f.a.id })) as KeyRow;
    const other = (await issue(null, { scopes: ["user:read"], tenantId: f.a.id })) as KeyRow;
    const begin = (key: KeyRow, nonce: string) =>
      db.auth.query("select authhub_private.begin_api_request($1, $2, $3, 300, now()) as ok", [key.id, key.tenant_id, nonce]).then((r) => r.rows[0].ok);
    expect(await begin(k, "n0nce-0123456789ab")).toBe(true);
    expect(await begin(k, "n0nce-0123456789ab")).toBe(false);
    expect(await begin(other, "n0nce-0123456789ab")).toBe(true);
    // A key named with another tenant is no key.
    expect((await db.auth.query("select authhub_private.begin_api_request($1, $2, 'n0nce-other-tenant-1', 300, now()) as ok", [k.id, f.b.id])).rows[0].ok).toBe(false);
    // Past its window the nonce is forgotten.
    await db.owner.query("update authhub_private.api_nonces set expires_at = now() - interval '1 second' where api_key_id = $1", [k.id]);
    expect(await begin(k, "n0nce-0123456789ab")).toBe(true);
    await db.auth.query("select authhub_private.record_api_key_usage($1, $2, $3, now())", [
      [f.a.id, f.b.id],
      [k.id, k.id],
      [2, 5],
    ]);
    const usage = await db.owner.query("select request_count from authhub_private.api_key_usage where api_key_id = $1", [k.id]);
    // Only the key's own tenant's row counts (a mismatched tenant names no key).
    expect(usage.rows).toEqual([{ request_count: "2" }]);
    const seen = await asActor(
      db,
      cast(f, f.a).tenantAdmin,
      async (c) =>
        (await c.query("select authhub.api_keys_request_count(k) as n, authhub.api_keys_last_used_at(k) is not null as used from authhub.api_keys k where id = $1", [k.id]))
          .rows[0],
    );
    expect(seen).toEqual({ n: "2", used: true });
  });

  test("keys issue, rotate and revoke no keys, and call no user-only helpers to escalate", async () => {
    const k = (await issue(null, { scopes: ["apikey:write", "apikey:read", "user:read"], tenantId: f.a.id })) as KeyRow;
    const code = await asActor(db, asKey(k), (c) =>
      sqlErrorCode(c, "select authhub_private.issue_api_key($1, 'x', '{user:read}', null, null, null, $2, 'v1.q.q.q', null)", [keyId(), fingerprint()]),
    );
    expect(code).toBe("AH403");
    expect(await attemptAs(db, asKey(k), "select authhub.revoke_api_key($1)", [k.id])).toBe("AH404");
    const level = await asActor(db, asKey(k), async (c) => (await c.query("select authhub_private.current_user_level() as l, authhub_private.is_tenant_admin() as ta")).rows[0]);
    expect(level).toEqual({ l: "USER", ta: false });
    void identity;
  });
});

test("the open_api__cleanup job forgets expired nonces only", async () => {
  const { runTask } = await import("../helpers/worker.js");
  const k = (await issue(null, { scopes: ["user:read"], tenantId: f.a.id })) as KeyRow;
  await db.owner.query(
    "insert into authhub_private.api_nonces (api_key_id, nonce, expires_at) values ($1, 'old-nonce-0000000000', now() - interval '1 minute'), ($1, 'new-nonce-0000000000', now() + interval '5 minutes')",
    [k.id],
  );
  await runTask(db, "open_api__cleanup");
  const { rows } = await db.owner.query("select nonce from authhub_private.api_nonces where api_key_id = $1", [k.id]);
  expect(rows).toEqual([{ nonce: "new-nonce-0000000000" }]);
});

describe("review: what managing a key takes", () => {
  test("rotating, extending or re-limiting a key takes every scope it has, not apikey:write alone", async () => {
    const strong = (await issue(null, { scopes: ["user:read", "user:write"], tenantId: f.a.id })) as KeyRow;
    const keyRole = (
      await db.owner.query<{ id: string }>("insert into authhub.roles (tenant_id, key, name, level) values ($1, 'key-keeper', 'Keys', 'ORG_ADMIN') returning id", [f.a.id])
    ).rows[0]!.id;
    await db.owner.query("insert into authhub.role_permissions (tenant_id, role_id, permission_key) values ($1, $2, 'apikey:read'), ($1, $2, 'apikey:write')", [f.a.id, keyRole]);
    await db.owner.query("insert into authhub.role_assignments (tenant_id, user_id, role_id) values ($1, $2, $3)", [f.a.id, f.a.users.member, keyRole]);
    try {
      const keeper = cast(f, f.a).member;
      expect(await attemptAs(db, keeper, "select authhub_private.rotate_api_key_secret($1, $2, 'v1.e.v.il', interval '7 days')", [strong.id, fingerprint()])).toBe("AH403");
      expect(await attemptAs(db, keeper, "update authhub.api_keys set rate_limit_per_minute = 100000, expires_at = null where id = $1", [strong.id])).toBe("42501");
      // Revoking only takes power away: apikey:write is enough (rolled back here).
      expect(await attemptAs(db, keeper, "select authhub.revoke_api_key($1)", [strong.id])).toBe(1);
      // The tenant admin, who holds both scopes, may rotate and re-limit.
      expect(await attemptAs(db, cast(f, f.a).tenantAdmin, "select authhub_private.rotate_api_key_secret($1, $2, 'v1.o.k.k', interval '0')", [strong.id, fingerprint()])).toBe(1);
      expect(await attemptAs(db, cast(f, f.a).tenantAdmin, "update authhub.api_keys set rate_limit_per_minute = 50 where id = $1", [strong.id])).toBe(1);
    } finally {
      await db.owner.query("delete from authhub.roles where id = $1", [keyRole]);
    }
  });

  test("a grace period must be given; usage of another tenant's key reads as none", async () => {
    const k = (await issue(null, { scopes: ["org:read"], tenantId: f.a.id })) as KeyRow;
    expect(await attemptAs(db, cast(f, f.a).tenantAdmin, "select authhub_private.rotate_api_key_secret($1, $2, 'v1.a.b.c', null)", [k.id, fingerprint()])).toBe("AH422");
    await db.auth.query("select authhub_private.record_api_key_usage($1, $2, $3, now())", [[f.a.id], [k.id], [3]]);
    const countAs = (actor: Actor) =>
      asActor(
        db,
        actor,
        async (c) =>
          (
            await c.query(
              "select authhub.api_keys_request_count(row($1::uuid, $2::uuid, 'ak_xxxxxxxxxxxxxxxxxxxxxx', null, 'x', '{org:read}', 1, null, null, now(), now(), null, null)::authhub.api_keys) as n",
              [f.a.id, k.id],
            )
          ).rows[0].n,
      );
    // Control: the same question from the key's own tenant reads the uses.
    expect(await countAs(cast(f, f.a).tenantAdmin)).toBe("3");
    expect(await countAs(cast(f, f.b).tenantAdmin)).toBe("0");
  });

  test("suspending or deleting a user revokes the keys they issued", async () => {
    const issuedBy = async (userId: string) => {
      const actor = userId === f.a.users.tenantAdmin ? cast(f, f.a).tenantAdmin : cast(f, f.a).orgAdmin;
      const row = (await issue(actor, { scopes: ["org:read"], organizationId: f.a.orgs.child })) as KeyRow;
      return row.id;
    };
    const byOrgAdmin = await issuedBy(f.a.users.orgAdmin);
    await db.owner.query("update authhub.users set status = 'suspended' where id = $1", [f.a.users.orgAdmin]);
    try {
      const { rows } = await db.owner.query("select revoked_at is not null as revoked from authhub.api_keys where id = $1", [byOrgAdmin]);
      expect(rows).toEqual([{ revoked: true }]);
    } finally {
      await db.owner.query("update authhub.users set status = 'active' where id = $1", [f.a.users.orgAdmin]);
    }
    const leaver = (
      await db.owner.query<{ id: string }>("insert into authhub.users (tenant_id, email, level) values ($1, 'leaver-admin@tenant-a.test', 'TENANT_ADMIN') returning id", [f.a.id])
    ).rows[0]!.id;
    const byLeaver = (await issue(identity(f.a, leaver, "TENANT_ADMIN"), { scopes: ["org:read"] })) as KeyRow;
    await db.owner.query("delete from authhub.users where id = $1", [leaver]);
    const { rows } = await db.owner.query("select revoked_at is not null as revoked, created_by from authhub.api_keys where id = $1", [byLeaver.id]);
    expect(rows).toEqual([{ revoked: true, created_by: null }]);
  });
});
