/**
 * The pull connector (DESIGN §13; issue 17) against real PostgreSQL databases
 * standing in for stores' own systems (extra databases on the test cluster,
 * one view per entity in the sync shape) and the real graphile-worker: a
 * source registered by the CLI (URL encrypted, never shown, rewrapped), rows
 * applied as the store's own key through retail.sync, a long transaction's
 * late rows picked up by the lookback (and missed without it), hard deletes
 * found by reconciliation, bad rows rejected once each, a store that is down
 * backing off while another store pulls, and no batch applied without its
 * cursor.
 */
import { jest } from "@jest/globals";
import { randomBytes } from "node:crypto";
import { Logger, makeWorkerUtils, runOnce } from "graphile-worker";
import pg from "pg";
import { parseMasterKey, type MasterKey } from "../../server/auth/masterKey.js";
import { runCli } from "../../server/cli.js";
import { registerSource, SourceInputError } from "../../server/sync/sources.js";
import request from "supertest";
import { configureWorker } from "../../worker/context.js";
import { tasks } from "../../worker/tasks/index.js";
import { nextDelayMs } from "../../worker/tasks/sync_source__pull.js";
import type { TestDatabase } from "../helpers/db.js";
import { cast, useFixtureDatabase, type Fixtures } from "../helpers/fixtures.js";
import { startTestServer } from "../helpers/server.js";
import { signRequest } from "../../client/index.js";
import { issueApiKey } from "../../server/openapi/issue.js";
import { seedRetail, type RetailFixtures } from "../db/retail.fixtures.js";

jest.setTimeout(180_000);

let db: TestDatabase;
let f: Fixtures;
let r: RetailFixtures;
const keyText = randomBytes(32).toString("base64");
const masterKey: MasterKey = parseMasterKey(keyText);
const storeDbs: string[] = [];
const rootUrl = () => process.env.AUTHHUB_TEST_ROOT_URL!;
const logLines: string[] = [];

useFixtureDatabase(async (database, fixtures) => {
  db = database;
  f = fixtures;
  r = await seedRetail(db, f);
  configureWorker({ masterKey, clerkApiUrl: "http://127.0.0.1:9", authUrl: db.authUrl });
});

afterAll(async () => {
  const root = new pg.Client({ connectionString: rootUrl() });
  await root.connect();
  for (const name of storeDbs) await root.query(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`);
  await root.end();
});

/** A store's own database: tables of rows and, per entity, a view in the sync shape. */
async function storeDatabase(options: { deletedColumn?: boolean } = {}): Promise<{ url: string; pool: pg.Pool }> {
  const name = `authhub_store_${randomBytes(5).toString("hex")}`;
  const root = new pg.Client({ connectionString: rootUrl() });
  await root.connect();
  await root.query(`create database ${pg.escapeIdentifier(name)}`);
  await root.end();
  storeDbs.push(name);
  const u = new URL(rootUrl());
  u.pathname = `/${name}`;
  const pool = new pg.Pool({ connectionString: u.toString(), max: 4 });
  pool.on("error", () => undefined);
  const deleted = options.deletedColumn !== false;
  await pool.query(`
    create schema shop;
    create table shop.customer_rows (id text primary key, version bigint not null, deleted boolean not null default false, email text, name text, updated_at timestamptz not null default now());
    create view shop.customers as select id as external_id, version, ${deleted ? "deleted," : ""} jsonb_build_object('email', email, 'name', name) as data, updated_at from shop.customer_rows;
    create table shop.product_rows (id text primary key, version bigint not null, title text, sku text, updated_at timestamptz not null default now());
    create view shop.products as select id as external_id, version, false as deleted,
      jsonb_build_object('title', title, 'status', 'active', 'variants', jsonb_build_array(jsonb_build_object('sku', sku, 'priceMinor', 500, 'currency', 'EUR'))) as data, updated_at
      from shop.product_rows;`);
  return { url: u.toString(), pool };
}

const customer = (pool: pg.Pool | pg.PoolClient, id: string, version = 1, email = `${id}@shop.test`) =>
  pool.query(
    "insert into shop.customer_rows (id, version, email, name) values ($1, $2, $3, $4) on conflict (id) do update set version = excluded.version, email = excluded.email, updated_at = now()",
    [id, version, email, `Name ${id}`],
  );

/** The store's pull source, as the worker finds it. */
async function source(storeCode: "berlin" | "potsdam" | "tokyo", url: string, options: { lookbackMs?: number; pollIntervalMs?: number } = {}): Promise<string> {
  const client = await db.owner.connect();
  try {
    await client.query("begin");
    const s = await registerSource(client, masterKey, {
      tenantId: f.a.id,
      storeCode,
      url,
      schema: "shop",
      pollIntervalMs: options.pollIntervalMs ?? 600_000,
      lookbackMs: options.lookbackMs ?? 60_000,
    });
    await client.query("commit");
    return s.id;
  } finally {
    client.release();
  }
}

/** Queues each source's pull and lets the real worker run every job that is due. */
async function pull(sourceIds: string[], reconcile = false): Promise<void> {
  const pool = new pg.Pool({ connectionString: db.ownerUrl, max: 4 });
  pool.on("error", () => undefined);
  pool.on("connect", (c) => c.on("error", () => undefined));
  const logger = new Logger(() => (level, message) => void logLines.push(`${level} ${message}`));
  try {
    const utils = await makeWorkerUtils({ pgPool: pool, logger });
    for (const id of sourceIds) {
      await utils.addJob("sync_source__pull", { tenant_id: f.a.id, source_id: id, reconcile }, { queueName: `sync-pull:${id}`, jobKey: `sync-pull:${id}` });
    }
    await utils.release();
    await runOnce({ pgPool: pool, taskList: tasks, noHandleSignals: true, logger });
  } finally {
    await pool.end();
  }
}

const hubCustomers = async (storeId: string) =>
  (
    await db.owner.query<{ external_id: string; source_version: string; deleted: boolean }>(
      "select external_id, source_version::text, deleted_at is not null as deleted from retail.customers where tenant_id = $1 and store_id = $2 order by external_id",
      [f.a.id, storeId],
    )
  ).rows;

const pullStatus = async (storeId: string, entity: string) =>
  (
    await db.owner.query<{ applied_count: string; rejected_count: string; last_version_applied: string | null; last_error: string | null; lag: unknown }>(
      "select applied_count::text, rejected_count::text, last_version_applied::text, last_error, lag from retail.sync_statuses where tenant_id = $1 and store_id = $2 and entity = $3 and source_kind = 'pull'",
      [f.a.id, storeId, entity],
    )
  ).rows[0];

describe("sync source add", () => {
  test("registers the store's database with its URL encrypted: never printed, not in the audit log, covered by keys rewrap", async () => {
    const { url, pool } = await storeDatabase();
    await pool.end();
    const secretUrl = url.replace("postgres://", "postgres://shopuser:S3cretPassw0rd@");
    const env = { NODE_ENV: "test", DATABASE_URL: db.ownerUrl, AUTH_DATABASE_URL: db.authUrl, AUTHHUB_MASTER_KEY: keyText, LOG_LEVEL: "silent" };
    let stdout = "";
    let stderr = "";
    const out = jest.spyOn(process.stdout, "write").mockImplementation((c: string | Uint8Array) => ((stdout += c.toString()), true));
    const err = jest.spyOn(process.stderr, "write").mockImplementation((c: string | Uint8Array) => ((stderr += c.toString()), true));
    let code: number;
    let rewrap: number;
    const newKey = randomBytes(32).toString("base64");
    // The fixtures' keys hold placeholder ciphertexts: made real under the current key, so rewrap can open every secret.
    const placeholders = await db.owner.query<{ fingerprint: string }>("select fingerprint from authhub_private.api_key_secrets where secret_encrypted = 'v1.x.y.z'");
    for (const p of placeholders.rows) {
      await db.owner.query("update authhub_private.api_key_secrets set secret_encrypted = $2 where fingerprint = $1", [p.fingerprint, masterKey.encrypt("sk_placeholder")]);
    }
    try {
      code = await runCli(["sync", "source", "add", "--tenant", f.a.slug, "--store", "tokyo", "--url", secretUrl, "--schema", "shop", "--json"], env);
      rewrap = await runCli(["keys", "rewrap", "--json"], { ...env, AUTHHUB_MASTER_KEY: `2:${newKey}`, AUTHHUB_MASTER_KEY_PREVIOUS: `1:${keyText}` });
    } finally {
      out.mockRestore();
      err.mockRestore();
    }
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    expect(rewrap).toBe(0);
    const printed = JSON.parse(stdout.split("\n")[0]!) as Record<string, unknown>;
    expect(printed).toMatchObject({ store: "tokyo", schema: "shop", store_id: r.a.stores.tokyo });
    expect(stdout).not.toContain("S3cretPassw0rd");
    const { rows } = await db.owner.query<{ url_encrypted: string; api_key_id: string }>("select url_encrypted, api_key_id from retail_private.sync_sources where id = $1", [
      printed.id,
    ]);
    expect(rows[0]!.url_encrypted).not.toContain("S3cretPassw0rd");
    // Rewrapped under the new key (version 2), still the same URL.
    expect(rows[0]!.url_encrypted.startsWith("v2.")).toBe(true);
    expect(parseMasterKey(`2:${newKey}`).decrypt(rows[0]!.url_encrypted)).toBe(secretUrl);
    // The audit log recorded the source without its URL, in any form.
    const audit = await db.owner.query<{ n: number; leaked: number }>(
      "select count(*)::int as n, count(*) filter (where coalesce(old::text, '') || coalesce(new::text, '') ~ 'url_encrypted|S3cret')::int as leaked from authhub.audit_events where table_name = 'sync_sources'",
    );
    expect(audit.rows[0]).toEqual({ n: expect.any(Number), leaked: 0 });
    expect(audit.rows[0]!.n).toBeGreaterThan(0);
    // Its key is bound to the store and may only sync.
    const key = await db.owner.query("select organization_id, scopes::text[] as scopes from authhub.api_keys where id = $1", [rows[0]!.api_key_id]);
    expect(key.rows[0]).toEqual({ organization_id: r.a.stores.tokyo, scopes: ["sync:write"] });
    // A second source for the same store is refused (usage error), without repeating the URL.
    let stderr2 = "";
    const err2 = jest.spyOn(process.stderr, "write").mockImplementation((c: string | Uint8Array) => ((stderr2 += c.toString()), true));
    const out2 = jest.spyOn(process.stdout, "write").mockImplementation(() => true);
    try {
      expect(await runCli(["sync", "source", "add", "--tenant", f.a.slug, "--store", "tokyo", "--url", secretUrl, "--json"], env)).toBe(2);
      expect(await runCli(["sync", "source", "add", "--tenant", f.a.slug, "--store", "berlin", "--url", "mysql://x:S3cretPassw0rd@h/db", "--json"], env)).toBe(2);
      // Intervals outside the table's checks: refused by SQL, the answer names the field and its range.
      expect(await runCli(["sync", "source", "add", "--tenant", f.a.slug, "--store", "berlin", "--url", secretUrl, "--poll-interval", "50", "--json"], env)).toBe(1);
    } finally {
      err2.mockRestore();
      out2.mockRestore();
    }
    expect(stderr2).toContain("already has a pull source");
    expect(stderr2).toMatch(/pollInterval.*must be between 100 and 3600000 milliseconds/);
    expect((await db.owner.query("select count(*)::int as n from retail_private.sync_sources where store_id = $1", [r.a.stores.berlin])).rows[0].n).toBe(0);
    expect(stderr2).not.toContain("S3cretPassw0rd");
    await db.owner.query("delete from retail_private.sync_sources where id = $1", [printed.id]);
  });

  test("two adds for one store at once: the second waits on the table's unique key and is refused as a usage error, not a raw violation", async () => {
    const { url, pool } = await storeDatabase();
    await pool.end();
    const input = { tenantId: f.a.id, storeCode: "tokyo", url, schema: "shop" };
    const first = await db.owner.connect();
    const second = await db.owner.connect();
    try {
      await first.query("begin");
      await second.query("begin");
      const added = await registerSource(first, masterKey, input);
      const pid = (await second.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0]!.pid;
      const racing = registerSource(second, masterKey, input).then(
        () => null,
        (err: unknown) => err,
      );
      // The second add has passed every check of its own and waits on the first's uncommitted row.
      for (let i = 0; ; i++) {
        const { rows } = await db.owner.query<{ waiting: boolean }>("select wait_event_type = 'Lock' as waiting from pg_stat_activity where pid = $1", [pid]);
        if (rows[0]?.waiting) break;
        if (i > 600) throw new Error("the second add never waited on the first");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await first.query("commit");
      const refused = await racing;
      expect(refused).toBeInstanceOf(SourceInputError);
      expect((refused as Error).message).toBe("Store tokyo already has a pull source.");
      await second.query("rollback");
      // The first add holds the store (the row the second was refused for is there).
      const held = await db.owner.query("select id from retail_private.sync_sources where tenant_id = $1 and store_id = $2", [f.a.id, r.a.stores.tokyo]);
      expect(held.rows).toEqual([{ id: added.id }]);
      await db.owner.query("delete from retail_private.sync_sources where id = $1", [added.id]);
    } finally {
      await second.query("rollback").catch(() => undefined);
      first.release();
      second.release();
    }
  });
});

describe("pulling", () => {
  let berlin: { url: string; pool: pg.Pool };
  let potsdam: { url: string; pool: pg.Pool };
  let berlinSource: string;
  let potsdamSource: string;

  beforeAll(async () => {
    berlin = await storeDatabase();
    potsdam = await storeDatabase();
    berlinSource = await source("berlin", berlin.url, { lookbackMs: 60_000 });
    // Potsdam reads the same kind of database with no lookback: the control.
    potsdamSource = await source("potsdam", potsdam.url, { lookbackMs: 0 });
  });
  afterAll(async () => {
    await berlin.pool.end();
    await potsdam.pool.end();
  });

  test("rows are applied through the write path as the store's key; a second poll applies only what changed", async () => {
    for (const id of ["c-1", "c-2", "c-3"]) await customer(berlin.pool, id);
    await berlin.pool.query("insert into shop.product_rows (id, version, title, sku) values ('p-1', 3, 'Tea', 'PULL-TEA')");
    await pull([berlinSource]);
    expect(await hubCustomers(r.a.stores.berlin)).toEqual(
      expect.arrayContaining([
        { external_id: "c-1", source_version: "1", deleted: false },
        { external_id: "c-2", source_version: "1", deleted: false },
        { external_id: "c-3", source_version: "1", deleted: false },
      ]),
    );
    const product = await db.owner.query(
      "select p.source_version::text as v, v.sku from retail.products p join retail.variants v on v.tenant_id = p.tenant_id and v.product_id = p.id where p.tenant_id = $1 and p.external_id = 'p-1'",
      [f.a.id],
    );
    expect(product.rows).toEqual([{ v: "3", sku: "PULL-TEA" }]);
    // Written as the source's own key (the audit log names it).
    const key = (await db.owner.query<{ api_key_id: string }>("select api_key_id from retail_private.sync_sources where id = $1", [berlinSource])).rows[0]!.api_key_id;
    const actors = await db.owner.query<{ actor: string }>(
      "select distinct actor from authhub.audit_events where table_name = 'customers' and tenant_id = $1 and new ->> 'external_id' = 'c-1'",
      [f.a.id],
    );
    expect(actors.rows).toEqual([{ actor: `api_key:${key}` }]);
    expect(await pullStatus(r.a.stores.berlin, "customers")).toMatchObject({ applied_count: "3", rejected_count: "0", last_version_applied: "1", last_error: null });

    await customer(berlin.pool, "c-2", 2, "new@shop.test");
    await pull([berlinSource]);
    expect((await hubCustomers(r.a.stores.berlin)).find((c) => c.external_id === "c-2")).toEqual({ external_id: "c-2", source_version: "2", deleted: false });
    // c-1 and c-3 were not applied again (the lookback re-read sends only what the hub lacks).
    expect(await pullStatus(r.a.stores.berlin, "customers")).toMatchObject({ applied_count: "4", last_version_applied: "2" });
  });

  test("a row a long transaction commits after newer rows were pulled is picked up by the lookback (and missed without it)", async () => {
    for (const [store, src] of [
      [berlin, berlinSource],
      [potsdam, potsdamSource],
    ] as const) {
      const long = await store.pool.connect();
      try {
        await long.query("begin");
        // now() is the transaction's start: its row's updated_at is older than the rows committed meanwhile.
        await customer(long, "late-1");
        await new Promise((resolve) => setTimeout(resolve, 1_500));
        await customer(store.pool, "early-1");
        await customer(store.pool, "early-2");
        await pull([src]);
        await new Promise((resolve) => setTimeout(resolve, 1_500));
        await long.query("commit");
      } finally {
        long.release();
      }
      await pull([src]);
    }
    const ids = (rows: { external_id: string }[]) => rows.map((x) => x.external_id);
    expect(ids(await hubCustomers(r.a.stores.berlin))).toEqual(expect.arrayContaining(["early-1", "early-2", "late-1"]));
    expect(ids(await hubCustomers(r.a.stores.potsdam))).toEqual(expect.arrayContaining(["early-1", "early-2"]));
    expect(ids(await hubCustomers(r.a.stores.potsdam))).not.toContain("late-1");
  });

  test("bad rows are rejected one by one with their reasons, recorded once as pulled, and the others apply", async () => {
    await berlin.pool.query("insert into shop.customer_rows (id, version, email) values ('bad-1', 1, 'not-an-email'), ('good-1', 1, 'good@shop.test')");
    await berlin.pool.query("insert into shop.customer_rows (id, version, email) values ('bad 2', 1, 'x@shop.test')");
    await pull([berlinSource]);
    await pull([berlinSource]);
    expect((await hubCustomers(r.a.stores.berlin)).map((c) => c.external_id)).toContain("good-1");
    const rejects = await db.owner.query<{ external_id: string; source_kind: string; code: string }>(
      "select external_id, source_kind, error ->> 'code' as code from retail.sync_rejects where tenant_id = $1 and store_id = $2 and source_kind = 'pull' order by external_id",
      [f.a.id, r.a.stores.berlin],
    );
    expect(rejects.rows).toEqual([
      { external_id: "bad 2", source_kind: "pull", code: "invalid_input" },
      { external_id: "bad-1", source_kind: "pull", code: "invalid_input" },
    ]);
    expect(await pullStatus(r.a.stores.berlin, "customers")).toMatchObject({ rejected_count: "2" });
  });

  test("no batch is applied without its cursor: a read that fails leaves the batches before it applied with their cursor, and the next poll goes on", async () => {
    const boom = await storeDatabase();
    try {
      // The products view fails to read (until shop.fixed exists), after the customers' batches.
      await boom.pool.query(`create function shop.title_of(title text) returns text language plpgsql volatile as $f$
        begin
          if to_regclass('shop.fixed') is null then return (1 / 0)::text; end if;
          return title;
        end $f$`);
      await boom.pool.query(`create or replace view shop.products as select id as external_id, version, false as deleted,
        jsonb_build_object('title', shop.title_of(title), 'status', 'active', 'variants', jsonb_build_array(jsonb_build_object('sku', sku, 'priceMinor', 500, 'currency', 'EUR'))) as data, updated_at
        from shop.product_rows`);
      for (const id of ["x-1", "x-2", "x-3", "x-4", "x-5"]) {
        await customer(boom.pool, id);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      await boom.pool.query("insert into shop.product_rows (id, version, title, sku) values ('xp-1', 1, 'Cup', 'BOOM-CUP')");
      const src = await source("tokyo", boom.url);
      await db.owner.query("update retail_private.sync_sources set batch_size = 2 where id = $1", [src]);
      await pull([src]);
      const tokyo = () => hubCustomers(r.a.stores.tokyo).then((rows) => rows.map((x) => x.external_id).filter((id) => id.startsWith("x-")));
      const products = async () => (await db.owner.query("select external_id from retail.products where tenant_id = $1 and external_id = 'xp-1'", [f.a.id])).rows;
      // Three batches of customers applied, each with its cursor; nothing of the products.
      expect(await tokyo()).toEqual(["x-1", "x-2", "x-3", "x-4", "x-5"]);
      const cursors = await db.owner.query("select entity, external_id from retail_private.sync_source_cursors where source_id = $1 and updated_at is not null order by entity", [
        src,
      ]);
      expect(cursors.rows).toEqual([{ entity: "customers", external_id: "x-5" }]);
      expect(await products()).toEqual([]);
      const health = await db.owner.query("select failures, last_error from retail_private.sync_source_health where source_id = $1", [src]);
      expect(health.rows[0]).toEqual({ failures: 1, last_error: expect.stringContaining("22012") });
      expect((await pullStatus(r.a.stores.tokyo, "products"))!.last_error).toContain("22012");
      expect(await pullStatus(r.a.stores.tokyo, "customers")).toMatchObject({ applied_count: "5" });
      await boom.pool.query("create table shop.fixed ()");
      await pull([src]);
      expect(await products()).toEqual([{ external_id: "xp-1" }]);
      expect((await db.owner.query("select failures from retail_private.sync_source_health where source_id = $1", [src])).rows[0]).toEqual({ failures: 0 });
      expect((await pullStatus(r.a.stores.tokyo, "products"))!.last_error).toBeNull();
      // The customers were not applied twice.
      expect(await pullStatus(r.a.stores.tokyo, "customers")).toMatchObject({ applied_count: "5" });
      await db.owner.query("delete from retail_private.sync_sources where id = $1", [src]);
    } finally {
      await boom.pool.end();
    }
  });
});

describe("a store that is down", () => {
  test("backs off, is recorded without its URL, and does not hold up another store", async () => {
    const good = await storeDatabase();
    // A port nobody listens on, with a password in the URL.
    const downUrl = "postgres://shop:Sup3rSecret@127.0.0.1:1/shop";
    try {
      const t = f.b;
      // Tenant b's stores: one down, one up.
      const mk = async (code: string, url: string) => {
        const client = await db.owner.connect();
        try {
          await client.query("begin");
          const s = await registerSource(client, masterKey, { tenantId: t.id, storeCode: code, url, schema: "shop", pollIntervalMs: 1_000 });
          await client.query("commit");
          return s.id;
        } finally {
          client.release();
        }
      };
      const down = await mk("berlin", downUrl);
      const up = await mk("potsdam", good.url);
      await customer(good.pool, "g-1");
      const run = async () => {
        const pool = new pg.Pool({ connectionString: db.ownerUrl, max: 4 });
        pool.on("error", () => undefined);
        pool.on("connect", (c) => c.on("error", () => undefined));
        const logger = new Logger(() => (level, message) => void logLines.push(`${level} ${message}`));
        const utils = await makeWorkerUtils({ pgPool: pool, logger });
        for (const id of [down, up]) await utils.addJob("sync_source__pull", { tenant_id: t.id, source_id: id }, { queueName: `sync-pull:${id}`, jobKey: `sync-pull:${id}` });
        await utils.release();
        await runOnce({ pgPool: pool, taskList: tasks, noHandleSignals: true, logger });
        await pool.end();
      };
      await run();
      const next = async () =>
        (
          await db.owner.query<{ delay: number }>("select (extract(epoch from run_at - now()) * 1000)::float8 as delay from graphile_worker.jobs where key = $1", [
            `sync-pull:${down}`,
          ])
        ).rows[0]!.delay;
      const firstDelay = await next();
      await run();
      const secondDelay = await next();
      const health = await db.owner.query<{ failures: number; last_error: string }>("select failures, last_error from retail_private.sync_source_health where source_id = $1", [
        down,
      ]);
      expect(health.rows[0]).toEqual({ failures: 2, last_error: "store database unreachable (ECONNREFUSED)" });
      // Backoff: the next try waits longer after each failure.
      expect(firstDelay).toBeGreaterThan(1_000);
      expect(secondDelay).toBeGreaterThan(firstDelay);
      expect(nextDelayMs(1_000, 2)).toBe(4_000);
      // The other store pulled meanwhile.
      const applied = await db.owner.query("select external_id from retail.customers where tenant_id = $1 and store_id = $2 and external_id like 'g-%'", [
        t.id,
        (await db.owner.query("select store_id from retail_private.sync_sources where id = $1", [up])).rows[0].store_id,
      ]);
      expect(applied.rows).toEqual([{ external_id: "g-1" }]);
      // The URL's password reached no log, status or health row.
      expect(logLines.join("\n")).not.toContain("Sup3rSecret");
      const everywhere = await db.owner.query("select count(*)::int as n from retail.sync_statuses where last_error like '%Sup3rSecret%' or last_error like '%127.0.0.1:1%'");
      expect(everywhere.rows[0]).toEqual({ n: 0 });
      await db.owner.query("update retail_private.sync_sources set enabled = false where id = any ($1::uuid[])", [[down, up]]);
    } finally {
      await good.pool.end();
    }
  });
});

describe("a slow store, and lost chains", () => {
  test("a store slower than its read timeout fails its poll (57014) and backs off; the scheduler restarts a lost chain and keeps a pending run time", async () => {
    const slow = await storeDatabase();
    try {
      await slow.pool.query(
        "create or replace view shop.customers as select id as external_id, version, deleted, jsonb_build_object('email', email) as data, updated_at from shop.customer_rows, pg_sleep(3)",
      );
      await customer(slow.pool, "s-1");
      const client = await db.owner.connect();
      let src: string;
      try {
        await client.query("begin");
        const code = `slow-${randomBytes(3).toString("hex")}`;
        const org = (
          await client.query<{ id: string }>("insert into authhub.organizations (tenant_id, slug, name, parent_id) values ($1, $2, $3, $4) returning id", [
            f.a.id,
            code,
            code,
            f.a.orgs.child,
          ])
        ).rows[0]!.id;
        await client.query("insert into retail.stores (tenant_id, id, name, timezone, currency) values ($1, $2, $3, 'UTC', 'EUR')", [f.a.id, org, code]);
        src = (await registerSource(client, masterKey, { tenantId: f.a.id, storeCode: code, url: slow.url, schema: "shop", pollIntervalMs: 600_000 })).id;
        await client.query("update retail_private.sync_sources set read_timeout_ms = 500 where id = $1", [src]);
        await client.query("commit");
      } finally {
        client.release();
      }
      await pull([src]);
      const health = await db.owner.query("select failures, last_error from retail_private.sync_source_health where source_id = $1", [src]);
      expect(health.rows[0]).toEqual({ failures: 1, last_error: expect.stringContaining("57014") });

      // The chain's pending job is lost: the scheduler queues it again.
      await db.owner.query("delete from graphile_worker._private_jobs where key = $1", [`sync-pull:${src}`]);
      const pool = new pg.Pool({ connectionString: db.ownerUrl, max: 2 });
      pool.on("error", () => undefined);
      pool.on("connect", (c) => c.on("error", () => undefined));
      const jobAt = async () => (await db.owner.query<{ run_at: Date }>("select run_at from graphile_worker.jobs where key = $1", [`sync-pull:${src}`])).rows[0]?.run_at ?? null;
      try {
        const utils = await makeWorkerUtils({ pgPool: pool, logger: new Logger(() => () => undefined) });
        const schedule = async () => {
          await utils.addJob("sync_sources__schedule", {});
          // Only the scheduler is due; the pulls it queues run now, so stop the sources' pulls from running here.
          await runOnce({ pgPool: pool, taskList: { sync_sources__schedule: tasks.sync_sources__schedule! }, noHandleSignals: true, logger: new Logger(() => () => undefined) });
        };
        await schedule();
        expect(await jobAt()).not.toBeNull();
        // A pending run in the future keeps its time.
        await db.owner.query("update graphile_worker._private_jobs set run_at = now() + interval '1 hour' where key = $1", [`sync-pull:${src}`]);
        const later = await jobAt();
        await schedule();
        expect(await jobAt()).toEqual(later);
        await utils.release();
      } finally {
        await pool.end();
      }
      await db.owner.query("delete from retail_private.sync_sources where id = $1", [src]);
    } finally {
      await slow.pool.end();
    }
  });
});

describe("reconciliation", () => {
  test("finds rows a store without a deleted flag hard-deleted (count and hash per id range), and rows the pull missed", async () => {
    const store = await storeDatabase({ deletedColumn: false });
    try {
      for (let i = 0; i < 40; i++) await customer(store.pool, `h-${i}`);
      const client = await db.owner.connect();
      let src: string;
      try {
        await client.query("begin");
        // Tenant b's tokyo store, with no lookback at all: only reconciliation can find what the cursor passed.
        src = (await registerSource(client, masterKey, { tenantId: f.b.id, storeCode: "tokyo", url: store.url, schema: "shop", pollIntervalMs: 600_000, lookbackMs: 0 })).id;
        await client.query("commit");
      } finally {
        client.release();
      }
      const tokyo = (await db.owner.query<{ id: string }>("select id from retail.stores where tenant_id = $1 and code = 'tokyo'", [f.b.id])).rows[0]!.id;
      const run = async (reconcile: boolean) => {
        const pool = new pg.Pool({ connectionString: db.ownerUrl, max: 4 });
        pool.on("error", () => undefined);
        pool.on("connect", (c) => c.on("error", () => undefined));
        const logger = new Logger(() => () => undefined);
        const utils = await makeWorkerUtils({ pgPool: pool, logger });
        await utils.addJob("sync_source__pull", { tenant_id: f.b.id, source_id: src, reconcile }, { queueName: `sync-pull:${src}`, jobKey: `sync-pull:${src}` });
        await utils.release();
        await runOnce({ pgPool: pool, taskList: tasks, noHandleSignals: true, logger });
        await pool.end();
      };
      await run(false);
      const live = async () =>
        (
          await db.owner.query<{ external_id: string }>("select external_id from retail.customers where tenant_id = $1 and store_id = $2 and deleted_at is null", [f.b.id, tokyo])
        ).rows
          .map((x) => x.external_id)
          .filter((id) => id.startsWith("h-"))
          .sort();
      expect(await live()).toHaveLength(40);
      // Hard deletes, and a row whose updated_at is behind the cursor (the pull cannot see it).
      await store.pool.query("delete from shop.customer_rows where id in ('h-3', 'h-17')");
      await store.pool.query("insert into shop.customer_rows (id, version, email, updated_at) values ('h-old', 1, 'old@shop.test', now() - interval '1 day')");
      await run(false);
      expect(await live()).toHaveLength(40);
      await run(true);
      const after = await live();
      expect(after).toHaveLength(39);
      expect(after).not.toContain("h-3");
      expect(after).not.toContain("h-17");
      expect(after).toContain("h-old");
      const tomb = await db.owner.query("select external_id, source_version::text as v from retail.customers where tenant_id = $1 and store_id = $2 and deleted_at is not null", [
        f.b.id,
        tokyo,
      ]);
      expect(tomb.rows).toEqual(
        expect.arrayContaining([
          { external_id: "h-3", v: "2" },
          { external_id: "h-17", v: "2" },
        ]),
      );
      // A second reconciliation finds nothing to change.
      const before = await pullStatusFor(f.b.id, tokyo);
      await run(true);
      expect(await pullStatusFor(f.b.id, tokyo)).toEqual(before);
    } finally {
      await store.pool.end();
    }
  });
});

async function pullStatusFor(tenantId: string, storeId: string) {
  return (
    await db.owner.query(
      "select applied_count::text, rejected_count::text from retail.sync_statuses where tenant_id = $1 and store_id = $2 and entity = 'customers' and source_kind = 'pull'",
      [tenantId, storeId],
    )
  ).rows[0];
}

describe("sync health over GraphQL", () => {
  test("syncStatuses and the rejected rows show the pulls to the tenant's admins, and nothing of them to another tenant's", async () => {
    const srv = await startTestServer(db);
    try {
      const gql = async (who: Parameters<typeof srv.mint>[0], query: string) =>
        (
          await request(srv.app)
            .post("/graphql")
            .set("Content-Type", "application/json")
            .set("Authorization", `Bearer ${await srv.mint(who)}`)
            .send({ query })
        ).body as {
          data?: {
            syncStatuses: { nodes: { entity: string; sourceKind: string; appliedCount: string; rejectedCount: string; storeId: string }[] };
            syncRejects: { nodes: { sourceKind: string; externalId: string }[] };
          };
          errors?: unknown[];
        };
      const query = `{ syncStatuses(condition: { sourceKind: "pull" }) { nodes { entity sourceKind appliedCount rejectedCount lastVersionApplied lastSuccessAt lag { seconds } lastError storeId } }
                       syncRejects { nodes { sourceKind externalId error } } }`;
      const a = await gql(cast(f, f.a).tenantAdmin, query);
      expect(a.errors).toBeUndefined();
      const berlinCustomers = a.data!.syncStatuses.nodes.find((n) => n.storeId === r.a.stores.berlin && n.entity === "customers");
      expect(berlinCustomers).toMatchObject({ sourceKind: "pull", rejectedCount: "2" });
      expect(
        a
          .data!.syncRejects.nodes.filter((n) => n.sourceKind === "pull")
          .map((n) => n.externalId)
          .sort(),
      ).toEqual(["bad 2", "bad-1"]);
      const b = await gql(cast(f, f.b).tenantAdmin, query);
      expect(b.errors).toBeUndefined();
      expect(b.data!.syncStatuses.nodes.every((n) => n.storeId !== r.a.stores.berlin)).toBe(true);
      expect(b.data!.syncRejects.nodes.map((n) => n.externalId)).not.toContain("bad-1");
      // A member sees no health at all.
      const member = await gql(cast(f, f.a).member, query);
      expect(member.data?.syncStatuses.nodes ?? []).toEqual([]);
    } finally {
      await srv.close();
    }
  });
});

describe("bulk backfill", () => {
  test("an NDJSON body is staged, answered 202 {jobId}, applied by the worker through the write path as the key, and its progress read back; one job per store at a time", async () => {
    const srv = await startTestServer(db, { AUTHHUB_MASTER_KEY: keyText });
    try {
      const issued = await issueApiKey(db.owner, srv.masterKey, { name: "Bulk", scopes: ["sync:write"], organizationId: r.b.stores.potsdam, tenantId: f.b.id });
      const key = { keyId: issued.keyId, secret: issued.secret };
      const lines = [
        ...Array.from({ length: 2500 }, (_, i) => JSON.stringify({ externalId: `b-${i}`, version: 2, data: { email: `b${i}@bulk.test` } })),
        "{ not json",
        JSON.stringify({ externalId: "b-bad", version: 1, data: { email: "nope" } }),
        JSON.stringify({ externalId: "b-7", version: 1, data: { email: "older@bulk.test" } }),
        JSON.stringify({ externalId: "b-gone", version: 3, deleted: true }),
        "",
      ];
      const body = lines.join("\n");
      const post = (raw: string, k = key, entity = "customers") =>
        request(srv.app)
          .post(`/open/v1/sync/${entity}/bulk`)
          .set({ ...signRequest({ keyId: k.keyId, secret: k.secret, method: "POST", url: `/open/v1/sync/${entity}/bulk`, body: raw }), "Content-Type": "application/x-ndjson" })
          .send(raw);
      const get = (jobId: string) =>
        request(srv.app)
          .get(`/open/v1/sync/jobs/${jobId}`)
          .set(signRequest({ keyId: key.keyId, secret: key.secret, method: "GET", url: `/open/v1/sync/jobs/${jobId}` }));

      // A body whose signature does not hold starts nothing.
      const forged = await request(srv.app)
        .post("/open/v1/sync/customers/bulk")
        .set({ ...signRequest({ keyId: key.keyId, secret: key.secret, method: "POST", url: "/open/v1/sync/customers/bulk", body: "{}" }), "Content-Type": "application/x-ndjson" })
        .send(body);
      expect(forged.status).toBe(401);
      const first = await post(body);
      expect(first.status).toBe(202);
      const jobId = (first.body as { jobId: string }).jobId;
      // One bulk job per store at a time, whichever key of the store starts it (the unique index is per store, not per key).
      const sibling = await issueApiKey(db.owner, srv.masterKey, { name: "Bulk 2", scopes: ["sync:write"], organizationId: r.b.stores.potsdam, tenantId: f.b.id });
      const second = await post(JSON.stringify({ externalId: "x", version: 1, data: { email: "x@bulk.test" } }), { keyId: sibling.keyId, secret: sibling.secret });
      expect(second.status).toBe(409);
      expect((second.body as { error: { code: string } }).error.code).toBe("conflict");
      expect((await get(jobId)).body).toMatchObject({ id: jobId, state: "queued", received: 2504 });

      await runOnce({ connectionString: db.ownerUrl, taskList: tasks, noHandleSignals: true, logger: new Logger(() => () => undefined) });
      const done = await get(jobId);
      expect(done.status).toBe(200);
      expect(done.body).toMatchObject({ state: "done", received: 2504, applied: 2501, stale: 1, rejected: 2, error: null });
      const hub = await db.owner.query<{ n: number; gone: number }>(
        "select count(*) filter (where deleted_at is null)::int as n, count(*) filter (where external_id = 'b-gone')::int as gone from retail.customers where tenant_id = $1 and store_id = $2",
        [f.b.id, r.b.stores.potsdam],
      );
      expect(hub.rows[0]!.n).toBeGreaterThanOrEqual(2500);
      const status = await db.owner.query(
        "select applied_count::int as applied, rejected_count::int as rejected from retail.sync_statuses where tenant_id = $1 and store_id = $2 and source_kind = 'bulk'",
        [f.b.id, r.b.stores.potsdam],
      );
      expect(status.rows).toEqual([{ applied: 2501, rejected: 2 }]);
      const rejects = await db.owner.query("select count(*)::int as n from retail.sync_rejects where tenant_id = $1 and store_id = $2 and source_kind = 'bulk'", [
        f.b.id,
        r.b.stores.potsdam,
      ]);
      expect(rejects.rows).toEqual([{ n: 2 }]);
      expect((await db.owner.query("select count(*)::int as n from retail_private.sync_bulk_rows")).rows).toEqual([{ n: 0 }]);
      // The store is free for the next load; another tenant's key cannot read this job.
      expect((await post(JSON.stringify({ externalId: "b-next", version: 1, data: { email: "next@bulk.test" } }))).status).toBe(202);
      const other = await issueApiKey(db.owner, srv.masterKey, { name: "Other", scopes: ["sync:write"], organizationId: r.a.stores.potsdam, tenantId: f.a.id });
      const peek = await request(srv.app)
        .get(`/open/v1/sync/jobs/${jobId}`)
        .set(signRequest({ keyId: other.keyId, secret: other.secret, method: "GET", url: `/open/v1/sync/jobs/${jobId}` }));
      expect(peek.status).toBe(404);
      // Nor another key of the same tenant and store: a key reads the jobs it started (the job is there, read by its own key above).
      const siblingPeek = await request(srv.app)
        .get(`/open/v1/sync/jobs/${jobId}`)
        .set(signRequest({ keyId: sibling.keyId, secret: sibling.secret, method: "GET", url: `/open/v1/sync/jobs/${jobId}` }));
      expect(siblingPeek.status).toBe(404);
    } finally {
      await srv.close();
    }
  });

  test("a body over AUTHHUB_SYNC_BULK_MAX_BYTES is refused with 413 and starts nothing", async () => {
    const srv = await startTestServer(db, { AUTHHUB_MASTER_KEY: keyText, AUTHHUB_SYNC_BULK_MAX_BYTES: "2000" });
    try {
      const issued = await issueApiKey(db.owner, srv.masterKey, { name: "Bulk small", scopes: ["sync:write"], organizationId: r.b.stores.tokyo, tenantId: f.b.id });
      const raw = Array.from({ length: 100 }, (_, i) => JSON.stringify({ externalId: `big-${i}`, version: 1, data: { email: `big${i}@bulk.test` } })).join("\n");
      const res = await request(srv.app)
        .post("/open/v1/sync/customers/bulk")
        .set({
          ...signRequest({ keyId: issued.keyId, secret: issued.secret, method: "POST", url: "/open/v1/sync/customers/bulk", body: raw }),
          "Content-Type": "application/x-ndjson",
        })
        .send(raw);
      expect(res.status).toBe(413);
      expect((res.body as { error: { code: string } }).error.code).toBe("payload_too_large");
      const jobs = await db.owner.query("select count(*)::int as n from retail_private.sync_bulk_jobs where tenant_id = $1 and store_id = $2", [f.b.id, r.b.stores.tokyo]);
      expect(jobs.rows).toEqual([{ n: 0 }]);
    } finally {
      await srv.close();
    }
  });

  test("a load refused by the key's rate limit is recorded as used: the same signed request sent again is refused as a replay", async () => {
    const srv = await startTestServer(db, { AUTHHUB_MASTER_KEY: keyText });
    try {
      const issued = await issueApiKey(db.owner, srv.masterKey, {
        name: "Bulk limited",
        scopes: ["sync:write"],
        organizationId: r.b.stores.tokyo,
        tenantId: f.b.id,
        rateLimitPerMinute: 1,
      });
      const signed = (raw: string) => ({
        raw,
        headers: {
          ...signRequest({ keyId: issued.keyId, secret: issued.secret, method: "POST", url: "/open/v1/sync/customers/bulk", body: raw }),
          "Content-Type": "application/x-ndjson",
        },
      });
      const send = (s: { raw: string; headers: Record<string, string> }) => request(srv.app).post("/open/v1/sync/customers/bulk").set(s.headers).send(s.raw);
      expect((await send(signed(JSON.stringify({ externalId: "lim-1", version: 1, data: { email: "lim1@bulk.test" } })))).status).toBe(202);
      const over = signed(JSON.stringify({ externalId: "lim-2", version: 1, data: { email: "lim2@bulk.test" } }));
      const refused = await send(over);
      expect(refused.status).toBe(429);
      expect((refused.body as { error: { code: string } }).error.code).toBe("rate_limited");
      const replayed = await send(over);
      expect(replayed.status).toBe(401);
      expect((replayed.body as { error: { code: string } }).error.code).toBe("unauthenticated");
    } finally {
      await srv.close();
    }
  });
});
