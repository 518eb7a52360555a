/**
 * Graceful shutdown: on the first SIGTERM/SIGINT run the steps in order, then
 * exit. Each step has a deadline: one that fails or outlives it is logged and
 * the next one runs, so the last step (stopping the embedded PostgreSQL) always
 * runs, and the process exits within the sum of the deadlines whatever hangs.
 * A second signal exits at once.
 */
import type { Logger } from "./logger.js";

/** A step: its name, what it does, and how long it may take (ms; default 10 s). */
export type ShutdownStep = readonly [name: string, run: () => Promise<unknown>, deadlineMs?: number];

const DEFAULT_DEADLINE_MS = 10_000;

export async function runShutdown(logger: Logger, steps: readonly ShutdownStep[]): Promise<boolean> {
  let clean = true;
  for (const [name, run, deadlineMs = DEFAULT_DEADLINE_MS] of steps) {
    let timer: NodeJS.Timeout | undefined;
    try {
      const late = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), deadlineMs);
      });
      if ((await Promise.race([run(), late])) === "late") {
        clean = false;
        logger.error(`shutdown: ${name} did not stop within ${deadlineMs} ms; going on`);
      } else {
        logger.info(`shutdown: ${name} stopped`);
      }
    } catch (err) {
      clean = false;
      logger.error(`shutdown: ${name} failed to stop`, { err });
    } finally {
      clearTimeout(timer);
    }
  }
  return clean;
}

export function onShutdownSignal(logger: Logger, steps: readonly ShutdownStep[]): void {
  let shuttingDown = false;
  const handler = (signal: NodeJS.Signals) => {
    if (shuttingDown) {
      logger.warn(`received ${signal} again; exiting now`);
      process.exit(1);
    }
    shuttingDown = true;
    logger.info(`received ${signal}; shutting down`);
    void runShutdown(logger, steps).then((clean) => process.exit(clean ? 0 : 1));
  };
  process.on("SIGTERM", handler);
  process.on("SIGINT", handler);
}

/**
 * graphile-worker 0.18 does not await the statement that marks a finished job
 * complete or failed: when the database is unreachable at that moment (a
 * restart, a terminated connection) the rejection is unhandled, and Node would
 * end the process. Such rejections are logged; the job stays locked and runs
 * again later (tasks are idempotent). Any other unhandled rejection is a bug:
 * logged, and the process exits as Node would have.
 */
export function survivePassingDatabaseErrors(logger: Logger, isPassing: (reason: unknown) => boolean): void {
  process.on("unhandledRejection", (reason) => {
    if (isPassing(reason)) {
      logger.warn("a database call failed while the database was unreachable; it will be retried", { err: reason });
      return;
    }
    logger.error("unhandled promise rejection", { err: reason });
    process.exit(1);
  });
}
