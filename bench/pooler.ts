/**
 * Behind a connection pooler (issue 15), run by bench/run.ts; local only, and
 * bounded: at most ~60 s of measuring whatever the machine.
 *
 * Three servers on one database, each with its own authenticator pool of 20
 * (the server's default): `direct` (prepared statements, as without a pooler),
 * `unnamed` (AUTHHUB_DB_POOLER=transaction on a direct connection: the cost of
 * going without prepared statements alone) and `pooled` (the same setting,
 * through Debian's PgBouncer in transaction mode with 20 server connections).
 *
 * 1. The non-prepared cost: a tenant admin's page of 20 users through /graphql,
 *    rounds alternating between the servers at a small concurrency; pooled ÷
 *    direct and unnamed ÷ direct throughput.
 * 2. The load figure: sustained GraphQL reads/s and writes/s (an updateUser on a
 *    row of the caller's own, so writers do not queue on one row lock) with
 *    p50/p99 at a fixed concurrency, direct and pooled, each side's time split
 *    in two halves ordered A B B A.
 *
 * Without a pgbouncer binary it answers no rows and says why on stderr.
 */
import { randomBytes } from "node:crypto";
import type http from "node:http";
import type { AddressInfo } from "node:net";
import type pg from "pg";
import { makePool } from "../db/pools.js";
import { AUTHENTICATOR_ROLE } from "../db/setup.js";
import { makeApp } from "../server/app.js";
import type { MasterKey } from "../server/auth/masterKey.js";
import { readConfig } from "../server/config.js";
import { makeLogger } from "../server/logger.js";
import { PGBOUNCER_MISSING, pgbouncerBinary, startPgBouncer } from "../test/helpers/pgbouncer.js";
import { emptySample, percentile, throughput, type Sample } from "./stats.js";

const RATIO_ROUNDS = 3;
const RATIO_ROUND_MS = 1_500;
const RATIO_CONCURRENCY = 4;
const LOAD_MS = 5_000;
const LOAD_CONCURRENCY = 16;
const POOL_SIZE = 20;

export interface PoolerRow {
  benchmark: string;
  ratio: number;
  target: string;
  pass: boolean;
  detail: string;
  figures: Record<string, unknown>;
}

/** A side's calls (bench/stats.ts's Sample) and the ones that failed. */
interface Run extends Sample {
  errors: number;
  firstError: string | null;
}

const emptyRun = (): Run => ({ ...emptySample(), errors: 0, firstError: null });
const describe = (r: Run) =>
  `${throughput(r).toFixed(0)}/s p50 ${percentile(r.ms, 50).toFixed(2)} ms p99 ${percentile(r.ms, 99).toFixed(2)} ms` + (r.errors ? ` (${r.errors} errors: ${r.firstError})` : "");
const figures = (r: Run) => ({ perSecond: throughput(r), p50: percentile(r.ms, 50), p99: percentile(r.ms, 99), requests: r.count, errors: r.errors });

/** `concurrency` callers send `call(worker)` back to back for `ms` milliseconds. */
async function runFor(ms: number, concurrency: number, call: (worker: number) => Promise<void>, into: Run): Promise<void> {
  const started = performance.now();
  const deadline = started + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      while (performance.now() < deadline) {
        const t = performance.now();
        try {
          await call(worker);
          into.ms.push(performance.now() - t);
          into.count++;
        } catch (err) {
          into.errors++;
          into.firstError ??= (err as Error).message.slice(0, 200);
        }
      }
    }),
  );
  into.totalMs += performance.now() - started;
}

export async function measurePooler(options: {
  ownerUrl: string;
  authUrl: string;
  /** The authenticator's password (null: the server trusts local connections). */
  authPassword: string | null;
  masterKey: MasterKey;
  /** A tenant admin's access token (issuer http://bench.authhub). */
  token: string;
  owner: pg.Pool;
  tenantId: string;
}): Promise<PoolerRow[]> {
  if (!pgbouncerBinary()) {
    process.stderr.write(`pooler: skipped, ${PGBOUNCER_MISSING.replace(": the pooled tests are skipped", "")}\n`);
    return [];
  }
  process.stderr.write("pooler: GraphQL direct, without prepared statements, and through PgBouncer (≤ 60 s)…\n");
  const { ownerUrl, authUrl, authPassword, masterKey, token, owner, tenantId } = options;
  const began = performance.now();
  const pooler = await startPgBouncer({ serverUrl: authUrl, users: [{ name: AUTHENTICATOR_ROLE, password: authPassword }], poolSize: POOL_SIZE });
  const opened: { pool: pg.Pool; server: http.Server; release: () => Promise<void> }[] = [];
  try {
    const start = async (name: string, url: string, setting: "none" | "transaction") => {
      const pool = makePool(url, { name, max: POOL_SIZE, acquireTimeoutMs: 30_000 });
      const config = readConfig({
        NODE_ENV: "production",
        DATABASE_URL: ownerUrl,
        AUTH_DATABASE_URL: url,
        AUTHHUB_MASTER_KEY: randomBytes(32).toString("base64"),
        AUTHHUB_ISSUER: "http://bench.authhub",
        LOG_LEVEL: "silent",
        AUTHHUB_DB_POOLER: setting,
        // Throughput is measured here, not the abuse limits.
        AUTHHUB_GRAPHQL_RATE_LIMIT_USER: "10000000",
        AUTHHUB_GRAPHQL_RATE_LIMIT_TENANT: "100000000",
      });
      const app = await makeApp({ config, authPool: pool, logger: makeLogger("silent"), masterKey });
      await new Promise<void>((r) => app.server.listen(0, "127.0.0.1", r));
      opened.push({ pool, server: app.server, release: app.release });
      return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/graphql`;
    };
    const urls = {
      direct: await start("bench direct", authUrl, "none"),
      unnamed: await start("bench unnamed", authUrl, "transaction"),
      pooled: await start("bench pooled", pooler.through(authUrl), "transaction"),
    };

    const graphql = async (url: string, query: string, check: (data: Record<string, unknown>) => boolean) => {
      const res = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` }, body: JSON.stringify({ query }) });
      const body = (await res.json()) as { data?: Record<string, unknown>; errors?: unknown };
      if (res.status !== 200 || body.errors || !body.data || !check(body.data)) throw new Error(`${res.status} ${JSON.stringify(body).slice(0, 200)}`);
    };
    const read = (url: string) => () =>
      graphql(url, "{ users(first: 20) { nodes { rowId email displayName level } } }", (d) => (d.users as { nodes: unknown[] }).nodes.length === 20);
    // One user per writer, so concurrent writes do not wait on each other's row lock.
    const writers = (
      await owner.query<{ id: string }>("select id from authhub.users where tenant_id = $1 and level = 'USER' order by id limit $2", [tenantId, LOAD_CONCURRENCY])
    ).rows.map((r) => r.id);
    let n = 0;
    const write = (url: string) => (worker: number) =>
      graphql(
        url,
        `mutation { updateUser(input: { tenantId: "${tenantId}", rowId: "${writers[worker]}", patch: { displayName: "Bench ${n++}" } }) { user { rowId } } }`,
        (d) => !!(d.updateUser as { user?: unknown } | null)?.user,
      );

    // Warm-up: plans cached, pools and PgBouncer's server connections opened.
    for (const url of Object.values(urls)) await runFor(700, RATIO_CONCURRENCY, read(url), emptyRun());

    const ratio = { direct: emptyRun(), unnamed: emptyRun(), pooled: emptyRun() };
    // Each round reverses the last one's order, so a drift in the machine's load lands on every side alike.
    const sides = ["direct", "unnamed", "pooled"] as const;
    for (let round = 0; round < RATIO_ROUNDS; round++) {
      for (const side of round % 2 ? [...sides].reverse() : sides) await runFor(RATIO_ROUND_MS, RATIO_CONCURRENCY, read(urls[side]), ratio[side]);
    }
    const load = { direct: { reads: emptyRun(), writes: emptyRun() }, pooled: { reads: emptyRun(), writes: emptyRun() } };
    for (const side of ["direct", "pooled", "pooled", "direct"] as const) await runFor(LOAD_MS / 2, LOAD_CONCURRENCY, read(urls[side]), load[side].reads);
    for (const side of ["pooled", "direct", "direct", "pooled"] as const) await runFor(LOAD_MS / 2, LOAD_CONCURRENCY, write(urls[side]), load[side].writes);

    const clean = (...runs: Run[]) => runs.every((r) => r.errors === 0 && r.count > 0);
    const took = `${((performance.now() - began) / 1000).toFixed(0)} s in all, servers' start included`;
    return [
      {
        benchmark: "Pooler: GraphQL page of 20 users, through PgBouncer (transaction mode, unnamed statements) ÷ direct (prepared), throughput",
        ratio: throughput(ratio.pooled) / throughput(ratio.direct),
        target: "report",
        pass: clean(ratio.pooled, ratio.direct),
        detail: `concurrency ${RATIO_CONCURRENCY}, ${RATIO_ROUNDS} alternating rounds of ${RATIO_ROUND_MS / 1000} s: pooled ${describe(ratio.pooled)}; direct ${describe(ratio.direct)}`,
        figures: { pooled: figures(ratio.pooled), direct: figures(ratio.direct) },
      },
      {
        benchmark: "Pooler: the same page without prepared statements ÷ with them, both direct (throughput)",
        ratio: throughput(ratio.unnamed) / throughput(ratio.direct),
        target: "report",
        pass: clean(ratio.unnamed, ratio.direct),
        detail: `unnamed ${describe(ratio.unnamed)}; prepared ${describe(ratio.direct)}`,
        figures: { unnamed: figures(ratio.unnamed), direct: figures(ratio.direct) },
      },
      {
        benchmark: `Load: GraphQL reads (20 users) at concurrency ${LOAD_CONCURRENCY} for ${LOAD_MS / 1000} s, pooled ÷ direct (throughput)`,
        ratio: throughput(load.pooled.reads) / throughput(load.direct.reads),
        target: "report",
        pass: clean(load.pooled.reads, load.direct.reads),
        detail: `direct ${describe(load.direct.reads)}; pooled ${describe(load.pooled.reads)}`,
        figures: { concurrency: LOAD_CONCURRENCY, seconds: LOAD_MS / 1000, direct: figures(load.direct.reads), pooled: figures(load.pooled.reads) },
      },
      {
        benchmark: `Load: GraphQL writes (updateUser) at concurrency ${LOAD_CONCURRENCY} for ${LOAD_MS / 1000} s, pooled ÷ direct (throughput)`,
        ratio: throughput(load.pooled.writes) / throughput(load.direct.writes),
        target: "report",
        pass: clean(load.pooled.writes, load.direct.writes),
        detail: `direct ${describe(load.direct.writes)}; pooled ${describe(load.pooled.writes)} (${took})`,
        figures: { concurrency: LOAD_CONCURRENCY, seconds: LOAD_MS / 1000, direct: figures(load.direct.writes), pooled: figures(load.pooled.writes) },
      },
    ];
  } finally {
    for (const { pool, server, release } of opened) {
      await new Promise((r) => server.close(r));
      await release();
      await pool.end();
    }
    await pooler.stop();
  }
}
