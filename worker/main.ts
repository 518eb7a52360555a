/**
 * `npm run worker`: the worker alone, for scaling jobs out separately from the
 * HTTP servers. Same configuration and database as `npm start`.
 */
import "../server/env.js";
import { prepareDatabase } from "../db/database.js";
import { closePool, isConnectionError, makePool } from "../db/pools.js";
import { loadMasterKey } from "../server/auth/masterKey.js";
import { readConfig } from "../server/config.js";
import { makeLogger } from "../server/logger.js";
import { collectProcessMetrics, countJobs, serveMetrics, watchPool } from "../server/metrics.js";
import { onShutdownSignal, survivePassingDatabaseErrors, type ShutdownStep } from "../server/shutdown.js";
import { startWorker } from "./runner.js";

const config = readConfig();
const logger = makeLogger(config.logLevel, { service: "authhub-worker" });
survivePassingDatabaseErrors(logger, isConnectionError);
const db = await prepareDatabase(config, { whenRunning: "share", migrate: true, log: (level, msg) => logger.info(msg, { level }) });
const ownerPool = makePool(db.ownerUrl, {
  name: "owner pool",
  max: 5,
  acquireTimeoutMs: config.database.acquireTimeoutMs,
  onError: (message, err) => logger.warn(message, { err }),
});
// The same master key as the servers (it opens the Clerk keys reconciliation uses).
const masterKey = loadMasterKey(config.masterKey, config.dataDir, config.env, (msg) => logger.warn(msg), config.masterKeyPrevious);
const worker = await startWorker({ ownerPool, logger, masterKey, clerkApiUrl: config.clerkApiUrl, production: config.env === "production" });
// A worker on its own exposes its jobs' counts and its pool on AUTHHUB_METRICS_PORT (loopback), if set.
watchPool("owner", ownerPool);
collectProcessMetrics();
countJobs(worker.events);
const metricsServer = config.metrics.port !== null ? await serveMetrics(config.metrics.port) : null;
onShutdownSignal(logger, [
  ...(metricsServer ? ([["metrics", () => new Promise((resolve) => metricsServer.close(resolve)), 2_000]] as ShutdownStep[]) : []),
  ["worker", () => worker.stop(), Math.max(config.shutdownGraceMs, 1_000)],
  ["owner pool", () => closePool(ownerPool, 1_000), 5_000],
  ["database", () => db.stop(), 60_000],
]);
