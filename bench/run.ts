/**
 * `npm run bench`: every ratio is measured side by side in one run, on one
 * database (a throwaway embedded cluster, or BENCH_DATABASE_URL as superuser).
 * Each row is the median of at least three interleaved rounds, with the
 * spread of the per-round figures, so one noisy round cannot decide a row
 * (bench/stats.ts). Results are printed as a table and saved under
 * bench/results/; bench/README.md says what each row measures and keeps the
 * latest table.
 *
 * Modules, in the order they run (each takes the BenchContext of
 * bench/context.ts and returns its rows):
 *  - bench/rls.ts: what policy costs, database only (issues 2, 3, 14);
 *  - bench/breakdown.ts: where a request's time goes under RLS (issue 14);
 *  - bench/http.ts: GraphQL overhead, the decision API, audited mutations;
 *  - bench/webhooks.ts: identity sync against raw graphile-worker (issue 7);
 *  - bench/auth.ts: token exchange and refresh (issue 5);
 *  - bench/openapi.ts: signed partner requests (issue 6);
 *  - bench/audit.ts: audited inserts and the audit log's growth (issue 4);
 *  - bench/pooler.ts: GraphQL direct and through PgBouncer (issue 15), its
 *    rows single figures until it measures in rounds with bench/stats.ts.
 * A new module: one import and one `rows.push(...(await measureX(ctx)))` at
 * the end of main.
 */
import "../server/env.js";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { measureAuditInserts, measureAuditQuery, prepareAuditTables } from "./audit.js";
import { measureAuthApi } from "./auth.js";
import { measureConnector, type ConnectorResult } from "./connector.js";
import { measureEvents, type EventsBenchResult } from "./events.js";
import { measureBreakdown, printBreakdown, type Breakdown } from "./breakdown.js";
import { setUp, type BenchContext } from "./context.js";
import { measureHttp, startServer } from "./http.js";
import { measureOpenApi } from "./openapi.js";
import { measurePooler } from "./pooler.js";
import { measureRetail } from "./retail.js";
import { measureRls, prepareRls } from "./rls.js";
import { printRows, type Row } from "./stats.js";
import { measureWebhooks } from "./webhooks.js";

/** Prints the table and the breakdown, and saves them with the machine's state under bench/results/. */
async function report(ctx: BenchContext, rows: Row[], extra: { breakdown: Breakdown; generatedSql: string; started: number; loadBefore: number[] }) {
  console.log("\nAuthHub benchmarks\n");
  printRows(rows);
  printBreakdown(extra.breakdown);
  const seconds = (performance.now() - extra.started) / 1000;
  const load = { before: extra.loadBefore, after: os.loadavg() };
  console.log(
    `\n${rows.filter((r) => !r.pass).length} of ${rows.length} rows miss their target; ${seconds.toFixed(0)} s; load average (1, 5, 15 min) before ${fmtLoad(load.before)}, after ${fmtLoad(load.after)}`,
  );
  const resultsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), "results");
  mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `bench-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  const postgres = (await ctx.owner.query<{ server_version: string }>("show server_version")).rows[0]!.server_version;
  writeFileSync(
    file,
    JSON.stringify(
      {
        when: new Date().toISOString(),
        machine: { cpus: os.cpus().length, node: process.version, postgres, loadAverage: load },
        seconds,
        durations,
        settings: ctx.sizes,
        results: rows,
        breakdown: extra.breakdown,
        generatedSql: extra.generatedSql,
      },
      null,
      2,
    ),
  );
  console.log(`saved ${path.relative(process.cwd(), file)}`);
}

const fmtLoad = (l: number[]) => l.map((x) => x.toFixed(2)).join(", ");

/**
 * A row from a module not (yet) on bench/stats.ts: one figure, shown as one
 * round, its own fields (figures…) kept in the results file.
 */
function singleFigure<R extends { benchmark: string; ratio: number; target: string; pass: boolean; detail: string }>(r: R): Row {
  return { ...r, ...figure(r.benchmark, r.ratio, "ratio", r.target, r.pass, r.detail) };
}

/** A figure measured once (or as a median inside its module), as a row. */
function figure(benchmark: string, value: number, unit: string, target: string, pass: boolean, detail: string): Row {
  return { benchmark, value, unit, spread: [value, value], perRound: [value], target, pass, detail };
}

/** The pull connector module's figures as rows. */
function connectorRows(r: ConnectorResult): Row[] {
  return [
    figure(
      "pull connector: rows applied/s ÷ raw COPY read of the same rows",
      r.ratio,
      "ratio",
      "≥ 0.4",
      r.ratio >= 0.4,
      `${r.appliedRowsPerSecond.toFixed(0)} vs ${r.copyRowsPerSecond.toFixed(0)} rows/s (median of ${r.rounds}); the write path alone ${r.writePathRowsPerSecond.toFixed(0)} rows/s (connector ÷ write path ${r.overWritePath.toFixed(2)})`,
    ),
    figure(
      `pull connector: lag p95 at ${r.lag.perSecond} changes/s, poll ${r.lag.pollIntervalMs} ms`,
      r.lag.p95Ms,
      "ms",
      `≤ ${r.lag.targetMs} ms`,
      r.lag.p95Ms <= r.lag.targetMs,
      `p50 ${r.lag.p50Ms.toFixed(0)} ms, max ${r.lag.maxMs.toFixed(0)} ms over ${r.lag.count} changes`,
    ),
  ];
}

/** The outbound events module's figures (one steady phase and its bursts) as rows. */
function eventRows(r: EventsBenchResult): Row[] {
  return [
    figure(
      `events: change committed → first delivery attempt p99 at ${r.perSecond}/s`,
      r.firstAttemptP99,
      "ms",
      "≤ 1000 ms",
      r.firstAttemptP99 <= 1000,
      `p50 ${r.firstAttemptP50.toFixed(1)} ms; raw add_job → no-op start p99 ${r.rawP99.toFixed(1)} ms`,
    ),
    figure(
      "events: delivered ÷ raw add_job + no-op (throughput)",
      r.throughputRatio,
      "ratio",
      "report",
      true,
      `${r.eventsPerSecond.toFixed(0)}/s vs ${r.rawPerSecond.toFixed(0)}/s`,
    ),
  ];
}

/** Seconds each module took, for the time budget (bench/README.md). */
const durations: Record<string, number> = {};
async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const t = performance.now();
  try {
    return await fn();
  } finally {
    durations[name] = Math.round((performance.now() - t) / 100) / 10;
    process.stderr.write(`  ${name}: ${durations[name]} s\n`);
  }
}

async function main() {
  const started = performance.now();
  const loadBefore = os.loadavg();
  const ctx = await step("set-up", setUp);
  try {
    const subtree = await step("prepare", async () => {
      await prepareAuditTables(ctx.owner);
      return prepareRls(ctx);
    });
    const rows: Row[] = [];
    rows.push(...(await step("rls", () => measureRls(ctx, subtree))));
    const breakdown = await step("breakdown", () => measureBreakdown(ctx, subtree));
    const server = await step("server", () => startServer(ctx));
    try {
      rows.push(...(await step("http", () => measureHttp(ctx, server))));
      rows.push(...(await step("webhooks", () => measureWebhooks(ctx, server))));
      rows.push(...(await step("auth", () => measureAuthApi(ctx, server, { tenant: "small", externalId: "bench|admin" }))));
    } finally {
      await server.close();
    }
    rows.push(...(await step("openapi", () => measureOpenApi(ctx, server.masterKey))));
    rows.push(...(await step("audit inserts", () => measureAuditInserts(ctx))));
    rows.push(...(await step("audit log", () => measureAuditQuery(ctx))));
    rows.push(
      ...(
        await step("pooler", () =>
          measurePooler({
            ownerUrl: ctx.ownerUrl,
            authUrl: ctx.authUrl,
            authPassword: ctx.authPassword,
            masterKey: server.masterKey,
            token: server.token,
            owner: ctx.owner,
            tenantId: ctx.small.tenantId,
          }),
        )
      ).map(singleFigure),
    );
    rows.push(
      ...eventRows(
        await step("events", () =>
          measureEvents({
            owner: ctx.owner,
            ownerUrl: ctx.ownerUrl,
            masterKey: server.masterKey,
            tenantId: ctx.small.tenantId,
            count: 1000,
            rounds: 3,
            concurrency: 4,
            paced: { count: 1000, perSecond: 100 },
          }),
        ),
      ),
    );
    rows.push(
      ...connectorRows(
        await step("connector", () =>
          measureConnector({
            rootUrl: ctx.rootUrl,
            ownerUrl: ctx.ownerUrl,
            authUrl: ctx.authUrl,
            masterKey: server.masterKey,
            tenantId: ctx.small.tenantId,
            rows: 3000,
            rounds: 3,
            steady: { perSecond: 100, seconds: 10 },
            pollIntervalMs: 1000,
          }),
        ),
      ),
    );
    // Retail data hub (issue 16): bench/retail.ts, its data sized by --retail-orders N (bench/README.md).
    rows.push(...(await step("retail", () => measureRetail({ ownerUrl: ctx.ownerUrl, authUrl: ctx.authUrl, masterKey: server.masterKey }))));
    // Further modules: one import above and one rows.push(...(await step("name", () => measureX(ctx)))) here.
    await report(ctx, rows, { breakdown, generatedSql: server.generatedSql, started, loadBefore });
  } finally {
    await ctx.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
