/**
 * Retail data hub benchmarks (issue 16), called by bench/run.ts, or alone:
 * `npx tsx bench/retail.ts [--retail-orders N]` (BENCH_DATABASE_URL as in
 * run.ts). Data: db/seed/retail.ts's seedRetail, as `seed demo` makes it, in a
 * 1,000-store tenant (N orders) and a 10-store tenant sized so that its
 * largest store (store-a) holds as many orders as the large tenant's.
 *
 * Every ratio is measured side by side in one run: each round runs every
 * contender once, the order alternating between rounds, and a row reports
 * the median of the rounds' ratios with their spread (min–max).
 *
 *  1. Push ingest: 500-order batches through POST /open/v1/sync/orders (signed
 *     with a store's API key; validation, RLS, version guard, audit, rollup
 *     marks, the worker folding) ÷ a bare batched INSERT … ON CONFLICT of the
 *     same rows as the owner into trigger-less copies of the tables. Target
 *     ≥ 0.5 and ≥ 10,000 order lines/s; COPY of the same rows is the ceiling.
 *  2. The same batch again under a new Idempotency-Key (every row unchanged):
 *     ≤ 0.3× the first apply's time; 0 rows changed and 0 audit rows, asserted.
 *  3. Ingest with the rollup triggers ÷ without (disabled as the owner, on
 *     another store, so the first store's rollups stay exact): ≥ 0.75; and
 *     ingest-to-visible in daily_store_totals, folded by the real worker:
 *     p95 ≤ 2 s.
 *  4. 90 days of a store's daily sales through /graphql (dailyStoreTotals):
 *     p95 ≤ 25 ms; and the same answer from the rollup ≥ 100× faster than
 *     aggregated from the raw orders and lines.
 *  5. A store admin's aggregate under RLS ÷ the same SQL as the owner with an
 *     explicit store filter: ≥ 0.85; p50 in the 1,000-store tenant ÷ in the
 *     10-store tenant: ≤ 1.5.
 *  6. An admin's updateOrder through /graphql carrying `version`, with the
 *     orders' audit triggers on ÷ without version, audit off: ≥ 0.85 (version
 *     only and audit only are timed beside them, and the UPDATE statement
 *     alone, to attribute the difference).
 *
 * Where a row misses, the module measures why: the sync's steps timed in SQL,
 * the statements' plans (EXPLAIN ANALYZE) in the saved results. bench/README.md
 * explains the misses.
 */
import "../server/env.js";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import pg from "pg";
import { signRequest } from "../client/index.js";
import { beginRequestStatement, pgSettingsFor, pgSettingsForApiKey, type Identity } from "../db/claims.js";
import { runMigrations } from "../db/migrate.js";
import { startScratchCluster } from "../db/scratch.js";
import { demoIdentityPlan, seedIdentity } from "../db/seed/identity.js";
import { seedRetail } from "../db/seed/retail.js";
import { AUTHENTICATOR_ROLE, ensureRolesAndDatabase, OWNER_ROLE, withCredentials } from "../db/setup.js";
import { makeApp } from "../server/app.js";
import { parseMasterKey, type MasterKey } from "../server/auth/masterKey.js";
import { loadActiveSigningKey, mintAccessToken } from "../server/auth/signingKeys.js";
import { readConfig } from "../server/config.js";
import { makeLogger } from "../server/logger.js";
import { issueApiKey } from "../server/openapi/issue.js";
import { startWorker } from "../worker/runner.js";
import { prng } from "../test/helpers/prng.js";
import { median, percentile, printRows, type Row } from "./stats.js";

/** One result line before it becomes bench/stats.ts's Row. */
interface RetailRow {
  name: string;
  /** The median of the per-round figures (the ingest-to-visible row: the p95 of all probes). */
  measured: number;
  /** "ratio", or "ms". */
  unit: string;
  perRound: number[];
  target: string;
  pass: boolean;
  detail: string;
}
const toRow = (r: RetailRow): Row => ({
  benchmark: r.name,
  value: r.measured,
  unit: r.unit,
  spread: [Math.min(...r.perRound), Math.max(...r.perRound)],
  perRound: r.perRound,
  target: r.target,
  pass: r.pass,
  detail: r.detail,
});

export interface RetailBenchOptions {
  /** The migrated database, as its owner and as the server's login role. */
  ownerUrl: string;
  authUrl: string;
  masterKey: MasterKey;
  /** Orders in the 1,000-store tenant (default: --retail-orders, BENCH_RETAIL_ORDERS, or 100,000). */
  orders?: number;
  /** Interleaved rounds per comparison (default BENCH_RETAIL_ROUNDS or 3; at least 3). */
  rounds?: number;
  log?: (line: string) => void;
}

export const DEFAULT_RETAIL_ORDERS = 100_000;
const BATCH_ORDERS = 500;
/** Batches per contender per round. */
const BATCHES = Number(process.env.BENCH_RETAIL_BATCHES ?? 3);
/** The large tenant's stores (a smaller number only to try the module out quickly). */
const LARGE_STORES = Number(process.env.BENCH_RETAIL_LARGE_STORES ?? 1000);
const SMALL_STORES = 10;

/** `--retail-orders N` (or `--retail-orders=N`), else BENCH_RETAIL_ORDERS, else the CI size. */
export function retailOrdersFromArgs(argv: readonly string[] = process.argv, env: NodeJS.ProcessEnv = process.env): number {
  let raw: string | undefined = env.BENCH_RETAIL_ORDERS;
  argv.forEach((a, i) => {
    if (a === "--retail-orders") raw = argv[i + 1];
    else if (a.startsWith("--retail-orders=")) raw = a.slice("--retail-orders=".length);
  });
  if (raw === undefined || raw === "") return DEFAULT_RETAIL_ORDERS;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1000) throw new Error(`--retail-orders must be a whole number of at least 1000 (got ${raw})`);
  return n;
}

// Medians and percentiles are bench/stats.ts's; a figure per round, and its spread, for the detail lines.
interface Spread {
  median: number;
  min: number;
  max: number;
  perRound: number[];
}
const spread = (xs: readonly number[]): Spread => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs), perRound: [...xs] });
const fmt = (x: number, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : String(x));
const fmtSpread = (s: Spread, digits = 2) => `${fmt(s.median, digits)} (rounds ${fmt(s.min, digits)}–${fmt(s.max, digits)})`;

const harmonic = (n: number) => Array.from({ length: n }, (_, i) => 1 / (i + 1)).reduce((a, b) => a + b, 0);

interface Line {
  lineNo: number;
  sku: string;
  quantity: number;
  unitPriceMinor: number;
  taxMinor: number;
}
interface Order {
  externalId: string;
  number: string;
  status: string;
  currency: string;
  placedAt: string;
  lines: Line[];
}
const orderTotal = (o: Order) => o.lines.reduce((n, l) => n + l.quantity * l.unitPriceMinor + l.taxMinor, 0);
const counted = (o: Order) => o.status === "paid" || o.status === "fulfilled";

/** A batch of new orders as a store's system sends them: 1–5 lines (3 on average), over the last 89 days. */
function makeBatch(prefix: string, seed: number, currency: string, variants: { sku: string; price: number }[]): Order[] {
  const r = prng(seed);
  return Array.from({ length: BATCH_ORDERS }, (_, i) => {
    const s = r();
    const lines = Array.from({ length: 1 + Math.floor(r() * 5) }, (_, l) => {
      const v = variants[Math.floor(r() * variants.length)]!;
      return { lineNo: l + 1, sku: v.sku, quantity: 1 + Math.floor(r() * 3), unitPriceMinor: v.price, taxMinor: Math.floor(v.price * 0.1) };
    });
    return {
      externalId: `${prefix}-${i}`,
      number: `${prefix}-${i}`,
      status: s < 0.7 ? "paid" : s < 0.85 ? "fulfilled" : s < 0.95 ? "pending" : "cancelled",
      currency,
      placedAt: new Date(Date.now() - Math.floor(r() * 89 * 86_400_000)).toISOString().replace("Z", "+00:00"),
      lines,
    };
  });
}
const syncRows = (orders: Order[]) =>
  orders.map((o) => ({ externalId: o.externalId, version: 1, data: { number: o.number, status: o.status, currency: o.currency, placedAt: o.placedAt, lines: o.lines } }));
const syncBody = (orders: Order[]) => JSON.stringify({ rows: syncRows(orders) });

/**
 * COPY … FROM STDIN over node-pg's protocol hooks (a "submittable"): the
 * ceiling for writing the rows. pg has no COPY API of its own.
 */
function copyFrom(client: pg.PoolClient, sql: string, data: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let failed: Error | null = null;
    interface Connection {
      query(text: string): void;
      sendCopyFromChunk(chunk: Buffer): void;
      endCopyFrom(): void;
    }
    const submittable = {
      submit: (connection: Connection) => connection.query(sql),
      handleCopyInResponse: (connection: Connection) => {
        connection.sendCopyFromChunk(Buffer.from(data));
        connection.endCopyFrom();
      },
      handleCommandComplete: () => undefined,
      handleError: (err: Error) => {
        failed = err;
      },
      handleReadyForQuery: () => (failed ? reject(failed) : resolve()),
    };
    (client as unknown as { query(q: unknown): void }).query(submittable);
  });
}

/** One request's transaction as the server opens it (claims, then the role), a prepared statement, commit. */
async function inRequest<T extends pg.QueryResultRow>(client: pg.PoolClient, settings: Record<string, string>, name: string, sql: string, params: unknown[]) {
  return (await inRequestTimed<T>(client, settings, name, sql, params)).rows;
}
/** The same, answering also how long the statement alone took (without begin, settings and commit). */
async function inRequestTimed<T extends pg.QueryResultRow>(client: pg.PoolClient, settings: Record<string, string>, name: string, sql: string, params: unknown[]) {
  await client.query(beginRequestStatement(settings));
  try {
    const t = performance.now();
    const r = await client.query<T>({ name, text: sql, values: params });
    const statementMs = performance.now() - t;
    await client.query("commit");
    return { rows: r.rows, statementMs };
  } catch (err) {
    await client.query("rollback");
    throw err;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function measureRetail(options: RetailBenchOptions): Promise<Row[]> {
  const t0 = performance.now();
  const write = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const log = (line: string) => write(`${line} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  const orders = options.orders ?? retailOrdersFromArgs();
  const rounds = Math.max(3, options.rounds ?? Number(process.env.BENCH_RETAIL_ROUNDS ?? 3));
  const started = performance.now();
  const owner = new pg.Pool({ connectionString: options.ownerUrl, max: 4 });
  owner.on("error", () => undefined);
  const auth = new pg.Pool({ connectionString: options.authUrl, max: 20 });
  auth.on("error", () => undefined);
  const workerPool = new pg.Pool({ connectionString: options.ownerUrl, max: 4 });
  workerPool.on("error", () => undefined);
  // graphile-worker checks for both handlers (a lost connection in use must not kill the bench).
  workerPool.on("connect", (client) => client.on("error", () => undefined));
  const cleanups: (() => Promise<unknown>)[] = [];
  try {
    // ---- Data: the 1,000-store and the 10-store tenant, through the demo seed.
    const smallOrders = Math.round((orders * harmonic(SMALL_STORES)) / harmonic(LARGE_STORES));
    const seedTenant = async (slug: string, stores: number, n: number) => {
      const client = await owner.connect();
      try {
        await client.query("begin");
        await client.query("select set_config('authhub.actor', 'system:cli:seed-demo', true)");
        const identity = await seedIdentity(client, demoIdentityPlan(slug));
        const t = performance.now();
        const counts = await seedRetail(client, identity.tenant.id, { stores, orders: n });
        const seedMs = performance.now() - t;
        const tenantId = identity.tenant.id;
        const storeId = async (code: string) =>
          (await client.query<{ id: string }>("select id from retail.stores where tenant_id = $1 and code = $2", [tenantId, code])).rows[0]!.id;
        // A store admin: ORG_ADMIN of store-a alone (the demo's seller admin holds half the stores).
        const admin = identity.users.find((u) => u.level === "TENANT_ADMIN")!;
        const storeA = await storeId("store-a");
        const storeAdmin = (
          await client.query<{ id: string }>("insert into authhub.users (tenant_id, email, display_name, level) values ($1, $2, 'Store A admin', 'USER') returning id", [
            tenantId,
            `store-a-admin@${slug}.example`,
          ])
        ).rows[0]!.id;
        await client.query("insert into authhub.memberships (tenant_id, organization_id, user_id, level) values ($1, $2, $3, 'ORG_ADMIN')", [tenantId, storeA, storeAdmin]);
        await client.query("commit");
        return { slug, tenantId, counts, seedMs, adminId: admin.id, storeAdminId: storeAdmin, storeA, storeId };
      } catch (err) {
        await client.query("rollback");
        throw err;
      } finally {
        client.release();
      }
    };
    log(`retail: seeding a ${LARGE_STORES}-store tenant with ${orders} orders and a ${SMALL_STORES}-store tenant with ${smallOrders}…`);
    const large = await seedTenant("retail-large", LARGE_STORES, orders);
    const small = await seedTenant("retail-small", SMALL_STORES, smallOrders);
    log(`retail: seeded in ${fmt(large.seedMs / 1000, 1)} s and ${fmt(small.seedMs / 1000, 1)} s`);
    await owner.query("analyze");

    const ingestStore = await large.storeId("store-b");
    const plainStore = await large.storeId("shop-0003");
    const updateStore = await large.storeId("shop-0004");
    const storeInfo = async (storeId: string) => {
      const { rows } = await owner.query<{ sku: string; price: string; currency: string; timezone: string }>(
        "select v.sku, v.price_minor as price, s.currency, s.timezone from retail.variants v join retail.stores s on s.tenant_id = v.tenant_id and s.id = v.store_id where v.tenant_id = $1 and v.store_id = $2 order by v.sku",
        [large.tenantId, storeId],
      );
      return { currency: rows[0]!.currency, timezone: rows[0]!.timezone, variants: rows.map((r) => ({ sku: r.sku, price: Number(r.price) })) };
    };
    const ingestInfo = await storeInfo(ingestStore);
    const plainInfo = await storeInfo(plainStore);

    // Trigger-less, policy-less copies of the two tables for the bare INSERT and for COPY.
    await owner.query(`
      create schema if not exists bench_retail;
      drop table if exists bench_retail.orders, bench_retail.order_lines, bench_retail.copy_orders, bench_retail.copy_order_lines;
      create table bench_retail.orders (like retail.orders including defaults including generated including constraints including indexes);
      create table bench_retail.order_lines (like retail.order_lines including defaults including generated including constraints including indexes);
      create table bench_retail.copy_orders (like retail.orders including defaults including generated including constraints including indexes);
      create table bench_retail.copy_order_lines (like retail.order_lines including defaults including generated including constraints including indexes);`);
    cleanups.push(() => owner.query("drop schema if exists bench_retail cascade"));

    // ---- The server and the worker, as `npm start` runs them.
    const tillKey = (name: string, organizationId: string) =>
      issueApiKey(owner, options.masterKey, { name, tenantId: large.tenantId, organizationId, scopes: ["sync:write", "retail:read"], rateLimitPerMinute: 1_000_000 });
    const key = await tillKey("bench till B", ingestStore);
    const plainKey = await tillKey("bench till 3", plainStore);
    const config = readConfig({
      NODE_ENV: "production",
      DATABASE_URL: options.ownerUrl,
      AUTHHUB_MASTER_KEY: randomBytes(32).toString("base64"),
      AUTHHUB_ISSUER: "http://bench.authhub",
      LOG_LEVEL: "silent",
      // The abuse limits would stop a benchmark (the counting still runs): far above what it sends.
      AUTHHUB_GRAPHQL_RATE_LIMIT_USER: "10000000",
      AUTHHUB_GRAPHQL_RATE_LIMIT_TENANT: "100000000",
    });
    const app = await makeApp({ config, authPool: auth, logger: makeLogger("silent"), masterKey: options.masterKey });
    await new Promise<void>((r) => app.server.listen(0, "127.0.0.1", r));
    cleanups.unshift(async () => {
      await new Promise((r) => app.server.close(r));
      await app.release();
    });
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const worker = await startWorker({ ownerPool: workerPool, logger: makeLogger("silent"), masterKey: options.masterKey, clerkApiUrl: "http://127.0.0.1:9" });
    cleanups.unshift(() => worker.stop());
    const foldMs: number[] = [];
    const jobStarts = new Map<string, number>();
    worker.events.on("job:start", ({ job }) => {
      if (job.task_identifier === "retail_rollups__fold") jobStarts.set(String(job.id), performance.now());
    });
    worker.events.on("job:success", ({ job }) => {
      const t = jobStarts.get(String(job.id));
      if (t !== undefined) foldMs.push(performance.now() - t);
    });
    const signingKey = await loadActiveSigningKey(owner, options.masterKey);
    const tokenFor = async (identity: Identity) => (await mintAccessToken(signingKey, identity, { issuer: "http://bench.authhub", ttlSeconds: 3600 })).token;
    const tenantAdmin: Identity = { userId: large.adminId, tenantId: large.tenantId, level: "TENANT_ADMIN" };
    const adminToken = await tokenFor(tenantAdmin);

    // ---- 1–3: ingest.
    const sync = async (k: { keyId: string; secret: string }, body: string, idempotencyKey: string) => {
      const headers = {
        ...signRequest({ keyId: k.keyId, secret: k.secret, method: "POST", url: "/open/v1/sync/orders", body }),
        "Content-Type": "application/json",
        "Idempotency-Key": idempotencyKey,
      };
      const t = performance.now();
      const res = await fetch(`${base}/open/v1/sync/orders`, { method: "POST", headers, body });
      const answer = (await res.json()) as { results?: { status: string; error?: unknown }[] };
      const ms = performance.now() - t;
      if (res.status !== 200 || !answer.results) throw new Error(`sync answered ${res.status}: ${JSON.stringify(answer).slice(0, 500)}`);
      return { ms, statuses: answer.results.map((r) => r.status), replayed: res.headers.get("idempotent-replayed") === "true", first: answer.results.find((r) => r.error) };
    };
    const expectAll = (statuses: string[], status: string, what: string) => {
      const other = statuses.find((s) => s !== status);
      if (other !== undefined) throw new Error(`${what}: a row was ${other}, expected every row ${status}`);
    };
    const bareInsert = async (client: pg.PoolClient, batch: Order[], tz: string, storeId: string) => {
      const lines = batch.flatMap((o) => o.lines.map((l) => ({ o, l })));
      await client.query({
        name: "bench_retail_bare",
        text: `with o as (
                 insert into bench_retail.orders as o (tenant_id, store_id, external_id, number, status, currency, placed_at, local_date,
                                                       subtotal_minor, tax_minor, total_minor, source_version)
                 select $1, $2, x.external_id, x.number, x.status, x.currency, x.placed_at, (x.placed_at at time zone $3)::date, x.subtotal, x.tax, x.subtotal + x.tax, 1
                 from unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[], $9::bigint[], $10::bigint[]) as x(external_id, number, status, currency, placed_at, subtotal, tax)
                 on conflict (tenant_id, store_id, external_id) do update
                   set number = excluded.number, status = excluded.status, currency = excluded.currency, placed_at = excluded.placed_at, local_date = excluded.local_date,
                       subtotal_minor = excluded.subtotal_minor, tax_minor = excluded.tax_minor, total_minor = excluded.total_minor, source_version = excluded.source_version
                 returning o.id, o.external_id
               )
               insert into bench_retail.order_lines as l (tenant_id, store_id, order_id, line_no, sku, quantity, unit_price_minor, tax_minor)
               select $1, $2, o.id, y.line_no, y.sku, y.quantity, y.unit_price_minor, y.tax_minor
               from unnest($11::text[], $12::int[], $13::text[], $14::int[], $15::bigint[], $16::bigint[]) as y(external_id, line_no, sku, quantity, unit_price_minor, tax_minor)
               join o on o.external_id = y.external_id
               on conflict (tenant_id, store_id, order_id, line_no) do update
                 set sku = excluded.sku, quantity = excluded.quantity, unit_price_minor = excluded.unit_price_minor, tax_minor = excluded.tax_minor`,
        values: [
          large.tenantId,
          storeId,
          tz,
          batch.map((o) => o.externalId),
          batch.map((o) => o.number),
          batch.map((o) => o.status),
          batch.map((o) => o.currency),
          batch.map((o) => o.placedAt),
          batch.map((o) => o.lines.reduce((n, l) => n + l.quantity * l.unitPriceMinor, 0)),
          batch.map((o) => o.lines.reduce((n, l) => n + l.taxMinor, 0)),
          lines.map(({ o }) => o.externalId),
          lines.map(({ l }) => l.lineNo),
          lines.map(({ l }) => l.sku),
          lines.map(({ l }) => l.quantity),
          lines.map(({ l }) => l.unitPriceMinor),
          lines.map(({ l }) => l.taxMinor),
        ],
      });
    };
    const copyRows = async (client: pg.PoolClient, batch: Order[], storeId: string) => {
      let orderText = "";
      let lineText = "";
      for (const o of batch) {
        const id = randomUUID();
        const subtotal = o.lines.reduce((n, l) => n + l.quantity * l.unitPriceMinor, 0);
        const tax = o.lines.reduce((n, l) => n + l.taxMinor, 0);
        orderText += `${large.tenantId}\t${storeId}\t${id}\t${o.externalId}\t${o.number}\t${o.status}\t${o.currency}\t${o.placedAt}\t${o.placedAt.slice(0, 10)}\t${subtotal}\t${tax}\t${subtotal + tax}\t1\n`;
        for (const l of o.lines) lineText += `${large.tenantId}\t${storeId}\t${id}\t${l.lineNo}\t${l.sku}\t${l.quantity}\t${l.unitPriceMinor}\t${l.taxMinor}\n`;
      }
      await copyFrom(
        client,
        "copy bench_retail.copy_orders (tenant_id, store_id, id, external_id, number, status, currency, placed_at, local_date, subtotal_minor, tax_minor, total_minor, source_version) from stdin",
        orderText,
      );
      await copyFrom(client, "copy bench_retail.copy_order_lines (tenant_id, store_id, order_id, line_no, sku, quantity, unit_price_minor, tax_minor) from stdin", lineText);
    };
    const asOwner = async (fn: (client: pg.PoolClient) => Promise<unknown>) => {
      const client = await owner.connect();
      try {
        const t = performance.now();
        await client.query("begin");
        await fn(client);
        await client.query("commit");
        return performance.now() - t;
      } finally {
        client.release();
      }
    };
    const rollupTriggers = (on: boolean) =>
      owner.query(
        ["orders", "order_lines"]
          .flatMap((t) => ["insert", "update", "delete"].map((op) => `alter table retail.${t} ${on ? "enable" : "disable"} trigger _900_rollups_${op};`))
          .join(" "),
      );
    cleanups.push(() => rollupTriggers(true));
    /** Waits until no store-day of the tenant is waiting to be folded; answers how long that took. */
    const drain = async () => {
      const t = performance.now();
      for (let i = 0; i < 3000; i++) {
        const { rows } = await owner.query<{ n: number }>("select count(*)::int as n from retail_private.rollup_dirty where tenant_id = $1", [large.tenantId]);
        if (rows[0]!.n === 0) return performance.now() - t;
        await sleep(10);
      }
      throw new Error("the rollups were not folded within 30 s");
    };
    const rollupSums = async () =>
      (
        await owner.query<{ orders: string; revenue: string }>(
          "select coalesce(sum(orders), 0)::text as orders, coalesce(sum(revenue_minor), 0)::text as revenue from retail.daily_store_totals where tenant_id = $1 and store_id = $2",
          [large.tenantId, ingestStore],
        )
      ).rows[0]!;
    const changedSince = async (since: string, batch: Order[]) =>
      (
        await owner.query<{ orders: number; lines: number; audit: number }>(
          `select (select count(*)::int from retail.orders o where o.tenant_id = $1 and o.store_id = $2 and o.external_id = any($3) and o.updated_at >= $4) as orders,
                  (select count(*)::int from retail.orders o join retail.order_lines l on l.tenant_id = o.tenant_id and l.store_id = o.store_id and l.order_id = o.id
                   where o.tenant_id = $1 and o.store_id = $2 and o.external_id = any($3) and l.updated_at >= $4) as lines,
                  (select count(*)::int from authhub.audit_events a where a.tenant_id = $1 and a.occurred_at >= $4 and a.table_name in ('orders', 'order_lines')) as audit`,
          [large.tenantId, ingestStore, batch.map((o) => o.externalId), since],
        )
      ).rows[0]!;
    const lineCount = (batches: Order[][]) => batches.reduce((n, b) => n + b.reduce((m, o) => m + o.lines.length, 0), 0);

    interface IngestRound {
      httpMs: number;
      bareMs: number;
      copyMs: number;
      replayMs: number;
      sameKeyMs: number;
      plainMs: number;
      lines: number;
      drainMs: number;
    }
    const ingestRounds: IngestRound[] = [];
    const visibleMs: number[] = [];
    const visibleAfterAckMs: number[] = [];
    // At least 12 probes in all (the p95 of 12 is their second largest): each waits for the fold, so they are the module's slowest part.
    const probesPerRound = Math.ceil(12 / rounds);
    let seq = 0;
    const newBatches = (prefix: string, info: typeof ingestInfo) => Array.from({ length: BATCHES }, () => makeBatch(`${prefix}${seq}`, ++seq, info.currency, info.variants));
    // Warm-up: the server's statements prepared, the worker's first job run.
    for (const [i, b] of newBatches("warm", ingestInfo).entries()) expectAll((await sync(key, syncBody(b), `warm-${seq}-${i}`)).statuses, "applied", "warm-up");
    for (const [i, b] of newBatches("warm", plainInfo).entries()) expectAll((await sync(plainKey, syncBody(b), `warm-${seq}-${i}`)).statuses, "applied", "warm-up");
    for (const b of newBatches("warm", ingestInfo)) await asOwner((c) => bareInsert(c, b, ingestInfo.timezone, ingestStore));
    for (const b of newBatches("warm", ingestInfo)) await asOwner((c) => copyRows(c, b, ingestStore));
    await drain();
    let replayChecked = { orders: 0, lines: 0, audit: 0, statuses: 0 };
    for (let round = 0; round < rounds; round++) {
      log(`retail: ingest round ${round + 1}/${rounds}…`);
      const batches = newBatches(`r${round}-`, ingestInfo);
      const bodies = batches.map(syncBody);
      const plainBatches = newBatches(`p${round}-`, plainInfo);
      const plainBodies = plainBatches.map(syncBody);
      const r: IngestRound = { httpMs: 0, bareMs: 0, copyMs: 0, replayMs: 0, sameKeyMs: 0, plainMs: 0, lines: lineCount(batches), drainMs: 0 };
      const sections: (() => Promise<void>)[] = [
        async () => {
          for (const b of batches) r.bareMs += await asOwner((c) => bareInsert(c, b, ingestInfo.timezone, ingestStore));
        },
        async () => {
          for (const b of batches) r.copyMs += await asOwner((c) => copyRows(c, b, ingestStore));
        },
        async () => {
          // With the rollup triggers, the worker folding as the batches arrive.
          for (let i = 0; i < bodies.length; i++) {
            const first = await sync(key, bodies[i]!, `r${round}-${i}`);
            expectAll(first.statuses, "applied", "first apply");
            r.httpMs += first.ms;
          }
          r.drainMs = await drain();
          // The same batches again under new keys: every row unchanged, nothing written.
          const since = (await owner.query<{ now: string }>("select now()::text as now")).rows[0]!.now;
          for (let i = 0; i < bodies.length; i++) {
            const again = await sync(key, bodies[i]!, `r${round}-${i}-again`);
            expectAll(again.statuses, "unchanged", "replay");
            r.replayMs += again.ms;
          }
          const changed = await changedSince(since, batches.flat());
          if (changed.orders + changed.lines + changed.audit > 0) throw new Error(`a replayed batch changed rows: ${JSON.stringify(changed)}`);
          replayChecked = {
            orders: replayChecked.orders + changed.orders,
            lines: replayChecked.lines + changed.lines,
            audit: replayChecked.audit + changed.audit,
            statuses: replayChecked.statuses + bodies.length * BATCH_ORDERS,
          };
          // And under the same key: the stored answer.
          const same = await sync(key, bodies[0]!, `r${round}-0`);
          if (!same.replayed) throw new Error("the same Idempotency-Key was not answered from its stored answer");
          r.sameKeyMs = same.ms;
        },
        async () => {
          // Without the rollup triggers (another store: the first one's rollups stay exact).
          await rollupTriggers(false);
          try {
            for (let i = 0; i < plainBodies.length; i++) {
              const res = await sync(plainKey, plainBodies[i]!, `p${round}-${i}`);
              expectAll(res.statuses, "applied", "apply without rollups");
              r.plainMs += res.ms;
            }
          } finally {
            await rollupTriggers(true);
          }
        },
      ];
      // Alternate the order of the contenders between rounds.
      const order = round % 2 === 0 ? [0, 1, 2, 3] : [3, 2, 1, 0];
      for (const i of order) await sections[i]!();
      ingestRounds.push(r);

      // Ingest to visible in the rollup: one batch at a time, from its request until daily_store_totals counts it.
      for (let p = 0; p < probesPerRound; p++) {
        await drain();
        const before = await rollupSums();
        const batch = makeBatch(`v${round}-${p}`, 10_000 + ++seq, ingestInfo.currency, ingestInfo.variants);
        const body = syncBody(batch);
        const wantOrders = BigInt(before.orders) + BigInt(batch.filter(counted).length);
        const wantRevenue = BigInt(before.revenue) + BigInt(batch.filter(counted).reduce((n, o) => n + orderTotal(o), 0));
        const t = performance.now();
        const res = await sync(key, body, `v${round}-${p}`);
        expectAll(res.statuses, "applied", "visibility probe");
        const acked = performance.now();
        for (;;) {
          const now = await rollupSums();
          if (BigInt(now.orders) === wantOrders && BigInt(now.revenue) === wantRevenue) break;
          if (BigInt(now.orders) > wantOrders) throw new Error(`the rollup counts more orders than were sent (${now.orders} > ${wantOrders})`);
          if (performance.now() - t > 30_000) throw new Error("a synced batch was not visible in the rollup within 30 s");
          await sleep(5);
        }
        visibleMs.push(performance.now() - t);
        visibleAfterAckMs.push(performance.now() - acked);
      }
    }
    const perRound = (f: (r: IngestRound) => number) => spread(ingestRounds.map(f));
    const ingestRatio = perRound((r) => r.bareMs / r.httpMs);
    const linesPerSecond = perRound((r) => (r.lines / r.httpMs) * 1000);
    const bareLinesPerSecond = perRound((r) => (r.lines / r.bareMs) * 1000);
    const copyLinesPerSecond = perRound((r) => (r.lines / r.copyMs) * 1000);
    const replayRatio = perRound((r) => r.replayMs / r.httpMs);
    const rollupRatio = perRound((r) => r.plainMs / r.httpMs);
    const httpBatchMs = perRound((r) => r.httpMs / BATCHES);

    // Where a batch's time goes: the steps of retail.sync timed in SQL (clock_timestamp) as the
    // store's key, in transactions rolled back, with the audit or the rollup triggers off in turn.
    log("retail: where an ingest batch's time goes…");
    const keySettings = pgSettingsForApiKey({ apiKeyId: key.id, tenantId: large.tenantId, orgId: ingestStore }, "bench-retail");
    const STEPS = `do $steps$
      declare
        work retail_private.sync_row[];
        written text[];
        t timestamptz;
        parse_ms float8;
        held_ms float8;
        apply_ms float8;
      begin
        perform pg_catalog.set_config('retail.sync_store', 'on', true);
        t := clock_timestamp();
        work := retail_private.sync_parse('orders', current_setting('bench.rows')::jsonb);
        parse_ms := extract(epoch from clock_timestamp() - t) * 1000;
        t := clock_timestamp();
        work := retail_private.sync_classify(work, retail_private.sync_held('orders', work));
        held_ms := extract(epoch from clock_timestamp() - t) * 1000;
        t := clock_timestamp();
        written := retail_private.sync_apply('orders', work);
        apply_ms := extract(epoch from clock_timestamp() - t) * 1000;
        raise notice 'bench-steps %', json_build_object('parse', parse_ms, 'held', held_ms, 'apply', apply_ms, 'written', cardinality(written));
      end
    $steps$`;
    const auditOnLines = (on: boolean) =>
      owner.query(
        ["orders", "order_lines"]
          .flatMap((t) => ["insert", "update", "delete", "truncate"].map((op) => `alter table retail.${t} ${on ? "enable always" : "disable"} trigger _900_audit_${op};`))
          .join(" "),
      );
    cleanups.push(() => auditOnLines(true));
    const stepsClient = await auth.connect();
    cleanups.unshift(async () => stepsClient.release());
    interface Steps {
      parse: number;
      held: number;
      apply: number;
      written: number;
    }
    const runSteps = async (batch: Order[]): Promise<Steps> => {
      await stepsClient.query(beginRequestStatement(keySettings));
      const found: Steps[] = [];
      const onNotice = (msg: { message?: string }) => {
        if (msg.message?.startsWith("bench-steps ")) found.push(JSON.parse(msg.message.slice("bench-steps ".length)) as Steps);
      };
      stepsClient.on("notice", onNotice);
      try {
        await stepsClient.query("select set_config('bench.rows', $1, true)", [JSON.stringify(syncRows(batch))]);
        await stepsClient.query(STEPS);
      } finally {
        stepsClient.off("notice", onNotice);
        await stepsClient.query("rollback");
      }
      if (!found[0]) throw new Error("the timed sync steps reported nothing");
      return found[0];
    };
    const runWhole = async (batch: Order[]) => {
      await stepsClient.query(beginRequestStatement(keySettings));
      try {
        const t = performance.now();
        await stepsClient.query("select retail.sync('orders', $1::jsonb)", [JSON.stringify(syncRows(batch))]);
        return performance.now() - t;
      } finally {
        await stepsClient.query("rollback");
      }
    };
    // The per-row timestamps and the lines' totals trigger (statement-level) off, besides audit and rollups:
    // what is left is the upsert itself, its keys, RLS's checks and the orders' local day.
    const otherTriggers = (on: boolean) =>
      owner.query(
        [
          `alter table retail.orders ${on ? "enable" : "disable"} trigger _100_timestamps;`,
          `alter table retail.order_lines ${on ? "enable" : "disable"} trigger _100_timestamps;`,
          ...["insert", "update", "delete"].map((op) => `alter table retail.order_lines ${on ? "enable" : "disable"} trigger _300_totals_${op};`),
        ].join(" "),
      );
    cleanups.push(() => otherTriggers(true));
    const breakdown = {
      full: [] as { parse: number; held: number; apply: number }[],
      noAudit: [] as number[],
      noRollups: [] as number[],
      bare: [] as number[],
      whole: [] as number[],
    };
    for (let i = 0; i < 3; i++) {
      const fresh = () => makeBatch(`s${i}-${++seq}`, 20_000 + seq, ingestInfo.currency, ingestInfo.variants);
      breakdown.whole.push(await runWhole(fresh()));
      const full = await runSteps(fresh());
      if (full.written !== BATCH_ORDERS) throw new Error(`the timed steps wrote ${full.written} of ${BATCH_ORDERS} orders`);
      breakdown.full.push(full);
      await auditOnLines(false);
      try {
        breakdown.noAudit.push((await runSteps(fresh())).apply);
      } finally {
        await auditOnLines(true);
      }
      await rollupTriggers(false);
      try {
        breakdown.noRollups.push((await runSteps(fresh())).apply);
      } finally {
        await rollupTriggers(true);
      }
      for (const toggle of [auditOnLines, rollupTriggers, otherTriggers]) await toggle(false);
      try {
        breakdown.bare.push((await runSteps(fresh())).apply);
      } finally {
        for (const toggle of [auditOnLines, rollupTriggers, otherTriggers]) await toggle(true);
      }
    }
    const steps = {
      parse: median(breakdown.full.map((f) => f.parse)),
      held: median(breakdown.full.map((f) => f.held)),
      apply: median(breakdown.full.map((f) => f.apply)),
      applyNoAudit: median(breakdown.noAudit),
      applyNoRollups: median(breakdown.noRollups),
      applyNoTriggers: median(breakdown.bare),
      whole: median(breakdown.whole),
    };

    // ---- 4: daily sales, from the rollup through /graphql, and from the raw lines.
    log("retail: daily sales from the rollup and from the raw lines…");
    const dailyQuery = `query($store: UUID!) { dailyStoreTotals(condition: { storeId: $store }, orderBy: [DAY_DESC], first: 90) { nodes { day currency orders units revenueMinor } } }`;
    const viaGraphQL = async () => {
      const res = await fetch(`${base}/graphql`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${adminToken}` },
        body: JSON.stringify({ query: dailyQuery, variables: { store: large.storeA } }),
      });
      const body = (await res.json()) as {
        data?: { dailyStoreTotals: { nodes: { day: string; currency: string; orders: number; units: string; revenueMinor: string }[] } };
        errors?: unknown;
      };
      if (!body.data) throw new Error(`dailyStoreTotals: ${JSON.stringify(body.errors)}`);
      return body.data.dailyStoreTotals.nodes;
    };
    const ROLLUP_SQL = `select t.day::text as day, t.currency, t.orders, t.units::text as units, t.revenue_minor::text as revenue_minor
                        from retail.daily_store_totals t where t.store_id = $1 order by t.day desc limit 90`;
    const RAW_SQL = `select o.local_date::text as day, o.currency, count(*)::int as orders,
                            coalesce(sum((select sum(l.quantity) from retail.order_lines l where l.tenant_id = o.tenant_id and l.store_id = o.store_id and l.order_id = o.id)), 0)::text as units,
                            sum(o.total_minor)::text as revenue_minor
                     from retail.orders o
                     where o.store_id = $1 and o.status in ('paid', 'fulfilled') and o.deleted_at is null
                     group by o.local_date, o.currency order by o.local_date desc limit 90`;
    const adminSettings = pgSettingsFor(tenantAdmin, "bench-retail");
    const rlsClient = await auth.connect();
    const ownerClient = await owner.connect();
    cleanups.unshift(async () => {
      rlsClient.release();
      ownerClient.release();
    });
    const fromRollup = await inRequest(rlsClient, adminSettings, "bench_retail_rollup", ROLLUP_SQL, [large.storeA]);
    const fromRaw = await inRequest(rlsClient, adminSettings, "bench_retail_raw", RAW_SQL, [large.storeA]);
    const fromGraphQL = await viaGraphQL();
    if (JSON.stringify(fromRollup) !== JSON.stringify(fromRaw) || fromRollup.length === 0) throw new Error("the rollup and the raw lines disagree");
    if (fromGraphQL.length !== fromRollup.length || fromGraphQL[0]!.revenueMinor !== fromRollup[0]!.revenue_minor) throw new Error("/graphql and the rollup disagree");
    const gqlMs: number[] = [];
    const dailyRounds: { gql: number[]; rollup: number[]; raw: number[]; rollupStatement: number[]; rawStatement: number[] }[] = [];
    for (let i = 0; i < 20; i++) await viaGraphQL();
    for (let round = 0; round < rounds; round++) {
      const d = { gql: [] as number[], rollup: [] as number[], raw: [] as number[], rollupStatement: [] as number[], rawStatement: [] as number[] };
      for (let i = 0; i < 60; i++) {
        let t = performance.now();
        await viaGraphQL();
        d.gql.push(performance.now() - t);
        t = performance.now();
        d.rollupStatement.push((await inRequestTimed(rlsClient, adminSettings, "bench_retail_rollup", ROLLUP_SQL, [large.storeA])).statementMs);
        d.rollup.push(performance.now() - t);
        if (i % 6 === round % 6) {
          t = performance.now();
          d.rawStatement.push((await inRequestTimed(rlsClient, adminSettings, "bench_retail_raw", RAW_SQL, [large.storeA])).statementMs);
          d.raw.push(performance.now() - t);
        }
      }
      gqlMs.push(...d.gql);
      dailyRounds.push(d);
    }
    const gqlP95 = spread(dailyRounds.map((d) => percentile(d.gql, 95)));
    // The data paths compared: the statement alone (the transaction around it is the same on both sides).
    const rawOverRollup = spread(dailyRounds.map((d) => median(d.rawStatement) / median(d.rollupStatement)));
    const rawOverRollupTransaction = spread(dailyRounds.map((d) => median(d.raw) / median(d.rollup)));
    const rawOverGraphQL = spread(dailyRounds.map((d) => median(d.raw) / median(d.gql)));

    // ---- 5: a store admin's aggregate, under RLS and with an explicit store filter.
    log("retail: a store admin's aggregate…");
    const AGG_RLS = "select status, count(*)::int as orders, sum(total_minor)::text as revenue from retail.orders group by status order by status";
    const AGG_RLS_FILTERED =
      "select status, count(*)::int as orders, sum(total_minor)::text as revenue from retail.orders where tenant_id = $1 and store_id = $2 group by status order by status";
    const storeAdminOf = (t: typeof large): Identity => ({ userId: t.storeAdminId, tenantId: t.tenantId, level: "ORG_ADMIN" });
    const settingsLarge = pgSettingsFor(storeAdminOf(large), "bench-retail");
    const settingsSmall = pgSettingsFor(storeAdminOf(small), "bench-retail");
    const ownerSettings = { ...settingsLarge, role: "authhub_owner" };
    const a = await inRequest(rlsClient, settingsLarge, "bench_retail_agg", AGG_RLS, []);
    const b = await inRequest(ownerClient, ownerSettings, "bench_retail_agg_filtered", AGG_RLS_FILTERED, [large.tenantId, large.storeA]);
    const c = await inRequest(rlsClient, settingsSmall, "bench_retail_agg", AGG_RLS, []);
    if (JSON.stringify(a) !== JSON.stringify(b) || a.length === 0 || c.length === 0) throw new Error("the store admin's aggregate under RLS and the filtered one disagree");
    const sizes = await owner.query<{ tenant_id: string; n: number }>("select tenant_id::text, count(*)::int as n from retail.orders where store_id = any($1) group by tenant_id", [
      [large.storeA, small.storeA],
    ]);
    const aggRounds: { rls: number[]; filtered: number[]; rlsFiltered: number[]; small: number[] }[] = [];
    const timed = async (into: number[], fn: () => Promise<unknown>) => {
      const t = performance.now();
      await fn();
      into.push(performance.now() - t);
    };
    for (let i = 0; i < 10; i++) {
      await inRequest(rlsClient, settingsLarge, "bench_retail_agg", AGG_RLS, []);
      await inRequest(rlsClient, settingsSmall, "bench_retail_agg", AGG_RLS, []);
    }
    for (let round = 0; round < rounds; round++) {
      const d = { rls: [] as number[], filtered: [] as number[], rlsFiltered: [] as number[], small: [] as number[] };
      for (let i = 0; i < 40; i++) {
        const steps = [
          () => timed(d.rls, () => inRequest(rlsClient, settingsLarge, "bench_retail_agg", AGG_RLS, [])),
          () => timed(d.filtered, () => inRequest(ownerClient, ownerSettings, "bench_retail_agg_filtered", AGG_RLS_FILTERED, [large.tenantId, large.storeA])),
          () => timed(d.rlsFiltered, () => inRequest(rlsClient, settingsLarge, "bench_retail_agg_filtered", AGG_RLS_FILTERED, [large.tenantId, large.storeA])),
          () => timed(d.small, () => inRequest(rlsClient, settingsSmall, "bench_retail_agg", AGG_RLS, [])),
        ];
        for (const step of i % 2 === 0 ? steps : [...steps].reverse()) await step();
      }
      aggRounds.push(d);
    }
    const aggRatio = spread(aggRounds.map((d) => median(d.filtered) / median(d.rls)));
    const aggRlsFilteredRatio = spread(aggRounds.map((d) => median(d.filtered) / median(d.rlsFiltered)));
    const aggScale = spread(aggRounds.map((d) => median(d.rls) / median(d.small)));
    const aggP50 = (f: (d: (typeof aggRounds)[number]) => number[]) => fmt(median(aggRounds.flatMap(f)), 3);
    // The plans, for the explanation of a miss.
    const explain = async (client: pg.PoolClient, settings: Record<string, string>, sql: string, params: unknown[]) => {
      await client.query(beginRequestStatement(settings));
      try {
        const { rows } = await client.query<{ "QUERY PLAN": string }>(`explain (analyze, buffers, costs off, summary on) ${sql}`, params);
        return rows.map((r) => r["QUERY PLAN"]).join("\n");
      } finally {
        await client.query("rollback");
      }
    };
    const plans = {
      aggregateRls: await explain(rlsClient, settingsLarge, AGG_RLS, []),
      aggregateFiltered: await explain(ownerClient, ownerSettings, AGG_RLS_FILTERED, [large.tenantId, large.storeA]),
      aggregateRlsSmallTenant: await explain(rlsClient, settingsSmall, AGG_RLS, []),
      dailyRollup: await explain(rlsClient, adminSettings, ROLLUP_SQL, [large.storeA]),
      dailyRaw: await explain(rlsClient, adminSettings, RAW_SQL, [large.storeA]),
    };

    // ---- 6: an admin's order update with version and audit, and without either.
    log("retail: admin order updates…");
    const UPDATES = 100;
    const { rows: targets } = await owner.query<{ id: string; version: string; status: string }>(
      "select id, version::text, status from retail.orders where tenant_id = $1 and store_id = $2 and status in ('paid', 'fulfilled') order by id limit $3",
      [large.tenantId, updateStore, (rounds + 1) * UPDATES * 2],
    );
    if (targets.length === 0) throw new Error("the update store has no paid or fulfilled orders; raise --retail-orders");
    let next = 0;
    // Each update its own order while there are enough (a small run cycles through them; the version is tracked).
    const nextTarget = () => targets[next++ % targets.length]!;
    const updateMutation = (withVersion: boolean) =>
      `mutation($t: UUID!, $s: UUID!, $id: UUID!, $status: String!${withVersion ? ", $v: BigInt!" : ""}) {
         updateOrder(input: { tenantId: $t, storeId: $s, rowId: $id, patch: { status: $status${withVersion ? ", version: $v" : ""} } }) { order { version } } }`;
    const withQuery = updateMutation(true);
    const withoutQuery = updateMutation(false);
    const update = async (target: (typeof targets)[number], withVersion: boolean) => {
      const status = target.status === "paid" ? "fulfilled" : "paid";
      const res = await fetch(`${base}/graphql`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${adminToken}` },
        body: JSON.stringify({
          query: withVersion ? withQuery : withoutQuery,
          variables: { t: large.tenantId, s: updateStore, id: target.id, status, ...(withVersion ? { v: target.version } : {}) },
        }),
      });
      const body = (await res.json()) as { data?: { updateOrder: { order: { version: string } } }; errors?: unknown };
      if (!body.data?.updateOrder) throw new Error(`updateOrder: ${JSON.stringify(body.errors)}`);
      target.status = status;
      target.version = body.data.updateOrder.order.version;
    };
    const auditTriggers = (on: boolean) =>
      owner.query(["insert", "update", "delete", "truncate"].map((op) => `alter table retail.orders ${on ? "enable always" : "disable"} trigger _900_audit_${op};`).join(" "));
    cleanups.push(() => auditTriggers(true));
    const auditCount = async () =>
      (await owner.query<{ n: number }>("select count(*)::int as n from authhub.audit_events where tenant_id = $1 and table_name = 'orders'", [large.tenantId])).rows[0]!.n;
    for (let i = 0; i < UPDATES; i++) await update(nextTarget(), i % 2 === 0);
    // Four sides, to attribute the difference: audit off (without and with version, call by call
    // alternating), then audit on (likewise); the two groups swap places between rounds.
    interface UpdateRound {
      plain: number;
      versionOnly: number;
      auditOnly: number;
      both: number;
      auditRows: number;
    }
    const updateRounds: UpdateRound[] = [];
    for (let round = 0; round < rounds; round++) {
      const d: UpdateRound = { plain: 0, versionOnly: 0, auditOnly: 0, both: 0, auditRows: 0 };
      const pair = async (withoutVersion: "plain" | "auditOnly", withVersion: "versionOnly" | "both") => {
        // Untimed: the first statements after a trigger toggle are planned again.
        for (let i = 0; i < 4; i++) await update(nextTarget(), i % 2 === 0);
        for (let i = 0; i < UPDATES * 2; i++) {
          const versioned = (i + round) % 2 === 0;
          const t = performance.now();
          await update(nextTarget(), versioned);
          d[versioned ? withVersion : withoutVersion] += performance.now() - t;
        }
      };
      const groups = [
        async () => {
          await auditTriggers(false);
          try {
            await pair("plain", "versionOnly");
          } finally {
            await auditTriggers(true);
          }
        },
        async () => {
          const before = await auditCount();
          await pair("auditOnly", "both");
          d.auditRows = (await auditCount()) - before - 4;
        },
      ];
      for (const group of round % 2 === 0 ? groups : [...groups].reverse()) await group();
      if (d.auditRows !== UPDATES * 2) throw new Error(`expected ${UPDATES * 2} audit rows for the audited updates, found ${d.auditRows}`);
      updateRounds.push(d);
    }
    const updateRatio = spread(updateRounds.map((d) => d.plain / d.both));
    const updateP = (f: (d: UpdateRound) => number) => fmt(median(updateRounds.map(f)) / UPDATES, 2);
    // The UPDATE statement alone, as the tenant admin in SQL (rolled back), audited or not.
    const UPDATE_SQL = "update retail.orders set status = $1 where tenant_id = $2 and store_id = $3 and id = $4 returning version";
    const updateStatementMs = { audited: [] as number[], plain: [] as number[] };
    const timeUpdateStatement = async (into: number[]) => {
      const target = nextTarget();
      await rlsClient.query(beginRequestStatement(adminSettings));
      try {
        const t = performance.now();
        await rlsClient.query({ name: "bench_retail_update", text: UPDATE_SQL, values: [target.status === "paid" ? "fulfilled" : "paid", large.tenantId, updateStore, target.id] });
        into.push(performance.now() - t);
      } finally {
        await rlsClient.query("rollback");
      }
    };
    for (let i = 0; i < 60; i++) await timeUpdateStatement(i < 10 ? [] : updateStatementMs.audited);
    await auditTriggers(false);
    try {
      for (let i = 0; i < 60; i++) await timeUpdateStatement(i < 10 ? [] : updateStatementMs.plain);
    } finally {
      await auditTriggers(true);
    }

    const totalSeconds = (performance.now() - started) / 1000;
    const rows: RetailRow[] = [
      {
        name: "Retail push ingest: 500-order batches via signed /open/v1/sync/orders ÷ bare INSERT … ON CONFLICT as owner (throughput)",
        measured: ingestRatio.median,
        unit: "ratio",
        perRound: ingestRatio.perRound,
        target: "≥ 0.5; ≥ 10,000 lines/s",
        pass: ingestRatio.median >= 0.5 && linesPerSecond.median >= 10_000,
        detail:
          `ratio ${fmtSpread(ingestRatio, 3)}; sync ${fmtSpread(linesPerSecond, 0)} order lines/s (${fmt(httpBatchMs.median, 1)} ms a batch of ${BATCH_ORDERS} orders, ~${Math.round(ingestRounds[0]!.lines / BATCHES)} lines); ` +
          `bare INSERT ${fmtSpread(bareLinesPerSecond, 0)} lines/s; COPY (ceiling) ${fmtSpread(copyLinesPerSecond, 0)} lines/s; ${BATCHES} batches per contender per round, ${rounds} rounds. ` +
          `Where a batch's time goes (SQL as the key, rolled back, medians of 3): select retail.sync(…) ${fmt(steps.whole, 0)} ms = parse and validate ${fmt(steps.parse, 0)} ms + versions held ${fmt(steps.held, 0)} ms + ` +
          `apply ${fmt(steps.apply, 0)} ms (${fmt(steps.applyNoAudit, 0)} ms with the audit triggers off, ${fmt(steps.applyNoRollups, 0)} ms with the rollup triggers off, ${fmt(steps.applyNoTriggers, 0)} ms with those and the timestamps and totals triggers off); ` +
          `the same batch through HTTP (signature, idempotency record, JSON) took ${fmt(httpBatchMs.median, 0)} ms in the rounds`,
      },
      {
        name: "Retail replay: the same batch under a new Idempotency-Key ÷ its first apply (time)",
        measured: replayRatio.median,
        unit: "ratio",
        perRound: replayRatio.perRound,
        target: "≤ 0.3; 0 rows changed, 0 audit rows",
        pass: replayRatio.median <= 0.3 && replayChecked.orders + replayChecked.lines + replayChecked.audit === 0,
        detail:
          `ratio ${fmtSpread(replayRatio, 3)}; a replay still parses and validates every row (${fmt(steps.parse, 0)} ms of SQL a batch) and looks up the held versions (${fmt(steps.held, 0)} ms); ${replayChecked.statuses} rows replayed, all "unchanged": ${replayChecked.orders} orders and ${replayChecked.lines} lines changed, ${replayChecked.audit} audit rows (asserted); ` +
          `the same Idempotency-Key again (stored answer) ${fmt(median(ingestRounds.map((r) => r.sameKeyMs)), 1)} ms vs ${fmt(httpBatchMs.median, 1)} ms first apply`,
      },
      {
        name: "Retail rollups: ingest with the rollup triggers (worker folding) ÷ without (throughput)",
        measured: rollupRatio.median,
        unit: "ratio",
        perRound: rollupRatio.perRound,
        target: "≥ 0.75",
        pass: rollupRatio.median >= 0.75,
        detail:
          `ratio ${fmtSpread(rollupRatio, 3)}; with ${fmt(httpBatchMs.median, 1)} ms a batch, without ${fmt(median(ingestRounds.map((r) => r.plainMs / BATCHES)), 1)} ms; ` +
          `after a round's last batch the fold caught up in ${fmt(median(ingestRounds.map((r) => r.drainMs)), 0)} ms (median); fold jobs: ${foldMs.length}, p50 ${fmt(median(foldMs), 1)} ms, max ${fmt(Math.max(...foldMs), 1)} ms`,
      },
      {
        name: "Retail rollups: ingest-to-visible in dailyStoreTotals, p95 (ms, request sent → rollup counts it)",
        measured: percentile(visibleMs, 95),
        unit: "ms",
        perRound: [percentile(visibleMs, 95)],
        target: "≤ 2000 ms",
        pass: percentile(visibleMs, 95) <= 2000,
        detail: `${visibleMs.length} batches of ${BATCH_ORDERS} orders, one at a time: p50 ${fmt(median(visibleMs), 0)} ms, p95 ${fmt(percentile(visibleMs, 95), 0)} ms, max ${fmt(Math.max(...visibleMs), 0)} ms; after the 200: p50 ${fmt(median(visibleAfterAckMs), 0)} ms, p95 ${fmt(percentile(visibleAfterAckMs, 95), 0)} ms (the fold job is due 250 ms after the first mark)`,
      },
      {
        name: "Retail daily sales: 90 days of one store via /graphql dailyStoreTotals, p95 (ms)",
        measured: gqlP95.median,
        unit: "ms",
        perRound: gqlP95.perRound,
        target: "≤ 25 ms",
        pass: gqlP95.median <= 25,
        detail: `p95 per round ${fmtSpread(gqlP95, 2)} ms; p50 ${fmt(median(gqlMs), 2)} ms over ${gqlMs.length} requests; ${fromRollup.length} days of store-a (${sizes.rows.find((r) => r.tenant_id === large.tenantId)?.n} orders)`,
      },
      {
        name: "Retail daily sales: aggregated from the raw orders and lines ÷ read from the rollup (SQL under RLS, time)",
        measured: rawOverRollup.median,
        unit: "ratio",
        perRound: rawOverRollup.perRound,
        target: "≥ 100",
        pass: rawOverRollup.median >= 100,
        detail:
          `speed-up of the statement ${fmtSpread(rawOverRollup, 1)}: raw p50 ${fmt(median(dailyRounds.flatMap((d) => d.rawStatement)), 2)} ms, rollup p50 ${fmt(median(dailyRounds.flatMap((d) => d.rollupStatement)), 3)} ms; ` +
          `whole transactions as the server runs them (claims, role, statement, commit): raw p50 ${fmt(median(dailyRounds.flatMap((d) => d.raw)), 2)} ms, rollup p50 ${fmt(median(dailyRounds.flatMap((d) => d.rollup)), 3)} ms, ratio ${fmtSpread(rawOverRollupTransaction, 1)}; ` +
          `raw transaction ÷ the /graphql answer: ${fmtSpread(rawOverGraphQL, 1)}`,
      },
      {
        name: "Retail store admin's aggregate (orders by status) under RLS ÷ owner with explicit store filter (throughput)",
        measured: aggRatio.median,
        unit: "ratio",
        perRound: aggRatio.perRound,
        target: "≥ 0.85",
        pass: aggRatio.median >= 0.85,
        detail:
          `ratio ${fmtSpread(aggRatio, 3)}; p50 RLS ${aggP50((d) => d.rls)} ms, owner + filter ${aggP50((d) => d.filtered)} ms; ` +
          `RLS with the store filter added (what an admin page with condition storeId sends) ${aggP50((d) => d.rlsFiltered)} ms, ratio ${fmtSpread(aggRlsFilteredRatio, 3)}`,
      },
      {
        name: `Retail store admin's aggregate: p50 in a ${LARGE_STORES}-store tenant ÷ in a ${SMALL_STORES}-store tenant`,
        measured: aggScale.median,
        unit: "ratio",
        perRound: aggScale.perRound,
        target: "≤ 1.5",
        pass: aggScale.median <= 1.5,
        detail: `ratio ${fmtSpread(aggScale, 3)}; p50 ${aggP50((d) => d.rls)} ms (${orders} orders in the tenant) vs ${aggP50((d) => d.small)} ms (${smallOrders}); store-a holds ${sizes.rows.map((r) => r.n).join(" and ")} orders`,
      },
      {
        name: "Retail admin updateOrder via /graphql: with version and audit ÷ without either (throughput)",
        measured: updateRatio.median,
        unit: "ratio",
        perRound: updateRatio.perRound,
        target: "≥ 0.85",
        pass: updateRatio.median >= 0.85,
        detail:
          `ratio ${fmtSpread(updateRatio, 3)}; a request: ${updateP((d) => d.both)} ms with both, ${updateP((d) => d.auditOnly)} ms audit only, ${updateP((d) => d.versionOnly)} ms version only, ${updateP((d) => d.plain)} ms neither ` +
          `(${UPDATES} a side a round, one at a time; one audit row each, asserted); the UPDATE statement alone (tenant admin, rolled back): p50 ${fmt(median(updateStatementMs.audited), 2)} ms audited, ${fmt(median(updateStatementMs.plain), 2)} ms not`,
      },
    ];
    log(`retail: done in ${fmt(totalSeconds, 1)} s (seeding ${fmt((large.seedMs + small.seedMs) / 1000, 1)} s)`);
    lastRun = {
      ingestSteps: steps,
      orders,
      smallOrders,
      rounds,
      batches: BATCHES,
      seconds: totalSeconds,
      seedSeconds: { large: large.seedMs / 1000, small: small.seedMs / 1000 },
      seeded: { large: large.counts, small: small.counts },
      plans,
    };
    return rows.map(toRow);
  } finally {
    for (const fn of cleanups) await fn().catch((err: unknown) => log(`retail: cleanup failed: ${String(err)}`));
    await owner.end();
    await auth.end();
    await workerPool.end();
  }
}

/** What the last run measured besides its rows (sizes, timings, plans), for the saved results. */
export let lastRun: Record<string, unknown> | null = null;

/** `npx tsx bench/retail.ts [--retail-orders N]`: the retail rows alone, on a scratch database, saved under bench/results/. */
async function main() {
  const cluster = await startScratchCluster(process.env.BENCH_DATABASE_URL || null, "authhub-bench-retail-");
  const { rootUrl, ownerPassword, authenticatorPassword } = cluster;
  const database = `authhub_retailbench_${process.pid}`;
  try {
    await ensureRolesAndDatabase({ rootUrl, database, ownerPassword, authenticatorPassword });
    const ownerUrl = withCredentials(rootUrl, OWNER_ROLE, ownerPassword, database);
    await runMigrations(ownerUrl);
    const rows = await measureRetail({
      ownerUrl,
      authUrl: withCredentials(rootUrl, AUTHENTICATOR_ROLE, authenticatorPassword, database),
      masterKey: parseMasterKey(randomBytes(32).toString("base64")),
    });
    console.log("\nAuthHub retail benchmarks\n");
    printRows(rows);
    const plans = (lastRun?.plans ?? {}) as Record<string, string>;
    for (const [name, plan] of Object.entries(plans)) console.log(`\nPlan (${name}):\n${plan}`);
    const pgVersion = await (async () => {
      const root = new pg.Client({ connectionString: rootUrl });
      await root.connect();
      try {
        return (await root.query<{ server_version: string }>("show server_version")).rows[0]!.server_version;
      } finally {
        await root.end();
      }
    })();
    const resultsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), "results");
    mkdirSync(resultsDir, { recursive: true });
    const file = path.join(resultsDir, `retail-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
    writeFileSync(
      file,
      JSON.stringify(
        { when: new Date().toISOString(), machine: { cpus: os.cpus().length, loadavg: os.loadavg(), node: process.version, postgres: pgVersion }, ...lastRun, results: rows },
        null,
        2,
      ),
    );
    console.log(`\nsaved ${path.relative(process.cwd(), file)}`);
  } finally {
    const root = new pg.Client({ connectionString: rootUrl });
    await root.connect();
    await root.query(`drop database if exists ${pg.escapeIdentifier(database)} with (force)`);
    await root.end();
    await cluster.stop();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
