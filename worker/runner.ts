/**
 * The graphile-worker runner, in-process under `npm start` or alone under
 * `npm run worker`. It connects as the owner (graphile-worker manages its own
 * schema and needs LISTEN, so it bypasses PgBouncer); each job switches to
 * authhub_worker before touching AuthHub's tables.
 */
import { EventEmitter } from "node:events";
import { Logger as WorkerLogger, parseCrontab, run, type Runner, type WorkerEvents } from "graphile-worker";
import type pg from "pg";
import type { Logger } from "../server/logger.js";
import type { MasterKey } from "../server/auth/masterKey.js";
import { configureWorker } from "./context.js";
import { OrphanedJobs } from "./orphans.js";
import { crontab, tasks } from "./tasks/index.js";

export interface WorkerHandle {
  /** Waits for running jobs to finish (graceful), then releases the runner. */
  stop(): Promise<void>;
  /** graphile-worker's events (job:success, job:error, job:failed…), for metrics. */
  events: Runner["events"];
}

export async function startWorker(options: {
  ownerPool: pg.Pool;
  logger: Logger;
  masterKey: MasterKey;
  clerkApiUrl: string;
  concurrency?: number;
  production?: boolean;
}): Promise<WorkerHandle> {
  configureWorker({ masterKey: options.masterKey, clerkApiUrl: options.clerkApiUrl, production: options.production ?? false });
  const log = options.logger.child({ component: "worker" });
  const logger = new WorkerLogger((scope) => (level, message, meta) => {
    const fields = { ...scope, ...(meta ?? {}) } as Record<string, unknown>;
    if (level === "error") log.error(message, fields);
    else if (level === "warning") log.warn(message, fields);
    else if (level === "info") log.info(message, fields);
    else log.debug(message, fields);
  });
  // This pool's liveness, and the jobs of pools that died without stopping (worker/orphans.ts).
  const orphans = new OrphanedJobs(options.ownerPool.options, log);
  const events: WorkerEvents = new EventEmitter();
  let pool: string | null = null;
  events.on("pool:create", ({ workerPool }) => {
    pool = workerPool.id;
    orphans.claim(workerPool.id).catch((err: unknown) => log.warn("could not take the worker pool's liveness lock", { err }));
  });
  const runner: Runner = await run({
    pgPool: options.ownerPool,
    taskList: tasks,
    concurrency: options.concurrency ?? 4,
    // Shutdown is ordered by the process (server/main.ts), not by the worker.
    noHandleSignals: true,
    // The schedule is code (worker/tasks/index.ts), not a crontab file.
    parsedCronItems: parseCrontab(crontab),
    pollInterval: 2000,
    logger,
    events,
  });
  orphans.start();
  // The pool id is what graphile-worker's jobs name as locked_by.
  log.info("worker started", { tasks: Object.keys(tasks), pool });
  return {
    events: runner.events,
    async stop() {
      await runner.stop();
      await orphans.stop();
    },
  };
}
