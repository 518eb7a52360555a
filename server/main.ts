/**
 * `npm start`: database (embedded unless DATABASE_URL), migrations, signing key,
 * HTTP server and worker in one process, then an ordered shutdown on
 * SIGTERM/SIGINT: stop accepting, finish in-flight requests, stop the worker,
 * close the pools, stop the embedded Postgres last.
 *
 * In containers and under process managers run this file directly
 * (`node --import tsx server/main.ts`): `npm` does not forward every signal.
 */
import "./env.js";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type http from "node:http";
import path from "node:path";
import { ConfigError } from "../db/configError.js";
import { prepareDatabase } from "../db/database.js";
import { freePort } from "../db/embedded.js";
import { closePool, isConnectionError, makePool } from "../db/pools.js";
import { startWorker } from "../worker/runner.js";
import { makeApp } from "./app.js";
import { issuerForServer, type ServerIssuer } from "./auth/issuer.js";
import { loadMasterKey } from "./auth/masterKey.js";
import { ensureActiveSigningKey } from "./auth/signingKeys.js";
import { readConfig } from "./config.js";
import { makeLogger } from "./logger.js";
import { collectProcessMetrics, countJobs, serveMetrics, watchPool } from "./metrics.js";
import { onShutdownSignal, survivePassingDatabaseErrors, type ShutdownStep } from "./shutdown.js";

/** One server per embedded data directory: a second would fight over the cluster. */
function acquireServerLock(dataDir: string): () => void {
  const file = path.join(dataDir, "server.pid");
  if (existsSync(file)) {
    const pid = Number(readFileSync(file, "utf8").trim());
    let alive = false;
    try {
      if (pid > 0 && pid !== process.pid) {
        process.kill(pid, 0);
        alive = true;
      }
    } catch {
      alive = false;
    }
    if (alive) {
      throw new Error(`AuthHub is already running on ${dataDir} (pid ${pid}). Stop it first, or delete ${file} if that process is not AuthHub.`);
    }
  }
  writeFileSync(file, String(process.pid));
  return () => rmSync(file, { force: true });
}

function closeHttpServer(server: http.Server, graceMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    // Stop accepting; idle keep-alive sockets close now, busy ones when their response ends.
    server.close((err) => (err ? reject(err) : resolve()));
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), graceMs).unref();
  });
}

/** The banner's line about the issuer: which one, and where it came from. */
function issuerLine(i: ServerIssuer): string {
  const how =
    i.source === "environment"
      ? "AUTHHUB_ISSUER"
      : !i.remembered
        ? `not remembered: ${i.problem ?? "unknown reason"}`
        : `${i.chosen ? "chosen now and remembered" : "remembered"}; change it with npx authhub issuer set <url>`;
  return `  Issuer:    ${i.issuer}   (${how})`;
}

async function main() {
  const config = readConfig();
  const logger = makeLogger(config.logLevel, { service: "authhub" });
  const steps: ShutdownStep[] = [];
  survivePassingDatabaseErrors(logger, isConnectionError);
  if (config.databaseUrl === null) mkdirSync(config.dataDir, { recursive: true, mode: 0o711 });
  const unlock = config.databaseUrl === null ? acquireServerLock(config.dataDir) : () => undefined;

  const db = await prepareDatabase(config, {
    whenRunning: "own",
    migrate: true,
    log: (level, msg) => (level === "error" ? logger.error(msg) : logger.info(msg)),
  });
  const masterKey = loadMasterKey(config.masterKey, config.dataDir, config.env, (msg) => logger.warn(msg), config.masterKeyPrevious);
  const onError = (message: string, err: Error) => logger.warn(message, { err });
  const ownerPool = makePool(db.ownerUrl, { name: "owner pool", max: 5, acquireTimeoutMs: config.database.acquireTimeoutMs, onError });
  const authPool = makePool(db.authUrl, { name: "authenticator pool", max: config.database.poolSize, acquireTimeoutMs: config.database.acquireTimeoutMs, onError });
  await ensureActiveSigningKey(ownerPool, masterKey);
  // The issuer the CLI will mint for too (server/auth/issuer.ts): decided before the app is made, so with PORT=0
  // the port is chosen before listening, for the issuer to name it.
  const listenPort = config.port === 0 ? await freePort(config.host) : config.port;
  const issuer = await issuerForServer(ownerPool, config, `http://${config.host}:${listenPort}`);
  if (!issuer.remembered) logger.warn(`The issuer ${issuer.issuer} is not remembered: ${issuer.problem}`);

  if (config.trustedIssuers.length > 1) {
    logger.warn("Several trusted issuers are configured: a user's external_id is matched whichever of them signed, so their subject ids must not collide.");
  }
  const { server, release } = await makeApp({ config: { ...config, issuer: issuer.issuer }, authPool, logger, masterKey });
  const worker = config.runWorker
    ? await startWorker({ ownerPool, logger, masterKey, clerkApiUrl: config.clerkApiUrl, production: config.env === "production", authUrl: db.authUrl })
    : null;
  watchPool("owner", ownerPool);
  collectProcessMetrics();
  if (worker) countJobs(worker.events);
  const metricsServer = config.metrics.port !== null ? await serveMetrics(config.metrics.port) : null;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listenPort, config.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : listenPort;
  const base = `http://${config.host}:${port}`;
  logger.info("AuthHub is ready", { graphql: `${base}/graphql`, env: config.env, embedded_database: db.embedded !== null, issuer: issuer.issuer, issuer_source: issuer.source });
  process.stderr.write(
    [
      "",
      `  AuthHub is running (${config.env}).`,
      `  GraphQL:   ${base}/graphql${config.env === "development" ? `   (GraphiQL: ${base}/graphiql)` : ""}`,
      `  Auth API:  ${base}/.well-known/openid-configuration`,
      `  Open API:  ${base}/open/v1/openapi.json   (keys: npx authhub apikey create --tenant <slug> --scopes user:read)`,
      `  Health:    ${base}/healthz   ${base}/readyz`,
      issuerLine(issuer),
      "",
      "  First token, from another terminal:",
      "    npx authhub bootstrap --tenant acme --admin-email admin@example.com",
      "    npx authhub token --tenant acme --email admin@example.com",
      `    curl -H "Authorization: Bearer <token>" -H 'Content-Type: application/json' \\`,
      `         -d '{"query":"{ currentUser { email level } }"}' ${base}/graphql`,
      "",
    ].join("\n") + "\n",
  );

  // In-flight requests get the grace period; then their sockets close, the
  // connections still out are ended, and the embedded PostgreSQL stops last.
  const grace = config.shutdownGraceMs;
  steps.push(
    ["http server", () => closeHttpServer(server, grace), grace + 2_000],
    ["graphql", release, 5_000],
    ...(metricsServer ? ([["metrics", () => new Promise((resolve) => metricsServer.close(resolve)), 2_000]] as ShutdownStep[]) : []),
    ...(worker ? ([["worker", () => worker.stop(), Math.max(grace, 1_000)]] as ShutdownStep[]) : []),
    ["authenticator pool", () => closePool(authPool, 1_000), 5_000],
    ["owner pool", () => closePool(ownerPool, 1_000), 5_000],
    ["database", () => db.stop(), 60_000],
    ["lock", async () => unlock(), 1_000],
  );
  onShutdownSignal(logger, steps);
}

main().catch((err: unknown) => {
  const message = err instanceof ConfigError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err);
  process.stderr.write(`AuthHub failed to start: ${message}\n`);
  process.exit(1);
});
