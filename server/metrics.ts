/**
 * GET /metrics in Prometheus' text format (prom-client), for operators
 * (issue 15): HTTP requests by route, method and status with their durations;
 * GraphQL operations by type and outcome; authentications by method and
 * outcome; rate-limit refusals; database pools in use and waiting; and, read
 * from SQL at each scrape (authhub_private.operational_metrics), the webhook
 * inbox's depth, age and drain lag, audit sealing's lag, the job queue; jobs
 * run by this process's worker by task and outcome.
 *
 * One registry per process: the counters are module-level, incremented where
 * things happen (server/auth, server/openapi, server/rateLimit, the GraphQL
 * plugins, the worker's events); gauges read the pools and the database when
 * scraped. The endpoint is never public: it needs AUTHHUB_METRICS_TOKEN as a
 * bearer token, or is served on AUTHHUB_METRICS_PORT on loopback only.
 */
import type { NextFunction, Request, Response } from "express";
import http from "node:http";
import type pg from "pg";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export const registry = new Registry();

let collectingProcessMetrics = false;
/** The process's own figures (CPU, memory, event loop): started by the entry points, not on import (tests import this module). */
export function collectProcessMetrics(): void {
  if (collectingProcessMetrics) return;
  collectingProcessMetrics = true;
  collectDefaultMetrics({ register: registry, prefix: "authhub_process_" });
}

export const httpRequests = new Histogram({
  name: "authhub_http_request_duration_seconds",
  help: "HTTP requests by route, method and status, and how long they took.",
  labelNames: ["route", "method", "status"] as const,
  buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

export const graphqlOperations = new Counter({
  name: "authhub_graphql_operations_total",
  help: "GraphQL operations by type (query, mutation) and outcome (ok, errors, refused).",
  labelNames: ["type", "outcome"] as const,
  registers: [registry],
});

export const authentications = new Counter({
  name: "authhub_authentications_total",
  help: "Callers authenticated, by method (bearer, gateway, api_key, token_exchange, refresh, client_credentials) and outcome (ok, refused).",
  labelNames: ["method", "outcome"] as const,
  registers: [registry],
});

export const rateLimited = new Counter({
  name: "authhub_rate_limited_total",
  help: "Requests refused by a rate limit, by limit.",
  labelNames: ["limit"] as const,
  registers: [registry],
});

export const workerJobs = new Counter({
  name: "authhub_worker_jobs_total",
  help: "Jobs this process's worker ran, by task and outcome (success, error: will retry, failed: no attempts left).",
  labelNames: ["task", "outcome"] as const,
  registers: [registry],
});

const pools = new Map<string, pg.Pool>();
/** Reports a pool's connections (total, idle, waiting clients) at each scrape. */
export function watchPool(name: string, pool: pg.Pool): void {
  pools.set(name, pool);
}
const poolGauge = (name: string, help: string, read: (p: pg.Pool) => number) =>
  new Gauge({
    name,
    help,
    labelNames: ["pool"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [pool, p] of pools) this.set({ pool }, read(p));
    },
  });
poolGauge("authhub_db_pool_connections", "Connections a pool holds.", (p) => p.totalCount);
poolGauge("authhub_db_pool_in_use", "Connections a pool has handed out.", (p) => p.totalCount - p.idleCount);
poolGauge("authhub_db_pool_waiting", "Callers waiting for a pool's connection.", (p) => p.waitingCount);

interface Operational {
  inbox_pending: string;
  inbox_oldest_pending_seconds: number;
  inbox_drain_lag_seconds: number;
  inbox_failed: string;
  audit_unsealed_events: string;
  audit_seal_lag_seconds: number;
  jobs_queued: string;
  jobs_due: string;
  jobs_locked: string;
  jobs_failed_permanently: string;
}

/** The database's figures, read once per scrape by the first gauge collected (and shared by the rest). */
let scrape: { at: number; figures: Promise<Operational | null> } | null = null;
let figuresPool: pg.Pool | null = null;
function figures(): Promise<Operational | null> {
  if (!figuresPool) return Promise.resolve(null);
  if (!scrape || Date.now() - scrape.at > 500) {
    const pool = figuresPool;
    scrape = {
      at: Date.now(),
      figures: pool
        .query<Operational>("select * from authhub_private.operational_metrics()")
        .then((r) => r.rows[0] ?? null)
        .catch(() => null),
    };
  }
  return scrape.figures;
}
const sqlGauge = (name: string, help: string, column: keyof Operational) =>
  new Gauge({
    name,
    help,
    registers: [registry],
    async collect() {
      const f = await figures();
      if (f) this.set(Number(f[column]));
    },
  });
sqlGauge("authhub_webhook_inbox_pending", "Webhook deliveries waiting to be applied.", "inbox_pending");
sqlGauge("authhub_webhook_inbox_oldest_pending_seconds", "Age of the oldest delivery waiting to be applied.", "inbox_oldest_pending_seconds");
sqlGauge("authhub_webhook_drain_lag_seconds", "How long the most overdue delivery has been due.", "inbox_drain_lag_seconds");
sqlGauge("authhub_webhook_inbox_failed", "Deliveries recorded as failed.", "inbox_failed");
sqlGauge("authhub_audit_unsealed_events", "Audit events not yet sealed into their tenant's hash chain.", "audit_unsealed_events");
sqlGauge("authhub_audit_seal_lag_seconds", "Age of the oldest audit event not yet sealed.", "audit_seal_lag_seconds");
sqlGauge("authhub_jobs_queued", "Jobs in graphile-worker's queue.", "jobs_queued");
sqlGauge("authhub_jobs_due", "Jobs due and not taken.", "jobs_due");
sqlGauge("authhub_jobs_locked", "Jobs taken by a worker.", "jobs_locked");
sqlGauge("authhub_jobs_failed_permanently", "Jobs that used every attempt.", "jobs_failed_permanently");

/** Where the database figures are read (the server's authenticator pool, which may execute operational_metrics). */
export function readFiguresFrom(pool: pg.Pool): void {
  figuresPool = pool;
}

/** Counts every request when it finishes, by the route that matched (not the raw path: ids would explode the labels). */
export function countRequests(req: Request, res: Response, next: NextFunction): void {
  const end = httpRequests.startTimer();
  res.on("finish", () => {
    const route = (req.route as { path?: string } | undefined)?.path;
    const label = route ? `${req.baseUrl}${route}` : req.originalUrl.startsWith("/graphql") ? "/graphql" : "unmatched";
    end({ route: label, method: req.method, status: String(res.statusCode) });
  });
  next();
}

export async function metricsText(): Promise<{ contentType: string; body: string }> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}

/** Counts the jobs a worker runs from its events. */
export function countJobs(events: { on(event: "job:success" | "job:error" | "job:failed", listener: (e: { job: { task_identifier: string } }) => void): unknown }): void {
  events.on("job:success", ({ job }) => workerJobs.inc({ task: job.task_identifier, outcome: "success" }));
  events.on("job:error", ({ job }) => workerJobs.inc({ task: job.task_identifier, outcome: "error" }));
  events.on("job:failed", ({ job }) => workerJobs.inc({ task: job.task_identifier, outcome: "failed" }));
}

/** AUTHHUB_METRICS_PORT: /metrics alone, on loopback (never another interface), unauthenticated. */
export async function serveMetrics(port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method !== "GET" || req.url?.split("?")[0] !== "/metrics") {
      res.writeHead(404).end();
      return;
    }
    metricsText().then(
      ({ contentType, body }) => res.writeHead(200, { "Content-Type": contentType }).end(body),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  return server;
}
