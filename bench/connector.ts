/**
 * Pull connector benchmark (issue 17): side by side on one cluster.
 *
 * 1. Throughput: rows applied per second by the connector's poll
 *    (worker/pull/pull.ts: keyset reads, retail.sync as the store's key, the
 *    cursor in each batch's transaction, the lookback re-read) ÷ rows per
 *    second of a raw `COPY (SELECT …) TO STDOUT` of the same rows from the
 *    store's database. Each round pulls the same store rows into a fresh hub
 *    store (so every row is an insert). The store's rows are spread over the
 *    last `rows × 50 ms`, as a backfill's would be, so the lookback covers its
 *    last minute only. Target ≥ 0.4.
 * 2. Lag under a steady rate: the real graphile-worker running the source's
 *    job at its poll interval while rows are written to the store at
 *    `steady.perSecond`; a row's lag is the hub row's creation (the applying
 *    transaction's start) minus its updated_at in the store (one clock: the
 *    same cluster). Target p95 ≤ poll interval + 1 s.
 *
 * Reported beside (1): the write path alone (the same rows as 1,000-row
 * retail.sync batches as the key, nothing read), and the connector ÷ that, so
 * what the connector itself costs is told apart from what applying costs.
 *
 * The entity is customers (the smallest data; orders add their lines' work to
 * the write path, which the push benchmarks measure). run.ts wires it.
 */
import { randomBytes } from "node:crypto";
import { Logger, run } from "graphile-worker";
import pg from "pg";
import { beginRequestStatement, pgSettingsForApiKey } from "../db/claims.js";
import type { MasterKey } from "../server/auth/masterKey.js";
import { registerSource } from "../server/sync/sources.js";
import { configureWorker } from "../worker/context.js";
import { pullOnce, type Cursor, type Source } from "../worker/pull/pull.js";
import { tasks } from "../worker/tasks/index.js";
import { median, percentile } from "./stats.js";

export interface ConnectorOptions {
  /** A superuser connection to the cluster (to create the store's database). */
  rootUrl: string;
  ownerUrl: string;
  authUrl: string;
  masterKey: MasterKey;
  tenantId: string;
  rows: number;
  rounds: number;
  steady: { perSecond: number; seconds: number };
  pollIntervalMs: number;
}

export interface ConnectorResult {
  rows: number;
  rounds: number;
  /** Medians of the rounds. */
  copyRowsPerSecond: number;
  appliedRowsPerSecond: number;
  /** appliedRowsPerSecond ÷ copyRowsPerSecond. Target ≥ 0.4. */
  ratio: number;
  /** The write path alone: the same rows as 1,000-row retail.sync batches, as the key, read from nothing. */
  writePathRowsPerSecond: number;
  /** appliedRowsPerSecond ÷ writePathRowsPerSecond: what the connector adds to the write path. */
  overWritePath: number;
  lag: { pollIntervalMs: number; perSecond: number; count: number; p50Ms: number; p95Ms: number; maxMs: number; targetMs: number };
}

async function createStoreDatabase(rootUrl: string): Promise<{ name: string; url: string }> {
  const name = `authhub_bench_store_${randomBytes(4).toString("hex")}`;
  const root = new pg.Client({ connectionString: rootUrl });
  await root.connect();
  await root.query(`create database ${pg.escapeIdentifier(name)}`);
  await root.end();
  const u = new URL(rootUrl);
  u.pathname = `/${name}`;
  const store = new pg.Client({ connectionString: u.toString() });
  await store.connect();
  await store.query(`
    create schema shop;
    create table shop.customer_rows (id text primary key, version bigint not null, email text not null, name text, updated_at timestamptz not null default now());
    create index on shop.customer_rows (updated_at, (id collate "C"));
    create view shop.customers as select id as external_id, version, false as deleted, jsonb_build_object('email', email, 'name', name) as data, updated_at from shop.customer_rows;`);
  await store.end();
  return { name, url: u.toString() };
}

/** A hub store (an organization and its store row) in the tenant, as the owner. */
async function hubStore(owner: pg.Pool, tenantId: string): Promise<string> {
  const code = `bench-pull-${randomBytes(4).toString("hex")}`;
  const id = (await owner.query<{ id: string }>("insert into authhub.organizations (tenant_id, slug, name) values ($1, $2, $3) returning id", [tenantId, code, code])).rows[0]!.id;
  await owner.query("insert into retail.stores (tenant_id, id, name, timezone, currency) values ($1, $2, $3, 'UTC', 'EUR')", [tenantId, id, code]);
  return code;
}

async function addSource(owner: pg.Pool, masterKey: MasterKey, tenantId: string, storeCode: string, url: string, pollIntervalMs: number): Promise<Source> {
  const client = await owner.connect();
  try {
    await client.query("begin");
    const s = await registerSource(client, masterKey, { tenantId, storeCode, url, schema: "shop", pollIntervalMs });
    await client.query("commit");
    return (
      await owner.query<Source>(
        "select tenant_id, id, store_id, url_encrypted, schema_name, api_key_id, poll_interval_ms, lookback_ms, batch_size, reconcile_every_ms, read_timeout_ms, enabled, 0 as failures from retail_private.sync_sources where id = $1",
        [s.id],
      )
    ).rows[0]!;
  } finally {
    client.release();
  }
}

export async function measureConnector(options: ConnectorOptions): Promise<ConnectorResult> {
  const owner = new pg.Pool({ connectionString: options.ownerUrl, max: 4 });
  owner.on("error", () => undefined);
  owner.on("connect", (c) => c.on("error", () => undefined));
  const store = await createStoreDatabase(options.rootUrl);
  const storePool = new pg.Pool({ connectionString: store.url, max: 2 });
  storePool.on("error", () => undefined);
  try {
    // The store's rows, spread over the past as a backfill's are.
    await storePool.query(
      `insert into shop.customer_rows (id, version, email, name, updated_at)
       select 'c-' || i, 1, 'c' || i || '@bench.test', 'Customer ' || i, now() - (($1 - i) * interval '50 milliseconds')
       from generate_series(1, $1) i`,
      [options.rows],
    );
    await storePool.query("analyze shop.customer_rows");

    const copyRates: number[] = [];
    const writeRates: number[] = [];
    const allRows = (
      await storePool.query<{ r: unknown }>(
        "select jsonb_build_object('externalId', external_id, 'version', version, 'deleted', deleted, 'data', data) as r from shop.customers order by updated_at",
      )
    ).rows.map((x) => x.r);
    const auth = new pg.Client({ connectionString: options.authUrl });
    await auth.connect();
    const pullRates: number[] = [];
    const skipReconcile: Cursor[] = (["customers", "products", "inventory", "orders"] as const).map((entity) => ({
      entity,
      updated_at: null,
      external_id: null,
      reconciled_at: new Date(),
    }));
    for (let round = 0; round < options.rounds; round++) {
      // Raw: the same rows, in the same order, as one COPY (the driver discards the data as it arrives).
      const raw = await storePool.connect();
      try {
        const t0 = performance.now();
        await raw.query('copy (select external_id, version, deleted, data, updated_at from shop.customers order by updated_at, external_id collate "C") to stdout');
        copyRates.push(options.rows / ((performance.now() - t0) / 1000));
      } finally {
        raw.release();
      }
      // The connector: one poll into a fresh hub store.
      const source = await addSource(owner, options.masterKey, options.tenantId, await hubStore(owner, options.tenantId), store.url, options.pollIntervalMs);
      const t1 = performance.now();
      const report = await pullOnce({ authUrl: options.authUrl, url: store.url, source, cursors: skipReconcile, budgetMs: 3_600_000 });
      const seconds = (performance.now() - t1) / 1000;
      if (report.applied !== options.rows) throw new Error(`bench connector: ${report.applied} of ${options.rows} rows applied (${report.rejected} rejected)`);
      pullRates.push(report.applied / seconds);
      // The write path alone, into another fresh store.
      const direct = await addSource(owner, options.masterKey, options.tenantId, await hubStore(owner, options.tenantId), store.url, options.pollIntervalMs);
      const t2 = performance.now();
      for (let i = 0; i < allRows.length; i += 1000) {
        await auth.query(beginRequestStatement(pgSettingsForApiKey({ apiKeyId: direct.api_key_id, tenantId: direct.tenant_id, orgId: direct.store_id })));
        await auth.query("select retail.sync('customers', $1::jsonb)", [JSON.stringify(allRows.slice(i, i + 1000))]);
        await auth.query("commit");
      }
      writeRates.push(allRows.length / ((performance.now() - t2) / 1000));
    }
    await auth.end();

    // Lag at a steady rate, through the real worker. The hub's tables grew by
    // rounds × rows just now: their statistics are taken first, as autovacuum
    // would within its nap time (stale ones make the per-key lookups of the
    // write path and the lookback scan the store's rows instead of the unique index).
    await owner.query("analyze retail.customers");
    configureWorker({ masterKey: options.masterKey, clerkApiUrl: "http://127.0.0.1:9", authUrl: options.authUrl });
    const steadyStore = await createStoreDatabase(options.rootUrl);
    const steadyPool = new pg.Pool({ connectionString: steadyStore.url, max: 2 });
    steadyPool.on("error", () => undefined);
    const code = await hubStore(owner, options.tenantId);
    const source = await addSource(owner, options.masterKey, options.tenantId, code, steadyStore.url, options.pollIntervalMs);
    const runner = await run({ pgPool: owner, taskList: tasks, concurrency: 2, pollInterval: 500, noHandleSignals: true, logger: new Logger(() => () => undefined) });
    const lags: number[] = [];
    try {
      await runner.addJob("sync_source__pull", { tenant_id: source.tenant_id, source_id: source.id }, { queueName: `sync-pull:${source.id}`, jobKey: `sync-pull:${source.id}` });
      const total = options.steady.perSecond * options.steady.seconds;
      const started = performance.now();
      for (let i = 0; i < total; i++) {
        const due = started + (i * 1000) / options.steady.perSecond;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        await steadyPool.query("insert into shop.customer_rows (id, version, email) values ($1, 1, $2)", [`s-${i}`, `s${i}@bench.test`]);
      }
      // Until every row has arrived (or a generous deadline).
      const deadline = Date.now() + options.pollIntervalMs * 10 + 30_000;
      for (;;) {
        const { rows } = await owner.query<{ n: number }>("select count(*)::int as n from retail.customers where tenant_id = $1 and store_id = $2", [
          source.tenant_id,
          source.store_id,
        ]);
        if (rows[0]!.n >= total || Date.now() > deadline) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      const applied = await owner.query<{ external_id: string; created_ms: string }>(
        "select external_id, (extract(epoch from created_at) * 1000)::float8 as created_ms from retail.customers where tenant_id = $1 and store_id = $2",
        [source.tenant_id, source.store_id],
      );
      const written = await steadyPool.query<{ id: string; updated_ms: string }>(
        "select id, (extract(epoch from updated_at) * 1000)::float8 as updated_ms from shop.customer_rows",
      );
      const writtenAt = new Map(written.rows.map((r) => [r.id, Number(r.updated_ms)]));
      for (const row of applied.rows) lags.push(Math.max(0, Number(row.created_ms) - writtenAt.get(row.external_id)!));
      if (lags.length < total) throw new Error(`bench connector: ${lags.length} of ${total} steady rows arrived`);
    } finally {
      await owner.query("update retail_private.sync_sources set enabled = false where id = $1", [source.id]);
      await runner.stop();
      await steadyPool.end();
      await dropDatabase(options.rootUrl, steadyStore.name);
    }

    const copyRowsPerSecond = median(copyRates);
    const appliedRowsPerSecond = median(pullRates);
    return {
      rows: options.rows,
      rounds: options.rounds,
      copyRowsPerSecond,
      appliedRowsPerSecond,
      ratio: appliedRowsPerSecond / copyRowsPerSecond,
      writePathRowsPerSecond: median(writeRates),
      overWritePath: appliedRowsPerSecond / median(writeRates),
      lag: {
        pollIntervalMs: options.pollIntervalMs,
        perSecond: options.steady.perSecond,
        count: lags.length,
        p50Ms: percentile(lags, 50),
        p95Ms: percentile(lags, 95),
        maxMs: Math.max(...lags),
        targetMs: options.pollIntervalMs + 1_000,
      },
    };
  } finally {
    await storePool.end();
    await owner.end();
    await dropDatabase(options.rootUrl, store.name);
  }
}

async function dropDatabase(rootUrl: string, name: string): Promise<void> {
  const root = new pg.Client({ connectionString: rootUrl });
  await root.connect();
  await root.query(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`);
  await root.end();
}
