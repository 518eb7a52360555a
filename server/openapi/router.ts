/**
 * /open/v1: the Open API for partner systems (DESIGN.md §6). Per request:
 * verify the signature (keys.ts), check the route's scope, validate the input
 * against the route's schemas, count the key's (and its tenant's) rate limit,
 * then, on one connection and in one round trip, record the nonce and re-check
 * the key (committed on its own, so no later failure un-records it), and begin
 * the request's transaction as authhub_api_client with the key's claims; the
 * handler runs in it. Nothing waits for a second connection while it holds one
 * (a request holding one while it waited for the limiter's or the nonce's
 * connection deadlocked the pool once concurrency reached its size), and the
 * wait for the one connection is bounded (then 503 unavailable).
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import express, { type NextFunction, type Request, type Response } from "express";
import { createHash } from "node:crypto";
import pg from "pg";

const lit = (v: string) => pg.escapeLiteral(v);
type Accepted = pg.QueryResult<{ accepted: boolean }>;
import { clientAddress } from "../auth/authApi.js";
import { beginRequestStatement, pgSettingsForCaller, type TransactionLimits } from "../../db/claims.js";
import { releaseClient, rollbackAndRelease } from "../../db/pools.js";
import { unknownIdGuard } from "../lookups.js";
import type { MasterKey } from "../auth/masterKey.js";
import { AppError, toAppError, type FieldProblem } from "../errors.js";
import type { RateLimitDecision, RateLimits } from "../rateLimit.js";
import { authentications } from "../metrics.js";
import { requestState } from "../requestState.js";
import { openApiDocument } from "./document.js";
import { ApiKeyStore, TIMESTAMP_WINDOW_SECONDS, unauthenticated, verifySignedRequest, type ApiKeyRecord } from "./keys.js";
import type { Ctx, JsonSchema } from "./resources.js";
import { routes, schemas } from "./routes.js";
import { ApiKeyUsage } from "./usage.js";

export interface OpenApiOptions {
  authPool: pg.Pool;
  /** Bounds on each request's transaction. */
  limits: TransactionLimits;
  masterKey: MasterKey;
  rateLimits: RateLimits;
  maxBodyBytes: number;
  /** How long a key read from the database is trusted (ms; 0: read it for every request). */
  keyCacheMs?: number;
  /** Benchmarks only: count no limits. */
  rateLimiting?: boolean;
  /** Benchmarks only: skip authentication and act as this key (never set by the server). */
  actAs?: ApiKeyRecord;
  /** Where served requests are counted (default: a counter of the router's own). */
  usage?: ApiKeyUsage;
}

const ajv = new Ajv2020({ allErrors: true, strict: false });
(addFormats as unknown as (a: Ajv2020) => void)(ajv);
for (const [name, schema] of Object.entries(schemas)) ajv.addSchema(schema, name);

/** Ajv's complaints as field problems: `email`, `scopes[1]`, the missing property's name. */
function problems(errors: { instancePath: string; keyword: string; params: Record<string, unknown>; message?: string }[] | null | undefined, prefix = ""): FieldProblem[] {
  return (errors ?? []).map((e) => {
    const path = e.instancePath
      .split("/")
      .filter(Boolean)
      .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`))
      .join("")
      .replace(/^\./, "");
    const field =
      e.keyword === "required"
        ? [path, e.params.missingProperty].filter(Boolean).join(".")
        : e.keyword === "additionalProperties"
          ? [path, e.params.additionalProperty].filter(Boolean).join(".")
          : path;
    const message = e.keyword === "additionalProperties" ? "is not a known field" : e.keyword === "required" ? "is required" : (e.message ?? "is not valid");
    return { field: prefix + (field || "body"), message };
  });
}

/** The query as signed (client/index.js canonicalQuery's reading): percent-decoded, `+` literal; a repeated name gives a list. */
function parseQuery(originalUrl: string): Record<string, string | string[]> {
  const q = originalUrl.indexOf("?");
  const out: Record<string, string | string[]> = {};
  if (q === -1) return out;
  for (const part of originalUrl.slice(q + 1).split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const name = decodeURIComponent(eq === -1 ? part : part.slice(0, eq));
    const value = decodeURIComponent(eq === -1 ? "" : part.slice(eq + 1));
    const seen = out[name];
    out[name] = seen === undefined ? value : Array.isArray(seen) ? [...seen, value] : [seen, value];
  }
  return out;
}

function objectValidator(properties: Record<string, JsonSchema> | undefined, required: string[]) {
  return ajv.compile({ type: "object", additionalProperties: false, required, properties: properties ?? {} });
}

interface Claim {
  outcome: "new" | "replay" | "mismatch" | "in_flight";
  status: number | null;
  response: unknown;
}

const IDEMPOTENCY_KEY_RE = /^[\x21-\x7e]{1,255}$/;

/** The request's Idempotency-Key (1-255 visible ASCII characters, required) and what it must stay bound to: the method, target and body. */
function idempotencyKeyOf(req: Request, rawBody: Buffer): { key: string; hash: string } {
  const key = req.get("idempotency-key");
  if (key === undefined || !IDEMPOTENCY_KEY_RE.test(key)) {
    throw new AppError("invalid_input", "This request needs an Idempotency-Key header of 1-255 visible ASCII characters.", {
      details: [{ field: "Idempotency-Key", message: "must be 1-255 visible ASCII characters" }],
    });
  }
  const hash = createHash("sha256").update(`${req.method} ${req.originalUrl}\n`).update(rawBody).digest("hex");
  return { key, hash };
}

function rateLimitHeaders(res: Response, decision: RateLimitDecision) {
  res.setHeader("RateLimit-Limit", String(decision.limit));
  res.setHeader("RateLimit-Remaining", String(decision.remaining));
  res.setHeader("RateLimit-Reset", String(decision.resetSeconds));
}

export function openApiRouter(options: OpenApiOptions): express.Router {
  const router = express.Router();
  const store = new ApiKeyStore(options.authPool, options.masterKey, options.keyCacheMs ?? 1000);
  const usage = options.usage ?? new ApiKeyUsage(options.authPool);
  // A key id that is not in the cache is read from the database; an address
  // that keeps naming keys that do not exist (600 a minute) is refused without
  // reading, so made-up ids cannot turn into a query each.
  const guard = unknownIdGuard("openapi-unknown-key", 600);
  const lookUp = (req: Request) => (read: () => Promise<ApiKeyRecord | null>) => guard(clientAddress(req), read);
  const document = openApiDocument();
  router.get("/open/v1/openapi.json", (_req, res) => {
    res.setHeader("Cache-Control", "public, max-age=300");
    res.json(document);
  });

  /**
   * The key's limit, then (only for a request the key's limit lets through) its
   * tenant's ceiling: one key over its own limit does not use up its tenant's.
   * The tighter answer is reported.
   */
  async function limits(key: ApiKeyRecord): Promise<RateLimitDecision> {
    const own = await options.rateLimits.hitBatched("apikey", key.id, key.rateLimitPerMinute);
    if (!own.allowed || !key.tenantRateLimitPerMinute) return own;
    const tenant = await options.rateLimits.hitBatched("apikey-tenant", key.tenantId, key.tenantRateLimitPerMinute);
    return !tenant.allowed || tenant.remaining < own.remaining ? tenant : own;
  }

  for (const route of routes) {
    const raw = express.raw({ type: () => true, limit: route.maxBodyBytes ?? options.maxBodyBytes });
    const validateParams = objectValidator(route.params, Object.keys(route.params ?? {}));
    const validateQuery = objectValidator(route.query, []);
    const validateBody = route.body ? ajv.getSchema(route.body)! : null;
    const expressPath = `/open/v1${route.path.replace(/\{(\w+)\}/g, ":$1")}`;
    router[route.method](expressPath, raw, async (req: Request, res: Response, next: NextFunction) => {
      const state = requestState(req);
      let client: pg.PoolClient | undefined;
      let claimed: string | null = null;
      try {
        const rawBody = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
        const { key, nonce, signedAt } = options.actAs
          ? { key: options.actAs, nonce: null, signedAt: 0 }
          : await verifySignedRequest({ method: req.method, originalUrl: req.originalUrl, header: (n) => req.get(n), rawBody }, store, lookUp(req));
        state.via = "api_key";
        state.apiKey = { apiKeyId: key.id, tenantId: key.tenantId, orgId: key.organizationId };
        if (nonce) authentications.inc({ method: "api_key", outcome: "ok" });
        if (nonce) usage.count(key.tenantId, key.id);
        if (route.scope && !key.scopes.includes(route.scope)) {
          throw new AppError("insufficient_scope", `This key lacks the scope ${route.scope}.`);
        }
        const params = { ...req.params } as Record<string, string>;
        if (!validateParams(params)) throw new AppError("invalid_input", "The path is not valid.", { details: problems(validateParams.errors) });
        // Read as it was signed: `+` is a plus, not a space.
        const query = parseQuery(req.originalUrl);
        if (!validateQuery(query)) throw new AppError("invalid_input", "The query is not valid.", { details: problems(validateQuery.errors) });
        let body: Record<string, unknown> = {};
        if (validateBody) {
          if (!req.is("application/json"))
            throw new AppError("invalid_input", "The body must be JSON (Content-Type: application/json).", { details: [{ field: "body", message: "must be JSON" }] });
          try {
            body = JSON.parse(rawBody.toString("utf8")) as Record<string, unknown>; // its shape is validateBody's, below
          } catch {
            throw new AppError("invalid_input", "The request body is not valid JSON.", { details: [{ field: "body", message: "must be valid JSON" }] });
          }
          if (!validateBody(body)) throw new AppError("invalid_input", "The body is not valid.", { details: problems(validateBody.errors) });
        }
        // A write that must not apply twice names its Idempotency-Key; the key is
        // claimed with the nonce, committed ahead of the request's transaction.
        const idempotency = route.idempotent ? idempotencyKeyOf(req, rawBody) : null;
        // The nonce's record and the key's liveness, committed on their own ahead of the request's transaction.
        const nonceGuard = nonce
          ? `select authhub_private.begin_api_request(${lit(key.id)}, ${lit(key.tenantId)}, ${lit(nonce)}, ${TIMESTAMP_WINDOW_SECONDS}, to_timestamp(${Math.trunc(signedAt)})) as accepted`
          : null;
        const guard =
          nonceGuard && idempotency
            ? `${nonceGuard}, (select row_to_json(c) from authhub_private.claim_idempotency(${lit(key.tenantId)}, ${lit(key.id)}, ${lit(idempotency.key)}, ${lit(idempotency.hash)}) c) as claim`
            : nonceGuard;
        // One result, or one per statement when the guard runs ahead of the transaction's start.
        const accepted = (results: Accepted | Accepted[]) => (Array.isArray(results) ? results[0] : results)!.rows[0]?.accepted === true;
        // Counted before any connection is taken: most counts are from memory, the rest take their own connection briefly.
        const limit = options.rateLimiting === false ? null : await limits(key);
        if (limit) {
          rateLimitHeaders(res, limit);
          if (!limit.allowed) {
            // Still recorded, so a refused request cannot be replayed once the window frees up.
            if (nonceGuard && !accepted(await options.authPool.query<{ accepted: boolean }>(nonceGuard))) throw unauthenticated();
            res.setHeader("Retry-After", String(limit.resetSeconds));
            throw new AppError("rate_limited", "This key is over its rate limit; try again later.");
          }
        }
        client = await options.authPool.connect();
        const begin = beginRequestStatement(pgSettingsForCaller(state, state.traceId, options.limits));
        if (guard) {
          // A multi-statement query answers one result per statement: the guard's is the first.
          const results = (await client.query(`${guard}; commit; ${begin}`)) as unknown as pg.QueryResult<{ accepted: boolean; claim?: Claim | null }>[];
          if (!accepted(results)) throw unauthenticated();
          const claim = results[0]!.rows[0]?.claim;
          if (idempotency && claim && claim.outcome !== "new") {
            // Nothing runs: the first answer again, or why not.
            await client.query("rollback");
            releaseClient(client);
            client = undefined;
            if (claim.outcome === "replay") {
              res.setHeader("Idempotent-Replayed", "true");
              res.status(claim.status ?? 200).json(claim.response);
              return;
            }
            throw claim.outcome === "mismatch"
              ? new AppError("idempotency_mismatch", "This Idempotency-Key was used with another request.")
              : new AppError("conflict", "A request with this Idempotency-Key is still running; retry when it has answered.");
          }
          claimed = idempotency?.key ?? null;
        } else {
          await client.query(begin);
        }
        const ctx: Ctx = { client, key, params, query: query as Record<string, string | undefined>, body, rateLimit: limit };
        const result = await route.handler(ctx);
        if (claimed) await client.query("select authhub_private.finish_idempotency($1, $2, $3::jsonb)", [claimed, route.response.status, JSON.stringify(result ?? null)]);
        await client.query("commit");
        releaseClient(client);
        client = undefined;
        if (route.response.status === 204) res.status(204).end();
        else res.status(route.response.status).json(result);
      } catch (err) {
        if (!state.apiKey && err instanceof AppError && err.code === "unauthenticated") authentications.inc({ method: "api_key", outcome: "refused" });
        if (client) {
          // The claim goes back with the failure, so a retry need not wait for it to go stale.
          if (claimed && state.apiKey) {
            await client.query("rollback").catch(() => undefined);
            await client.query("select authhub_private.release_idempotency($1, $2, $3)", [state.apiKey.tenantId, state.apiKey.apiKeyId, claimed]).catch(() => undefined);
          }
          await rollbackAndRelease(client, err);
        }
        next(err instanceof AppError ? err : toAppError(err));
      }
    });
  }
  return router;
}
