/**
 * The server over HTTP (issues 2, 3, 4), one server for these rows and for the
 * Auth API's and the webhooks' (bench/auth.ts, bench/webhooks.ts):
 *  - GraphQL overhead: the tenant admin's 20-user page through /graphql vs an
 *    HTTP route on the same server running the SQL PostGraphile generated for
 *    it (captured from its explain output) in the same transaction shape.
 *    Target ≥ 0.35.
 *  - POST /v1/authorize (one check) vs GET /healthz: the throughput ratio at the
 *    shared concurrency (reported), and p99 latency one request at a time (the
 *    client runs in this process, on the same two cores). Target p99 ≤ 5 ms.
 *  - A GraphQL createOrganization with the organizations table's audit
 *    triggers enabled vs disabled, alternating bursts. Target ≥ 0.85.
 */
import express from "express";
import { randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { makeApp } from "../server/app.js";
import { parseMasterKey, type MasterKey } from "../server/auth/masterKey.js";
import { loadActiveSigningKey, mintAccessToken } from "../server/auth/signingKeys.js";
import { readConfig } from "../server/config.js";
import { makeLogger } from "../server/logger.js";
import type { Identity } from "../db/claims.js";
import { startLocalIdp, type LocalIdp } from "../test/helpers/idp.js";
import type { BenchContext } from "./context.js";
import { request, rlsBegin, tenantAdmin } from "./rls.js";
import { bursts, describe, interleave, latencyRow, ratioRow, type Row } from "./stats.js";

const ISSUER = "http://bench.authhub";
const PAGE_QUERY = "{ users(first: 20) { nodes { rowId email displayName level } } }";

export interface BenchServer {
  base: string;
  masterKey: MasterKey;
  idp: LocalIdp;
  /** The tenant admin's access token. */
  token: string;
  /** The SQL PostGraphile generated for the page. */
  generatedSql: string;
  mint: (identity: Identity) => Promise<string>;
  close: () => Promise<void>;
}

/** The production server (with a local identity provider trusted), plus the baseline route /bench/raw. */
export async function startServer(ctx: BenchContext): Promise<BenchServer> {
  const { owner, auth, ownerUrl, small } = ctx;
  const masterKey = parseMasterKey(randomBytes(32).toString("base64"));
  const key = await loadActiveSigningKey(owner, masterKey);
  const mint = async (identity: Identity) => (await mintAccessToken(key, identity, { issuer: ISSUER, ttlSeconds: 3600 })).token;
  const token = await mint(tenantAdmin(ctx));
  // Capture the page's SQL with a development-mode instance (explain on).
  const devApp = await makeApp({
    config: readConfig({ NODE_ENV: "development", AUTHHUB_ISSUER: ISSUER, LOG_LEVEL: "silent" }),
    authPool: auth,
    logger: makeLogger("silent"),
    masterKey,
  });
  const devServer = devApp.server.listen(0, "127.0.0.1");
  await new Promise((r) => devServer.once("listening", r));
  const explained = (await (
    await fetch(`http://127.0.0.1:${(devServer.address() as AddressInfo).port}/graphql`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}`, "X-GraphQL-Explain": "sql" },
      body: JSON.stringify({ query: PAGE_QUERY }),
    })
  ).json()) as { extensions: { explain: { operations: { type: string; query?: string }[] } } };
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
    AUTHHUB_ISSUER: ISSUER,
    LOG_LEVEL: "silent",
    AUTHHUB_TRUSTED_ISSUERS: JSON.stringify([{ issuer: idp.issuer, jwksUri: idp.jwksUri }]),
    // The abuse limits would stop a benchmark: far above what it sends.
    AUTHHUB_TOKEN_RATE_LIMIT_IP: "1000000",
    AUTHHUB_TOKEN_RATE_LIMIT_SUBJECT: "1000000",
    AUTHHUB_GRAPHQL_RATE_LIMIT_USER: "10000000",
    AUTHHUB_GRAPHQL_RATE_LIMIT_TENANT: "100000000",
  });
  const app = await makeApp({ config, authPool: auth, logger: makeLogger("silent"), masterKey });
  // The baseline route: same server, same pool, the transaction as GraphQL opens it, the generated SQL, JSON out.
  const raw = express.Router();
  const begin = rlsBegin(tenantAdmin(ctx));
  raw.post("/bench/raw", async (_req, res) => {
    const client = await auth.connect();
    try {
      res.json({ data: await request(client, begin, generatedSql) });
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
  const close = async () => {
    await idp.close();
    await new Promise((r) => server.close(r));
    await app.release();
  };
  return { base, masterKey, idp, token, generatedSql, mint, close };
}

export async function measureHttp(ctx: BenchContext, server: BenchServer): Promise<Row[]> {
  const { owner, sizes } = ctx;
  const { base, token } = server;
  const json = { "Content-Type": "application/json", Authorization: `Bearer ${token}` };
  const viaGraphQL = () =>
    fetch(`${base}/graphql`, { method: "POST", headers: json, body: JSON.stringify({ query: PAGE_QUERY }) }).then(async (r) => {
      const body = (await r.json()) as { data?: { users: { nodes: unknown[] } } };
      if (body.data?.users.nodes.length !== 20) throw new Error(`unexpected GraphQL answer ${JSON.stringify(body)}`);
    });
  const viaRaw = () =>
    fetch(`${base}/bench/raw`, { method: "POST" }).then(async (r) => {
      const body = (await r.json()) as { data: unknown[] };
      if (body.data.length !== 21 && body.data.length !== 20) throw new Error("unexpected raw answer");
    });
  const viaAuthorize = () =>
    fetch(`${base}/v1/authorize`, { method: "POST", headers: json, body: JSON.stringify({ permission: "user:write" }) }).then(async (r) => {
      const body = (await r.json()) as { allowed?: boolean };
      if (body.allowed !== true) throw new Error(`unexpected authorize answer ${JSON.stringify(body)}`);
    });
  const viaHealth = () => fetch(`${base}/healthz`).then((r) => r.json());

  process.stderr.write("http: GraphQL vs its SQL, /v1/authorize vs /healthz, audited mutations…\n");
  const burst = { requests: sizes.httpPerRound, concurrency: sizes.httpConcurrency, warmup: 50 };
  const gql = await bursts(
    sizes.rounds,
    [
      { name: "graphql", run: viaGraphQL },
      { name: "raw", run: viaRaw },
    ],
    burst,
  );
  const authz = await bursts(
    sizes.rounds,
    [
      { name: "health", run: viaHealth },
      { name: "authorize", run: viaAuthorize },
    ],
    burst,
  );
  // Latency one request at a time, since the client shares this process and its two cores with the server.
  const authzLatency = await interleave(
    sizes.rounds,
    [
      { name: "health", run: viaHealth },
      { name: "authorize", run: viaAuthorize },
    ],
    { calls: sizes.httpPerRound, warmup: 20 },
  );

  // A GraphQL mutation end to end, with the organizations table's audit triggers on and off (issue 4).
  let orgN = 0;
  const createOrg = () =>
    fetch(`${base}/graphql`, {
      method: "POST",
      headers: json,
      body: JSON.stringify({ query: `mutation { createOrganization(input: { organization: { slug: "b${process.pid}-${orgN++}", name: "Bench" } }) { organization { rowId } } }` }),
    }).then(async (r) => {
      const body = (await r.json()) as { errors?: unknown };
      if (body.errors) throw new Error(`unexpected mutation answer ${JSON.stringify(body)}`);
    });
  const auditTriggers = async (on: boolean) => {
    await owner.query(
      ["insert", "update", "delete", "truncate"].map((op) => `alter table authhub.organizations ${on ? "enable always" : "disable"} trigger _900_audit_${op};`).join(" "),
    );
  };
  const mutations = await bursts(
    sizes.rounds,
    [
      { name: "plain", run: createOrg, before: () => auditTriggers(false) },
      { name: "audited", run: createOrg, before: () => auditTriggers(true) },
    ],
    { requests: Math.round(sizes.httpPerRound / 4), concurrency: 1, warmup: 10 },
  );
  await auditTriggers(true);

  return [
    ratioRow({
      benchmark: "GraphQL overhead: /graphql ÷ generated SQL over HTTP (throughput)",
      numerator: gql.graphql!,
      denominator: gql.raw!,
      target: { atLeast: 0.35 },
      names: ["GraphQL", "raw"],
    }),
    ratioRow({
      benchmark: `RBAC decision: /v1/authorize ÷ /healthz (throughput at concurrency ${sizes.httpConcurrency})`,
      numerator: authz.authorize!,
      denominator: authz.health!,
      target: "report",
      names: ["authorize", "healthz"],
    }),
    latencyRow({
      benchmark: "RBAC decision: /v1/authorize p99, one at a time",
      samples: authzLatency.authorize!,
      metric: "p99",
      target: { atMost: 5 },
      name: "authorize",
      note: describe("healthz", authzLatency.health!),
    }),
    ratioRow({
      benchmark: "Audit: GraphQL createOrganization, audited ÷ unaudited (throughput)",
      numerator: mutations.audited!,
      denominator: mutations.plain!,
      target: { atLeast: 0.85 },
      names: ["audited", "unaudited"],
    }),
  ];
}
