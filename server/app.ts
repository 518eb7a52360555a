/**
 * The HTTP application: small install steps in a fixed order, each owning what
 * it creates and returning how to release it. makeApp() does not listen; the
 * caller (server/main.ts, tests) decides where.
 */
import express, { type NextFunction, type Request, type Response } from "express";
import http from "node:http";
import type pg from "pg";
import { postgraphile } from "postgraphile";
import { grafserv } from "postgraphile/grafserv/express/v4";
import { latestCommittedHash } from "../db/migrate.js";
import { makePool } from "../db/pools.js";
import { authApiRouter, OAuthError } from "./auth/authApi.js";
import { authenticate, secretsEqual } from "./auth/authenticate.js";
import type { MasterKey } from "./auth/masterKey.js";
import { authorizeBodyParser, authorizeHandler } from "./authorize.js";
import { TokenVerifier } from "./auth/verify.js";
import { transactionLimits, type Config } from "./config.js";
import { AppError, toAppError, UNAVAILABLE_RETRY_AFTER } from "./errors.js";
import { graphqlRateLimit } from "./graphql/operations.js";
import { makePreset } from "./graphql/preset.js";
import type { Logger } from "./logger.js";
import { countRequests, metricsText, readFiguresFrom, watchPool } from "./metrics.js";
import { catalogRouter } from "./catalog.js";
import { requestState } from "./requestState.js";
import { openApiRouter } from "./openapi/router.js";
import { ApiKeyUsage } from "./openapi/usage.js";
import { clerkWebhookRouter } from "./webhooks/clerk.js";
import { RateLimits } from "./rateLimit.js";
import { newTraceId, traceIdFrom } from "./trace.js";
import type { JSONWebKeySet } from "jose";

export interface AppDeps {
  config: Config;
  /** Pool logged in as authhub_authenticator: the only connection request paths use. */
  authPool: pg.Pool;
  logger: Logger;
  /** Opens the signing keys the Auth API signs with. */
  masterKey: MasterKey;
}

export interface App {
  app: express.Express;
  server: http.Server;
  /** Releases what makeApp created (not the pool it was given); a function, passed around as a shutdown step. */
  release: () => Promise<void>;
}

/**
 * GET /metrics on the public port, only with AUTHHUB_METRICS_TOKEN as a bearer
 * token (compared in constant time); without a token it is not served here
 * (AUTHHUB_METRICS_PORT serves it on loopback, server/main.ts).
 */
function installMetrics(app: express.Express, deps: AppDeps) {
  readFiguresFrom(deps.authPool);
  watchPool("authenticator", deps.authPool);
  app.use(countRequests);
  const token = deps.config.metrics.token;
  if (token === null) return;
  app.get("/metrics", async (req: Request, res: Response, next: NextFunction) => {
    try {
      const given = /^Bearer (.+)$/.exec(req.get("authorization") ?? "")?.[1] ?? "";
      if (!secretsEqual(given, token)) throw new AppError("unauthenticated", "The metrics token is not valid.");
      const { contentType, body } = await metricsText();
      res.setHeader("Content-Type", contentType);
      res.send(body);
    } catch (err) {
      next(err);
    }
  });
}

function installRequestContext(app: express.Express, logger: Logger, trustProxy: Config["trustProxy"]) {
  app.disable("x-powered-by");
  // Only proxies the operator names may speak for the client's address (req.ip).
  app.set("trust proxy", trustProxy);
  app.use((req: Request, res: Response, next: NextFunction) => {
    const started = process.hrtime.bigint();
    const state = requestState(req);
    state.traceId = traceIdFrom(req.get("x-trace-id")) ?? newTraceId();
    res.setHeader("X-Trace-Id", state.traceId);
    res.on("finish", () => {
      logger.info("request", {
        trace_id: state.traceId,
        method: req.method,
        path: req.path,
        status: res.statusCode,
        duration_ms: Number((process.hrtime.bigint() - started) / 1000n) / 1000,
        via: state.via,
        ...(state.identity ? { user_id: state.identity.userId, tenant_id: state.identity.tenantId } : {}),
        ...(state.apiKey ? { api_key_id: state.apiKey.apiKeyId, tenant_id: state.apiKey.tenantId } : {}),
      });
    });
    next();
  });
}

/** How long /readyz waits for the database before answering that it is not ready. */
const READY_PROBE_MS = 1500;

/**
 * /healthz (the process answers) and /readyz (the database answers, migrated to
 * this code's schema). The probe has a pool of its own, one connection with a
 * short wait, so it answers within two seconds whatever the request pool's
 * state: exhausted, pinned by a lock, or reconnecting after a restart. The
 * request pool's use is reported beside it.
 */
function installHealth(app: express.Express, authPool: pg.Pool, logger: Logger): () => Promise<void> {
  const expected = latestCommittedHash();
  const probe = makePool(String((authPool.options as { connectionString?: string }).connectionString), {
    name: "readiness probe",
    max: 1,
    acquireTimeoutMs: READY_PROBE_MS,
    onError: (message, err) => logger.warn(message, { err }),
  });
  app.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  app.get("/readyz", async (_req, res) => {
    let database = false;
    let migrations = false;
    let timer: NodeJS.Timeout | undefined;
    try {
      const check = probe.query<{ hash: string | null }>(
        `begin; set local statement_timeout = ${READY_PROBE_MS}; select authhub_private.current_migration_hash() as hash; commit`,
      ) as unknown as Promise<pg.QueryResult<{ hash: string | null }>[]>;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("readiness probe timed out")), READY_PROBE_MS);
      });
      const results = await Promise.race([check, late]);
      database = true;
      migrations = results[2]?.rows[0]?.hash === expected;
    } catch {
      // The database did not answer in time: both checks stay false.
    } finally {
      clearTimeout(timer);
    }
    const ready = database && migrations;
    res.status(ready ? 200 : 503).json({
      status: ready ? "ready" : "unavailable",
      checks: { database, migrations },
      pool: { total: authPool.totalCount, idle: authPool.idleCount, waiting: authPool.waitingCount },
    });
  });
  return () => probe.end();
}

async function loadOwnKeys(authPool: pg.Pool): Promise<JSONWebKeySet> {
  const { rows } = await authPool.query<{ jwk: JSONWebKeySet["keys"][number] }>("select authhub_private.public_signing_keys() as jwk");
  return { keys: rows.map((r) => r.jwk) };
}

function makeVerifier(deps: AppDeps): TokenVerifier {
  return new TokenVerifier({
    issuer: deps.config.issuer,
    trustedIssuers: deps.config.trustedIssuers,
    loadOwnKeys: () => loadOwnKeys(deps.authPool),
    resolveExternalUser: async (tenantId, issuer, externalId) => {
      const { rows } = await deps.authPool.query<{ id: string | null }>("select authhub_private.user_id_for_external_id($1, $2, $3, $4) as id", [
        tenantId,
        issuer,
        externalId,
        deps.config.trustedIssuers.map((t) => t.issuer),
      ]);
      return rows[0]?.id ?? null;
    },
  });
}

/** POST /v1/authorize: the decision API for sibling services. */
function installAuthorize(app: express.Express, deps: AppDeps, authenticateRequest: express.RequestHandler) {
  app.post("/v1/authorize", authenticateRequest, authorizeBodyParser, authorizeHandler(deps.authPool, transactionLimits(deps.config)));
}

/** A GraphQL answer the database could not give (state.unavailable) goes out as 503 with Retry-After. */
function answerUnavailableAs503(req: Request, res: Response, next: NextFunction) {
  const writeHead = res.writeHead.bind(res) as (...args: unknown[]) => Response;
  res.writeHead = ((status: number, ...rest: unknown[]) => {
    if (requestState(req).unavailable && status < 400) {
      res.setHeader("Retry-After", String(UNAVAILABLE_RETRY_AFTER));
      return writeHead(503, ...rest);
    }
    return writeHead(status, ...rest);
  }) as typeof res.writeHead;
  next();
}

async function installGraphQL(app: express.Express, server: http.Server, deps: AppDeps, authenticateRequest: express.RequestHandler, rateLimits: RateLimits) {
  app.use("/graphql", authenticateRequest, graphqlRateLimit(rateLimits, deps.config.graphql), answerUnavailableAs503);
  const pgl = postgraphile(makePreset(deps.config, deps.authPool, deps.logger, deps.masterKey));
  const serv = pgl.createServ(grafserv);
  await serv.addTo(app, server, false);
  return async () => {
    await pgl.release();
  };
}

function installErrors(app: express.Express, logger: Logger) {
  app.use((_req: Request, _res: Response, next: NextFunction) => {
    next(new AppError("not_found", "No such endpoint."));
  });
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const bodyType = (err as { type?: string }).type;
    const error =
      bodyType === "entity.too.large"
        ? new AppError("payload_too_large", "The request body is too large.")
        : bodyType === "entity.parse.failed"
          ? new AppError("invalid_input", "The request body is not valid JSON.")
          : toAppError(err);
    if (err instanceof OAuthError) {
      if (err.retryAfter !== undefined) res.setHeader("Retry-After", String(err.retryAfter));
      res.status(err.status).json({ error: err.error, error_description: err.description });
      return;
    }
    if (error.code === "internal") {
      logger.error("unhandled error", { trace_id: requestState(req).traceId, err });
    }
    if (error.code === "unauthenticated") res.setHeader("WWW-Authenticate", 'Bearer error="invalid_token"');
    if (error.retryAfter !== undefined && !res.headersSent) res.setHeader("Retry-After", String(error.retryAfter));
    if (res.headersSent) return;
    res.status(error.status);
    // GraphQL clients read `errors`; everyone else reads DESIGN.md §9's `error`.
    if (req.path.startsWith("/graphql")) {
      res.json({ errors: [{ message: error.message, extensions: { code: error.code } }] });
    } else if (req.path.startsWith("/auth/")) {
      // OAuth clients read RFC 6749's shape.
      const oauth = error.code === "internal" ? "server_error" : error.code === "invalid_input" || error.code === "payload_too_large" ? "invalid_request" : error.code;
      res.json({ error: oauth, error_description: error.message });
    } else {
      res.json(error.toJSON());
    }
  });
}

export async function makeApp(deps: AppDeps): Promise<App> {
  const app = express();
  const server = http.createServer(app);
  installRequestContext(app, deps.logger, deps.config.trustProxy);
  installMetrics(app, deps);
  const releaseHealth = installHealth(app, deps.authPool, deps.logger);
  const verifier = makeVerifier(deps);
  const authenticateRequest = authenticate({ verifier, gatewaySecret: deps.config.gatewaySecret });
  const rateLimits = new RateLimits(deps.authPool, { preparedStatements: deps.config.database.pooler !== "transaction" });
  app.use(authApiRouter({ config: deps.config, authPool: deps.authPool, masterKey: deps.masterKey, verifier, rateLimits }));
  // API-key use is counted in memory and recorded in batches: release() records what is left (issue 13.7).
  const usage = new ApiKeyUsage(deps.authPool);
  app.use(
    openApiRouter({
      authPool: deps.authPool,
      limits: transactionLimits(deps.config),
      masterKey: deps.masterKey,
      rateLimits,
      maxBodyBytes: deps.config.graphql.maxRequestBytes,
      usage,
    }),
  );
  app.use(
    catalogRouter({
      authPool: deps.authPool,
      limits: transactionLimits(deps.config),
      rateLimits,
      perAddress: deps.config.catalog.rateLimitPerAddress,
      maxAgeSeconds: deps.config.catalog.maxAgeSeconds,
    }),
  );
  app.use(clerkWebhookRouter({ authPool: deps.authPool, masterKey: deps.masterKey, maxBodyBytes: deps.config.webhookMaxBytes }));
  installAuthorize(app, deps, authenticateRequest);
  const releaseGraphQL = await installGraphQL(app, server, deps, authenticateRequest, rateLimits);
  installErrors(app, deps.logger);
  return {
    app,
    server,
    async release() {
      // Before the pools close (server/main.ts's order): the last requests' API-key use.
      await usage.flush();
      await releaseGraphQL();
      await releaseHealth();
    },
  };
}
