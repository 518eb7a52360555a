/**
 * `npm run bench`: every ratio is measured side by side in one run, on one
 * database (a throwaway embedded cluster, or BENCH_DATABASE_URL as superuser),
 * with rounds interleaved so machine noise hits both sides alike. Results are
 * printed as a table and saved under bench/results/.
 *
 * Foundation (issue 2):
 *  1. RLS cost: a tenant admin's first page of 20 users under RLS, vs the same
 *     SQL as the owner with an explicit tenant filter (policy `true`), in the same
 *     transaction shape (begin; set_config… including the role; the prepared
 *     select; commit), as PostGraphile runs it. Target ≥ 0.85.
 *  2. Scale: p50 of (1) on a 100k-user tenant ÷ on a 1k-user tenant. Target ≤ 1.5.
 *  3. GraphQL overhead: that page through /graphql over HTTP, vs an HTTP endpoint
 *     on the same server running the SQL PostGraphile generated for it (captured
 *     from its explain output) in the same transaction shape. Target ≥ 0.35.
 *
 * RBAC (issue 3):
 *  4. The page of (1) under the permission-checking policies vs the same rows
 *     (a copy table) under a tenant-only policy. Target ≥ 0.8; the scale ratio of
 *     (2) covers the permission policies too.
 * Audit (issue 4): see bench/audit.ts; plus a GraphQL createOrganization with the
 * organizations table's audit triggers enabled vs disabled, alternating rounds.
 *
 *  5. POST /v1/authorize (one check) vs GET /healthz on the same server: the
 *     throughput ratio at the shared concurrency, and p99 latency one request at a
 *     time (the client runs in this process, on the same two cores). Target p99 ≤ 5 ms.
 *
 * Auth API (issue 5): token exchange and refresh vs GET /healthz on the same
 * server, see bench/auth.ts. Target p99 ≤ 10 ms for refresh, one at a time.
 *
 * Open API (issue 6): a signed GET /open/v1/users vs the handler with
 * authentication skipped, with and without the key cache, and rate limiting on
 * vs off; see bench/openapi.ts.
 *
 * Identity sync (issue 7): Clerk deliveries received and applied vs raw
 * graphile-worker add_job + a no-op task, in throughput (a burst at the shared
 * concurrency) and accept-to-start p99 (a steady rate, side by side); see
 * bench/webhooks.ts.
 */
import "../server/env.js";
import express from "express";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { pgSettingsFor, type Identity } from "../db/claims.js";
import { startScratchCluster } from "../db/scratch.js";
import { runMigrations } from "../db/migrate.js";
import { AUTHENTICATOR_ROLE, ensureRolesAndDatabase, OWNER_ROLE, withCredentials } from "../db/setup.js";
import { makeApp } from "../server/app.js";
import { parseMasterKey } from "../server/auth/masterKey.js";
import { loadActiveSigningKey, mintAccessToken } from "../server/auth/signingKeys.js";
import { readConfig } from "../server/config.js";
import { makeLogger } from "../server/logger.js";
import { measureAuditInserts, measureAuditQuery, prepareAuditTables } from "./audit.js";
import { measureAuthApi } from "./auth.js";
import { measureOpenApi } from "./openapi.js";
import { measureRetail } from "./retail.js";
import { measureWebhooks } from "./webhooks.js";
import { startLocalIdp } from "../test/helpers/idp.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const QUERIES_PER_ROUND = Number(process.env.BENCH_QUERIES ?? 1000);
const HTTP_PER_ROUND = Number(process.env.BENCH_HTTP_REQUESTS ?? 300);
const HTTP_CONCURRENCY = 4;
// Webhook latency is measured at a steady rate both sides sustain (bench/webhooks.ts).
const WEBHOOK_STEADY_RATE = Number(process.env.BENCH_WEBHOOK_RATE ?? 200);
const WEBHOOK_STEADY_COUNT = Number(process.env.BENCH_WEBHOOK_COUNT ?? 1000);

interface Sample {
  ms: number[];
  totalMs: number;
  count: number;
}
const emptySample = (): Sample => ({ ms: [], totalMs: 0, count: 0 });
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const throughput = (s: Sample) => (s.count / s.totalMs) * 1000;

/** Alternates the contenders call by call, so drift and noise land on all of them alike. */
async function timeInterleaved(n: number, contenders: [() => Promise<unknown>, Sample][]) {
  for (let i = 0; i < n; i++) {
    for (const [fn, into] of contenders) {
      const t = performance.now();
      await fn();
      const ms = performance.now() - t;
      into.ms.push(ms);
      into.totalMs += ms;
      into.count++;
    }
  }
}

async function timeConcurrent(n: number, concurrency: number, fn: () => Promise<unknown>, into: Sample) {
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next++;
        const t = performance.now();
        await fn();
        into.ms.push(performance.now() - t);
      }
    }),
  );
  into.totalMs += performance.now() - started;
  into.count += n;
}

/**
 * One transaction as the server runs it: settings, the statement, commit. The
 * statement is prepared, as PostGraphile prepares its queries (@dataplan/pg keeps
 * a per-connection prepared-statement cache), so planning is paid once.
 */
async function inTransaction(client: pg.PoolClient, settings: Record<string, string>, sql: string, params: unknown[]) {
  await client.query("begin");
  await client.query("select set_config(key, value, true) from json_each_text($1::json)", [JSON.stringify(settings)]);
  const name = `bench_${createHash("sha1").update(sql).digest("hex").slice(0, 16)}`;
  const r = await client.query<Record<string, unknown>>({ name, text: sql, values: params });
  await client.query("commit");
  return r.rows;
}

async function main() {
  const cluster = await startScratchCluster(process.env.BENCH_DATABASE_URL || null, "authhub-bench-");
  const { rootUrl, ownerPassword, authenticatorPassword: authPassword } = cluster;
  const database = `authhub_bench_${process.pid}`;
  await ensureRolesAndDatabase({ rootUrl, database, ownerPassword, authenticatorPassword: authPassword });
  const ownerUrl = withCredentials(rootUrl, OWNER_ROLE, ownerPassword, database);
  const authUrl = withCredentials(rootUrl, AUTHENTICATOR_ROLE, authPassword, database);
  await runMigrations(ownerUrl);
  const owner = new pg.Pool({ connectionString: ownerUrl, max: 4 });
  owner.on("error", () => undefined);
  // As the server runs it (server/main.ts): the authenticator pool holds 20.
  const auth = new pg.Pool({ connectionString: authUrl, max: 20 });

  try {
    process.stderr.write("seeding a 1k-user and a 100k-user tenant…\n");
    const seed = async (slug: string, users: number) => {
      const t = (await owner.query<{ id: string }>("insert into authhub.tenants (slug, name) values ($1, $2) returning id", [slug, slug])).rows[0]!.id;
      await owner.query(
        `insert into authhub.users (tenant_id, email, display_name, level)
         select $1, 'user' || g || '@' || $2::text || '.test', 'User ' || g, case when g = 1 then 'TENANT_ADMIN' else 'USER' end::authhub.role_level
         from generate_series(1, $3) g`,
        [t, slug, users],
      );
      const admin = (await owner.query<{ id: string }>("select id from authhub.users where tenant_id = $1 and level = 'TENANT_ADMIN'", [t])).rows[0]!.id;
      return { tenantId: t, adminId: admin };
    };
    const small = await seed("small", 1_000);
    const large = await seed("large", 100_000);
    // The same users under a tenant-only policy, for the permission-policy comparison (issue 3).
    await owner.query(`
      create schema bench_rbac;
      create table bench_rbac.users (like authhub.users including all);
      insert into bench_rbac.users select * from authhub.users;
      alter table bench_rbac.users enable row level security;
      alter table bench_rbac.users force row level security;
      create policy select_tenant_only on bench_rbac.users for select to authhub_user
        using (tenant_id = (select authhub.current_tenant_id()));
      grant usage on schema bench_rbac to authhub_user;
      grant select on bench_rbac.users to authhub_user;`);
    await prepareAuditTables(owner);
    await owner.query("analyze");

    const identityOf = (t: { tenantId: string; adminId: string }): Identity => ({ userId: t.adminId, tenantId: t.tenantId, level: "TENANT_ADMIN" });
    const PAGE_RLS = "select id, email, display_name, level from authhub.users order by tenant_id, id limit 20";
    const PAGE_EXPLICIT = "select id, email, display_name, level from authhub.users where tenant_id = $1 order by tenant_id, id limit 20";
    const PAGE_TENANT_ONLY = "select id, email, display_name, level from bench_rbac.users order by tenant_id, id limit 20";

    // Sanity: both sides return the same rows.
    const rlsClient = await auth.connect();
    const ownerClient = await owner.connect();
    const settingsSmall = pgSettingsFor(identityOf(small), "bench");
    // Same transaction shape on both sides: the same settings, including a role switch.
    const ownerSettingsSmall = { ...settingsSmall, role: "authhub_owner" };
    const a = await inTransaction(rlsClient, settingsSmall, PAGE_RLS, []);
    const b = await inTransaction(ownerClient, ownerSettingsSmall, PAGE_EXPLICIT, [small.tenantId]);
    if (JSON.stringify(a) !== JSON.stringify(b) || a.length !== 20) throw new Error("RLS and explicit queries disagree");
    const plan = (await rlsClient.query(
      `begin; select set_config(key, value, true) from json_each_text('${JSON.stringify(settingsSmall)}'::json); explain ${PAGE_RLS}`,
    )) as unknown as pg.QueryResult<{ "QUERY PLAN": string }>[];
    await rlsClient.query("rollback");
    const planText = plan
      .at(-1)!
      .rows.map((r) => r["QUERY PLAN"])
      .join("\n");

    const rls = emptySample();
    const explicit = emptySample();
    const rlsLarge = emptySample();
    const tenantOnly = emptySample();
    const settingsLarge = pgSettingsFor(identityOf(large), "bench");
    // Warm-up, then the measured calls.
    await timeInterleaved(200, [
      [() => inTransaction(ownerClient, ownerSettingsSmall, PAGE_EXPLICIT, [small.tenantId]), emptySample()],
      [() => inTransaction(rlsClient, settingsSmall, PAGE_RLS, []), emptySample()],
    ]);
    await timeInterleaved(ROUNDS * QUERIES_PER_ROUND, [
      [() => inTransaction(ownerClient, ownerSettingsSmall, PAGE_EXPLICIT, [small.tenantId]), explicit],
      [() => inTransaction(rlsClient, settingsSmall, PAGE_RLS, []), rls],
      [() => inTransaction(rlsClient, settingsLarge, PAGE_RLS, []), rlsLarge],
      [() => inTransaction(rlsClient, settingsSmall, PAGE_TENANT_ONLY, []), tenantOnly],
    ]);
    rlsClient.release();
    ownerClient.release();

    // GraphQL over HTTP vs the SQL it generates, over HTTP, on one server.
    const masterKey = parseMasterKey(randomBytes(32).toString("base64"));
    const key = await loadActiveSigningKey(owner, masterKey);
    const token = (await mintAccessToken(key, identityOf(small), { issuer: "http://bench.authhub", ttlSeconds: 3600 })).token;
    const query = "{ users(first: 20) { nodes { rowId email displayName level } } }";
    // Capture the SQL with a development-mode instance (explain on).
    const devApp = await makeApp({
      config: readConfig({ NODE_ENV: "development", AUTHHUB_ISSUER: "http://bench.authhub", LOG_LEVEL: "silent" }),
      authPool: auth,
      logger: makeLogger("silent"),
      masterKey,
    });
    const devServer = devApp.server.listen(0, "127.0.0.1");
    await new Promise((r) => devServer.once("listening", r));
    const devUrl = `http://127.0.0.1:${(devServer.address() as AddressInfo).port}/graphql`;
    const explained = (await (
      await fetch(devUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}`, "X-GraphQL-Explain": "sql" },
        body: JSON.stringify({ query }),
      })
    ).json()) as { data: unknown; extensions: { explain: { operations: { type: string; query?: string }[] } } };
    await new Promise((r) => devServer.close(r));
    await devApp.release();
    const generatedSql = explained.extensions.explain.operations.find((o) => o.type === "sql")!.query!;

    // A local identity provider for token exchange, and a user it vouches for.
    const idp = await startLocalIdp({ alg: "ES256" });
    await owner.query("update authhub.users set external_id = 'bench|admin' where id = $1", [small.adminId]);
    const config = readConfig({
      NODE_ENV: "production",
      DATABASE_URL: ownerUrl,
      AUTHHUB_MASTER_KEY: randomBytes(32).toString("base64"),
      AUTHHUB_ISSUER: "http://bench.authhub",
      LOG_LEVEL: "silent",
      AUTHHUB_TRUSTED_ISSUERS: JSON.stringify([{ issuer: idp.issuer, jwksUri: idp.jwksUri }]),
      // The abuse limits would stop a benchmark: far above what it sends.
      AUTHHUB_TOKEN_RATE_LIMIT_IP: "1000000",
      AUTHHUB_TOKEN_RATE_LIMIT_SUBJECT: "1000000",
    });
    const app = await makeApp({ config, authPool: auth, logger: makeLogger("silent"), masterKey });
    // The baseline route: same server, same pool, same settings and transaction, the generated SQL, JSON out.
    const raw = express.Router();
    raw.post("/bench/raw", async (_req, res) => {
      const client = await auth.connect();
      try {
        res.json({ data: await inTransaction(client, settingsSmall, generatedSql, []) });
      } finally {
        client.release();
      }
    });
    const outer = express();
    outer.use(raw);
    outer.use(app.app);
    const server = http.createServer(outer);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const viaGraphQL = () =>
      fetch(`${base}/graphql`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
        body: JSON.stringify({ query }),
      }).then(async (r) => {
        const body = (await r.json()) as { data?: { users: { nodes: unknown[] } } };
        if (body.data?.users.nodes.length !== 20) throw new Error(`unexpected GraphQL answer ${JSON.stringify(body)}`);
      });
    const viaRaw = () =>
      fetch(`${base}/bench/raw`, { method: "POST" }).then(async (r) => {
        const body = (await r.json()) as { data: unknown[] };
        if (body.data.length !== 21 && body.data.length !== 20) throw new Error("unexpected raw answer");
      });
    await timeConcurrent(50, HTTP_CONCURRENCY, viaGraphQL, emptySample());
    await timeConcurrent(50, HTTP_CONCURRENCY, viaRaw, emptySample());
    const gqlSample = emptySample();
    const rawSample = emptySample();
    for (let round = 0; round < ROUNDS; round++) {
      await timeConcurrent(HTTP_PER_ROUND, HTTP_CONCURRENCY, viaRaw, rawSample);
      await timeConcurrent(HTTP_PER_ROUND, HTTP_CONCURRENCY, viaGraphQL, gqlSample);
    }
    // The decision API against the cheapest endpoint on the same server (issue 3).
    const viaAuthorize = () =>
      fetch(`${base}/v1/authorize`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
        body: JSON.stringify({ permission: "user:write" }),
      }).then(async (r) => {
        const body = (await r.json()) as { allowed?: boolean };
        if (body.allowed !== true) throw new Error(`unexpected authorize answer ${JSON.stringify(body)}`);
      });
    const viaHealth = () => fetch(`${base}/healthz`).then((r) => r.json());
    await timeConcurrent(100, HTTP_CONCURRENCY, viaAuthorize, emptySample());
    // Throughput at the shared concurrency; latency one request at a time, since
    // the client shares this process and its two cores with the server.
    const authorizeSample = emptySample();
    const healthSample = emptySample();
    const authorizeLatency = emptySample();
    const healthLatency = emptySample();
    for (let round = 0; round < ROUNDS; round++) {
      await timeConcurrent(HTTP_PER_ROUND, HTTP_CONCURRENCY, viaHealth, healthSample);
      await timeConcurrent(HTTP_PER_ROUND, HTTP_CONCURRENCY, viaAuthorize, authorizeSample);
    }
    await timeInterleaved(ROUNDS * HTTP_PER_ROUND, [
      [viaHealth, healthLatency],
      [viaAuthorize, authorizeLatency],
    ]);
    // A GraphQL mutation end to end, with the organizations table's audit triggers on and off (issue 4).
    let orgN = 0;
    const createOrg = () =>
      fetch(`${base}/graphql`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
        body: JSON.stringify({
          query: `mutation { createOrganization(input: { organization: { slug: "b${process.pid}-${orgN++}", name: "Bench" } }) { organization { rowId } } }`,
        }),
      }).then(async (r) => {
        const body = (await r.json()) as { errors?: unknown };
        if (body.errors) throw new Error(`unexpected mutation answer ${JSON.stringify(body)}`);
      });
    const auditTriggers = (on: boolean) =>
      owner.query(
        ["insert", "update", "delete", "truncate"].map((op) => `alter table authhub.organizations ${on ? "enable always" : "disable"} trigger _900_audit_${op};`).join(" "),
      );
    const mutationAudited = emptySample();
    const mutationPlain = emptySample();
    await timeConcurrent(50, 1, createOrg, emptySample());
    for (let round = 0; round < ROUNDS; round++) {
      await auditTriggers(false);
      await timeConcurrent(HTTP_PER_ROUND / 2, 1, createOrg, mutationPlain);
      await auditTriggers(true);
      await timeConcurrent(HTTP_PER_ROUND / 2, 1, createOrg, mutationAudited);
    }
    process.stderr.write("webhooks: delivered and applied…\n");
    const webhooks = await measureWebhooks({
      owner,
      ownerUrl,
      base,
      masterKey,
      tenantId: small.tenantId,
      count: HTTP_PER_ROUND,
      rounds: ROUNDS,
      concurrency: HTTP_CONCURRENCY,
      paced: { count: WEBHOOK_STEADY_COUNT, perSecond: WEBHOOK_STEADY_RATE },
      mint: async (identity) => (await mintAccessToken(key, identity, { issuer: "http://bench.authhub", ttlSeconds: 3600 })).token,
      effects: 100,
    });

    process.stderr.write("auth api: token exchange and refresh…\n");
    const authApi = await measureAuthApi({
      base,
      idp,
      tenant: "small",
      externalId: "bench|admin",
      requests: HTTP_PER_ROUND,
      rounds: ROUNDS,
      concurrency: HTTP_CONCURRENCY,
      empty: emptySample,
    });
    await idp.close();
    await new Promise((r) => server.close(r));
    await app.release();

    process.stderr.write("open api: signed requests…\n");
    const openApi = await measureOpenApi({
      owner,
      auth,
      masterKey,
      tenantId: small.tenantId,
      requests: HTTP_PER_ROUND,
      rounds: ROUNDS,
      concurrency: HTTP_CONCURRENCY,
      empty: emptySample,
    });

    process.stderr.write("audit: inserts, then a log of 1M events…\n");
    const inserts = await measureAuditInserts(owner, small.tenantId, ROUNDS, timeInterleaved, emptySample);
    const auditQuery = await measureAuditQuery(owner, auth, settingsSmall, small.tenantId, large.tenantId, timeInterleaved, emptySample);

    const rows = [
      {
        benchmark: "RLS cost: tenant admin, 20 users (RLS ÷ explicit filter, throughput)",
        ratio: throughput(rls) / throughput(explicit),
        target: "≥ 0.85",
        pass: throughput(rls) / throughput(explicit) >= 0.85,
        detail: `RLS ${throughput(rls).toFixed(0)}/s p50 ${pct(rls.ms, 50).toFixed(3)} ms; explicit ${throughput(explicit).toFixed(0)}/s p50 ${pct(explicit.ms, 50).toFixed(3)} ms`,
      },
      {
        benchmark: "Scale: p50 on 100k-user tenant ÷ p50 on 1k-user tenant",
        ratio: pct(rlsLarge.ms, 50) / pct(rls.ms, 50),
        target: "≤ 1.5",
        pass: pct(rlsLarge.ms, 50) / pct(rls.ms, 50) <= 1.5,
        detail: `100k p50 ${pct(rlsLarge.ms, 50).toFixed(3)} ms; 1k p50 ${pct(rls.ms, 50).toFixed(3)} ms`,
      },
      {
        benchmark: "GraphQL overhead: /graphql ÷ generated SQL over HTTP (throughput)",
        ratio: throughput(gqlSample) / throughput(rawSample),
        target: "≥ 0.35",
        pass: throughput(gqlSample) / throughput(rawSample) >= 0.35,
        detail: `GraphQL ${throughput(gqlSample).toFixed(0)}/s p50 ${pct(gqlSample.ms, 50).toFixed(2)} ms p99 ${pct(gqlSample.ms, 99).toFixed(2)} ms; raw ${throughput(rawSample).toFixed(0)}/s p50 ${pct(rawSample.ms, 50).toFixed(2)} ms p99 ${pct(rawSample.ms, 99).toFixed(2)} ms`,
      },
      {
        benchmark: "RBAC: permission policy ÷ tenant-only policy, 20 users (throughput)",
        ratio: throughput(rls) / throughput(tenantOnly),
        target: "≥ 0.8",
        pass: throughput(rls) / throughput(tenantOnly) >= 0.8,
        detail: `permission policy ${throughput(rls).toFixed(0)}/s p50 ${pct(rls.ms, 50).toFixed(3)} ms; tenant-only ${throughput(tenantOnly).toFixed(0)}/s p50 ${pct(tenantOnly.ms, 50).toFixed(3)} ms`,
      },
      {
        benchmark: "RBAC decision: /v1/authorize ÷ /healthz (throughput); p99 of authorize ≤ 5 ms",
        ratio: throughput(authorizeSample) / throughput(healthSample),
        target: "report; p99 ≤ 5 ms",
        pass: pct(authorizeLatency.ms, 99) <= 5,
        detail:
          `throughput at concurrency ${HTTP_CONCURRENCY}: authorize ${throughput(authorizeSample).toFixed(0)}/s (p99 ${pct(authorizeSample.ms, 99).toFixed(2)} ms), healthz ${throughput(healthSample).toFixed(0)}/s; ` +
          `latency one at a time: authorize p50 ${pct(authorizeLatency.ms, 50).toFixed(2)} ms p99 ${pct(authorizeLatency.ms, 99).toFixed(2)} ms, healthz p50 ${pct(healthLatency.ms, 50).toFixed(2)} ms p99 ${pct(healthLatency.ms, 99).toFixed(2)} ms`,
      },
      {
        benchmark: "Audit: single-row insert, audited ÷ unaudited (throughput)",
        ratio: throughput(inserts.single.audited) / throughput(inserts.single.plain),
        target: "≥ 0.6",
        pass: throughput(inserts.single.audited) / throughput(inserts.single.plain) >= 0.6,
        detail: `audited ${throughput(inserts.single.audited).toFixed(0)}/s; unaudited ${throughput(inserts.single.plain).toFixed(0)}/s`,
      },
      {
        benchmark: "Audit: 100-row insert, audited ÷ unaudited (throughput)",
        ratio: throughput(inserts.batch.audited) / throughput(inserts.batch.plain),
        target: "≥ 0.35",
        pass: throughput(inserts.batch.audited) / throughput(inserts.batch.plain) >= 0.35,
        detail: `audited ${throughput(inserts.batch.audited).toFixed(0)}/s; unaudited ${throughput(inserts.batch.plain).toFixed(0)}/s (statements of 100 rows)`,
      },
      {
        benchmark: "Audit: GraphQL createOrganization, audited ÷ unaudited (throughput)",
        ratio: throughput(mutationAudited) / throughput(mutationPlain),
        target: "≥ 0.85",
        pass: throughput(mutationAudited) / throughput(mutationPlain) >= 0.85,
        detail: `audited ${throughput(mutationAudited).toFixed(0)}/s p50 ${pct(mutationAudited.ms, 50).toFixed(2)} ms; unaudited ${throughput(mutationPlain).toFixed(0)}/s p50 ${pct(mutationPlain.ms, 50).toFixed(2)} ms`,
      },
      {
        benchmark: "Audit: last 50 events of a tenant, p50 at ~1M ÷ at ~10k events",
        ratio: pct(auditQuery.large.ms, 50) / pct(auditQuery.small.ms, 50),
        target: "report; flat",
        pass: pct(auditQuery.large.ms, 50) / pct(auditQuery.small.ms, 50) <= 1.5,
        detail: `p50 ${pct(auditQuery.small.ms, 50).toFixed(3)} ms at ~10k events; ${pct(auditQuery.large.ms, 50).toFixed(3)} ms at ${auditQuery.total} events`,
      },
      {
        benchmark: "Auth: token exchange ÷ /healthz (throughput)",
        ratio: throughput(authApi.throughput.exchange) / throughput(authApi.throughput.health),
        target: "report",
        pass: true,
        detail:
          `throughput at concurrency ${HTTP_CONCURRENCY}: exchange ${throughput(authApi.throughput.exchange).toFixed(0)}/s (p99 ${pct(authApi.throughput.exchange.ms, 99).toFixed(2)} ms), healthz ${throughput(authApi.throughput.health).toFixed(0)}/s; ` +
          `latency one at a time: exchange p50 ${pct(authApi.latency.exchange.ms, 50).toFixed(2)} ms p99 ${pct(authApi.latency.exchange.ms, 99).toFixed(2)} ms, healthz p50 ${pct(authApi.latency.health.ms, 50).toFixed(2)} ms p99 ${pct(authApi.latency.health.ms, 99).toFixed(2)} ms`,
      },
      {
        benchmark: "Auth: refresh ÷ /healthz (throughput); p99 of refresh ≤ 10 ms",
        ratio: throughput(authApi.throughput.refresh) / throughput(authApi.throughput.health),
        target: "report; p99 ≤ 10 ms",
        pass: pct(authApi.latency.refresh.ms, 99) <= 10,
        detail:
          `throughput at concurrency ${HTTP_CONCURRENCY}: refresh ${throughput(authApi.throughput.refresh).toFixed(0)}/s (p99 ${pct(authApi.throughput.refresh.ms, 99).toFixed(2)} ms); ` +
          `latency one at a time: refresh p50 ${pct(authApi.latency.refresh.ms, 50).toFixed(2)} ms p99 ${pct(authApi.latency.refresh.ms, 99).toFixed(2)} ms`,
      },
      {
        benchmark: "Open API: signed GET /open/v1/users ÷ authentication skipped, key read per request (throughput)",
        ratio: throughput(openApi.signedNoCache) / throughput(openApi.skipped),
        target: "≥ 0.5",
        pass: throughput(openApi.signedNoCache) / throughput(openApi.skipped) >= 0.5,
        detail: `signed ${throughput(openApi.signedNoCache).toFixed(0)}/s p50 ${pct(openApi.signedNoCache.ms, 50).toFixed(2)} ms; skipped ${throughput(openApi.skipped).toFixed(0)}/s p50 ${pct(openApi.skipped.ms, 50).toFixed(2)} ms`,
      },
      {
        benchmark: "Open API: signed GET /open/v1/users ÷ authentication skipped, key cache valid (throughput)",
        ratio: throughput(openApi.signedCached) / throughput(openApi.skipped),
        target: "≥ 0.85",
        pass: throughput(openApi.signedCached) / throughput(openApi.skipped) >= 0.85,
        detail: `signed ${throughput(openApi.signedCached).toFixed(0)}/s p50 ${pct(openApi.signedCached.ms, 50).toFixed(2)} ms; skipped ${throughput(openApi.skipped).toFixed(0)}/s`,
      },
      {
        benchmark: "Open API: rate limiting on ÷ off (signed, key cached; throughput)",
        ratio: throughput(openApi.signedCachedLimited) / throughput(openApi.signedCached),
        target: "≥ 0.9",
        pass: throughput(openApi.signedCachedLimited) / throughput(openApi.signedCached) >= 0.9,
        detail: `limited ${throughput(openApi.signedCachedLimited).toFixed(0)}/s p50 ${pct(openApi.signedCachedLimited.ms, 50).toFixed(2)} ms; unlimited ${throughput(openApi.signedCached).toFixed(0)}/s p50 ${pct(openApi.signedCached.ms, 50).toFixed(2)} ms`,
      },
      {
        benchmark: "Webhooks: delivered + applied per second ÷ raw add_job + no-op task (same worker, concurrency)",
        ratio: webhooks.hooksPerSecond / webhooks.rawPerSecond,
        target: "≥ 0.5",
        pass: webhooks.hooksPerSecond / webhooks.rawPerSecond >= 0.5,
        detail: `webhooks ${webhooks.hooksPerSecond.toFixed(0)}/s; raw ${webhooks.rawPerSecond.toFixed(0)}/s`,
      },
      {
        benchmark: `Webhooks: accept-to-start p99 ÷ raw add_job-to-start p99 (${webhooks.perSecond}/s, side by side)`,
        ratio: webhooks.hooksStartP99 / webhooks.rawP99,
        target: "≤ 2",
        pass: webhooks.hooksStartP99 / webhooks.rawP99 <= 2,
        detail:
          `webhook p99 ${webhooks.hooksStartP99.toFixed(1)} ms (202 to the start of its application); raw p99 ${webhooks.rawP99.toFixed(1)} ms; ` +
          `webhook to effect (a role change sent until /v1/authorize answers accordingly): p50 ${webhooks.effectP50.toFixed(1)} ms, p99 ${webhooks.effectP99.toFixed(1)} ms, max ${webhooks.effectMax.toFixed(1)} ms`,
      },
      {
        benchmark: `Webhooks: accept-to-commit p99 ÷ raw add_job-to-start p99 (${webhooks.perSecond}/s, side by side)`,
        ratio: webhooks.hooksCommitP99 / webhooks.rawP99,
        target: "report",
        pass: true,
        detail: `webhook p99 ${webhooks.hooksCommitP99.toFixed(1)} ms (202 to the drain's commit: the change is visible); raw p99 ${webhooks.rawP99.toFixed(1)} ms`,
      },
      {
        benchmark: "Webhooks: accept-to-commit p99 ÷ raw add_job-to-start p99, during the throughput bursts",
        ratio: webhooks.burstHooksCommitP99 / webhooks.burstRawP99,
        target: "report",
        pass: true,
        detail: `webhook p99 ${webhooks.burstHooksCommitP99.toFixed(1)} ms; raw p99 ${webhooks.burstRawP99.toFixed(1)} ms (a queue forms on both sides)`,
      },
    ];
    // Retail data hub (issue 16): bench/retail.ts, sized by --retail-orders N.
    rows.push(...(await measureRetail({ ownerUrl, authUrl, masterKey })).map((r) => ({ benchmark: r.name, ratio: r.measured, target: r.target, pass: r.pass, detail: r.detail })));
    console.log("\nAuthHub benchmarks\n");
    console.table(rows.map((r) => ({ benchmark: r.benchmark, ratio: r.ratio.toFixed(3), target: r.target, pass: r.pass ? "yes" : "NO" })));
    for (const r of rows) console.log(`- ${r.benchmark}: ${r.detail}`);
    console.log(`\nPlan of the RLS page (1k tenant):\n${planText}\n`);
    const resultsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), "results");
    mkdirSync(resultsDir, { recursive: true });
    const file = path.join(resultsDir, `bench-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
    writeFileSync(
      file,
      JSON.stringify(
        {
          when: new Date().toISOString(),
          machine: { cpus: os.cpus().length, node: process.version, postgres: (await owner.query<{ server_version: string }>("show server_version")).rows[0]!.server_version },
          settings: { ROUNDS, QUERIES_PER_ROUND, HTTP_PER_ROUND, HTTP_CONCURRENCY, WEBHOOK_STEADY_RATE, WEBHOOK_STEADY_COUNT },
          results: rows,
          generatedSql,
          plan: planText,
        },
        null,
        2,
      ),
    );
    console.log(`saved ${path.relative(process.cwd(), file)}`);
  } finally {
    await owner.end();
    await auth.end();
    const root = new pg.Client({ connectionString: rootUrl });
    await root.connect();
    await root.query(`drop database if exists ${pg.escapeIdentifier(database)} with (force)`);
    await root.end();
    await cluster.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
