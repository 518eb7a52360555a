/**
 * Every refusal a caller can reach has a stable public mapping (server/errors.ts)
 * and a line in docs/errors.md. Read from the catalog of a migrated database, not
 * from a list kept by hand: the named checks on what callers can write (through
 * their grants, or through a definer function they may run that writes the
 * table), and the SQLSTATEs raised in function bodies.
 */
import { readFileSync } from "node:fs";
import request from "supertest";
import { signRequest } from "../../client/index.js";
import { makePool } from "../../db/pools.js";
import { REQUEST_ROLES, AUTHENTICATOR_ROLE } from "../../db/setup.js";
import { fromDatabaseError, NAMED_CHECKS } from "../../server/errors.js";
import type { TestDatabase } from "../helpers/db.js";
import { cast, type Fixtures } from "../helpers/fixtures.js";
import { startTestServer, useFixtureServer, type TestServer } from "../helpers/server.js";

let db: TestDatabase;
let f: Fixtures;
let srv: TestServer;
useFixtureServer((database, fixtures, server) => {
  db = database;
  f = fixtures;
  srv = server;
});

const SCHEMAS = ["authhub", "authhub_private", "retail", "retail_private"];
/** Everyone a request can act as, and the login role that calls the Auth API's and webhooks' functions. */
const CALLERS = [...REQUEST_ROLES, AUTHENTICATOR_ROLE];

/**
 * Checks a caller's write could reach by the rules above that hold values no
 * caller chooses; each says why. A name here that the catalog no longer has
 * fails the test too.
 */
const NOT_FROM_CALLERS: Record<string, string> = {
  api_key_secrets_fingerprint_format: "the SHA-256 fingerprint the server computes",
  idempotency_keys_state: "the state machine of finish_idempotency, never from input",
  idempotency_keys_key_format: "the router refuses a malformed Idempotency-Key first, with the same rule",
  webhook_endpoints_provider: "always 'clerk', set by create_webhook_endpoint",
  api_nonce_epoch_singleton: "one row under a constant key, kept by begin_api_request",
  refresh_families_revocation: "revoked_at and its reason, set together by the session functions",
  refresh_families_revoked_reason: "the reasons the session functions write",
  refresh_tokens_hash_length: "SHA-256 hashes the server computes",
  refresh_tokens_rotation: "rotate_refresh_token's own bookkeeping",
  sync_bulk_jobs_entity: "the bulk route refuses an unknown entity first, with the same list (SYNC_ENTITIES)",
  sync_bulk_jobs_state: "the bulk functions' own state machine",
  sync_rejects_source_kind: "push, pull or bulk, chosen by sync_kind(), never from input",
  sync_source_cursors_entity: "the pull job's own list of entities",
  sync_statuses_entity: "the entity retail.sync was called for, refused first by sync_rows when unknown",
  sync_statuses_source_kind: "push, pull or bulk, chosen by sync_kind(), never from input",
};

const docs = readFileSync(new URL("../../docs/errors.md", import.meta.url), "utf8");
const documented = (name: string) => docs.includes(`\`${name}\``);

async function reachableChecks(): Promise<{ name: string; how: string }[]> {
  const { rows } = await db.owner.query<{ name: string; by_grant: boolean; by_function: string | null }>(
    `with callers as (select unnest($1::text[]) as role),
     writers as (
       -- Definer functions a caller may run, and the tables their bodies insert into or update.
       select n.nspname || '.' || p.proname as fn, p.prosrc, p.proargtypes
       from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname = any ($2) and exists (select 1 from callers where has_function_privilege(role, p.oid, 'execute'))
     ),
     checks as (
       select c.conname, c.conrelid, c.contypid, c.conkey, n.nspname, coalesce(cl.relname, t.typname) as object,
              (select typarray from pg_type where oid = c.contypid) as array_type
       from pg_constraint c join pg_namespace n on n.oid = c.connamespace
       left join pg_class cl on cl.oid = c.conrelid left join pg_type t on t.oid = c.contypid
       where c.contype = 'c' and n.nspname = any ($2)
     )
     select ch.conname as name,
       case when ch.conrelid <> 0 then exists (
              select 1 from callers, unnest(ch.conkey) k join pg_attribute a on a.attrelid = ch.conrelid and a.attnum = k
              where has_column_privilege(role, ch.conrelid, a.attname, 'INSERT') or has_column_privilege(role, ch.conrelid, a.attname, 'UPDATE'))
            else exists (
              select 1 from callers, pg_attribute a join pg_class t on t.oid = a.attrelid
              where a.atttypid in (ch.contypid, ch.array_type) and not a.attisdropped and t.relkind in ('r', 'p')
                and (has_column_privilege(role, a.attrelid, a.attname, 'INSERT') or has_column_privilege(role, a.attrelid, a.attname, 'UPDATE')))
       end as by_grant,
       (select string_agg(w.fn, ', ') from writers w
        where (ch.conrelid <> 0 and w.prosrc ~* ('(insert\\s+into|update)\\s+(' || ch.nspname || '\\.)?' || ch.object || '\\M'))
           or (ch.contypid <> 0 and (ch.contypid = any (w.proargtypes::oid[]) or ch.array_type = any (w.proargtypes::oid[])))) as by_function
     from checks ch order by 1`,
    [CALLERS, SCHEMAS],
  );
  return rows.filter((r) => r.by_grant || r.by_function).map((r) => ({ name: r.name, how: r.by_grant ? "a grant" : `via ${r.by_function}` }));
}

test("every named check a caller can reach is mapped in server/errors.ts and documented in docs/errors.md", async () => {
  const reachable = await reachableChecks();
  expect(reachable.length).toBeGreaterThan(30);
  const names = new Set(reachable.map((r) => r.name));
  for (const name of Object.keys(NOT_FROM_CALLERS)) expect({ name, reachable: names.has(name) }).toEqual({ name, reachable: true });
  const gaps = reachable
    .filter((r) => !(r.name in NOT_FROM_CALLERS))
    .filter((r) => !NAMED_CHECKS.includes(r.name) || !documented(r.name))
    .map((r) => `${r.name} (${r.how}): ${NAMED_CHECKS.includes(r.name) ? "" : "not mapped "}${documented(r.name) ? "" : "not documented"}`.trim());
  expect(gaps).toEqual([]);
  // Mapped means a field and a message of its own, not the fallback.
  for (const name of reachable.map((r) => r.name).filter((n) => !(n in NOT_FROM_CALLERS))) {
    const error = fromDatabaseError({ code: "23514", severity: "ERROR", constraint: name, message: "internal text" });
    expect(error?.details?.[0]?.field).not.toBe("input");
    expect(error?.message).not.toMatch(/internal text/);
  }
});

test("every check server/errors.ts maps exists and is documented", async () => {
  const { rows } = await db.owner.query<{ conname: string }>("select conname from pg_constraint where contype = 'c' and connamespace::regnamespace::text = any ($1)", [SCHEMAS]);
  const existing = new Set(rows.map((r) => r.conname));
  expect(NAMED_CHECKS.filter((name) => !existing.has(name))).toEqual([]);
  expect(NAMED_CHECKS.filter((name) => !documented(name))).toEqual([]);
});

test("every SQLSTATE a function raises (and does not catch itself) is mapped to a code other than internal, and documented", async () => {
  const { rows } = await db.owner.query<{ fn: string; body: string }>(
    "select n.nspname || '.' || p.proname as fn, p.prosrc as body from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = any ($1)",
    [SCHEMAS],
  );
  const raised = new Map<string, Set<string>>();
  for (const { fn, body } of rows) {
    for (const m of body.matchAll(/(?:errcode\s*=\s*|raise\s+sqlstate\s+)'([0-9A-Z]{5})'/gi)) {
      const state = m[1]!.toUpperCase();
      // Raised and caught in the same body (a probe): it never leaves the function.
      if (new RegExp(`when\\s+sqlstate\\s+'${state}'`, "i").test(body)) continue;
      raised.set(state, (raised.get(state) ?? new Set()).add(fn));
    }
  }
  expect([...raised.keys()].sort()).toEqual(expect.arrayContaining(["AH403", "AH404", "AH409", "AH422"]));
  const gaps: string[] = [];
  for (const [state, fns] of raised) {
    const error = fromDatabaseError({ code: state, severity: "ERROR", message: "A message written for clients." });
    if (!error || error.code === "internal") gaps.push(`${state} (raised by ${[...fns].join(", ")}) is not mapped`);
    if (!documented(state)) gaps.push(`${state} (raised by ${[...fns].join(", ")}) is not in docs/errors.md`);
  }
  expect(gaps).toEqual([]);
});

test("a user-writable check answers with its field: an API key's rate limit out of range", async () => {
  const res = await request(srv.app)
    .post("/graphql")
    .set("Authorization", `Bearer ${await srv.mint(cast(f, f.a).tenantAdmin)}`)
    .send({
      query: "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { keyId } }",
      variables: { input: { name: "too fast", scopes: ["user:read"], rateLimitPerMinute: 0 } },
    });
  expect(res.body.errors).toEqual([
    expect.objectContaining({
      message: "Invalid rateLimitPerMinute: must be between 1 and 1000000 requests per minute.",
      extensions: expect.objectContaining({ code: "invalid_input", details: [{ field: "rateLimitPerMinute", message: "must be between 1 and 1000000 requests per minute" }] }),
    }),
  ]);
  expect((await db.owner.query("select count(*)::int as n from authhub.api_keys where name = 'too fast'")).rows[0].n).toBe(0);
});

test("the database out of reach is 503 unavailable with Retry-After on the Auth API and the Open API, never internal", async () => {
  // Nothing listens on port 1: every connection is refused.
  const unreachable = makePool("postgres://authhub_authenticator@127.0.0.1:1/authhub", { name: "unreachable", max: 2, acquireTimeoutMs: 2_000 });
  const down = await startTestServer(db, {}, unreachable);
  try {
    const answers = [
      await request(down.app)
        .post("/auth/token")
        .type("form")
        .send({ grant_type: "client_credentials", client_id: `ak_${"Q".repeat(22)}`, client_secret: `sk_${"z".repeat(43)}` }),
      await request(down.app)
        .post("/auth/token")
        .type("form")
        .send({ grant_type: "refresh_token", refresh_token: `rt_${"a".repeat(43)}` }),
      await request(down.app).get("/.well-known/jwks.json"),
      await request(down.app)
        .get("/open/v1/me")
        .set(signRequest({ keyId: `ak_${"Q".repeat(22)}`, secret: `sk_${"z".repeat(43)}`, method: "GET", url: "/open/v1/me" })),
    ];
    for (const res of answers) {
      expect({ status: res.status, retryAfter: res.headers["retry-after"] }).toEqual({ status: 503, retryAfter: "2" });
      expect(JSON.stringify(res.body)).toMatch(/unavailable/);
      expect(res.text).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|internal/);
    }
  } finally {
    await down.close();
    await unreachable.end();
  }
});
