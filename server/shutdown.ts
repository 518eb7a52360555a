/**
 * Graceful shutdown: on the first SIGTERM/SIGINT run the steps in order (each
 * awaited, failures logged, the rest still run), then exit. A second signal
 * exits at once.
 */
import type { Logger } from "./logger.js";

export type ShutdownStep = readonly [name: string, run: () => Promise<unknown>];

export async function runShutdown(logger: Logger, steps: readonly ShutdownStep[]): Promise<boolean> {
  let clean = true;
  for (const [name, run] of steps) {
    try {
      await run();
      logger.info(`shutdown: ${name} stopped`);
    } catch (err) {
      clean = false;
      logger.error(`shutdown: ${name} failed to stop`, { err });
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
