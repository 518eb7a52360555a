/**
 * /open/v1: the Open API for partner systems (DESIGN.md §6). Per request:
 * verify the signature (keys.ts), check the route's scope, validate the input
 * against the route's schemas, then run the handler in one transaction as
 * authhub_api_client with the key's claims, whose first statement records the
 * nonce and re-checks the key. The key's (and its tenant's) rate limit is
 * counted meanwhile, on another connection, and decided before the commit:
 * over the limit, the work is rolled back and the answer is 429.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import express, { type NextFunction, type Request, type Response } from "express";
import pg from "pg";
import { clientAddress } from "../auth/authApi.js";
import { pgSettingsForCaller, settingsStatement } from "../../db/claims.js";
import { unknownIdGuard } from "../lookups.js";
import type { MasterKey } from "../auth/masterKey.js";
import { AppError, toAppError, type FieldProblem } from "../errors.js";
import type { RateLimitDecision, RateLimits } from "../rateLimit.js";
import { requestState } from "../requestState.js";
import { openApiDocument } from "./document.js";
import { ApiKeyStore, TIMESTAMP_WINDOW_SECONDS, unauthenticated, verifySignedRequest, type ApiKeyRecord } from "./keys.js";
import { routes, schemas, type Ctx, type JsonSchema, type Route } from "./resources.js";
import { ApiKeyUsage } from "./usage.js";

export interface OpenApiOptions {
  authPool: pg.Pool;
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
    const path = e.instancePath.split("/").filter(Boolean).map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join("").replace(/^\./, "");
    const field = e.keyword === "required" ? [path, e.params.missingProperty].filter(Boolean).join(".") : e.keyword === "additionalProperties" ? [path, e.params.additionalProperty].filter(Boolean).join(".") : path;
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

  const raw = express.raw({ type: () => true, limit: options.maxBodyBytes });
  for (const route of routes) {
    const validateParams = objectValidator(route.params, Object.keys(route.params ?? {}));
    const validateQuery = objectValidator(route.query, []);
    const validateBody = route.body ? ajv.getSchema(route.body)! : null;
    const expressPath = `/open/v1${route.path.replace(/\{(\w+)\}/g, ":$1")}`;
    router[route.method](expressPath, raw, async (req: Request, res: Response, next: NextFunction) => {
      const state = requestState(req);
      let client: pg.PoolClient | undefined;
      let open = false;
      try {
        const rawBody = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
        const { key, nonce } = options.actAs
          ? { key: options.actAs, nonce: null }
          : await verifySignedRequest({ method: req.method, originalUrl: req.originalUrl, header: (n) => req.get(n), rawBody }, store, lookUp(req));
        state.via = "api_key";
        state.apiKey = { apiKeyId: key.id, tenantId: key.tenantId, orgId: key.organizationId };
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
          if (!req.is("application/json")) throw new AppError("invalid_input", "The body must be JSON (Content-Type: application/json).", { details: [{ field: "body", message: "must be JSON" }] });
          try {
            body = JSON.parse(rawBody.toString("utf8"));
          } catch {
            throw new AppError("invalid_input", "The request body is not valid JSON.", { details: [{ field: "body", message: "must be valid JSON" }] });
          }
          if (!validateBody(body)) throw new AppError("invalid_input", "The body is not valid.", { details: problems(validateBody.errors) });
        }
        // Counted from now, alongside the first round trip below.
        const decision = options.rateLimiting === false ? null : limits(key);
        decision?.catch(() => undefined);

        // The key's liveness and the nonce, committed on their own (on another
        // connection, alongside the request's first statement) so that no later
        // failure can un-record the nonce; the request waits for both.
        const guard = nonce
          ? options.authPool.query({
              name: "authhub_begin_api_request",
              text: "select authhub_private.begin_api_request($1, $2, $3, $4)",
              values: [key.id, key.tenantId, nonce, TIMESTAMP_WINDOW_SECONDS],
            })
          : null;
        guard?.catch(() => undefined);
        client = await options.authPool.connect();
        const settings = pgSettingsForCaller(state, state.traceId);
        open = true;
        await client.query(`begin; ${settingsStatement(settings)};`);
        await guard;
        const limit = decision ? await decision : null;
        if (limit) {
          rateLimitHeaders(res, limit);
          if (!limit.allowed) {
            res.setHeader("Retry-After", String(limit.resetSeconds));
            throw new AppError("rate_limited", "This key is over its rate limit; try again later.");
          }
        }
        const ctx: Ctx = { client, key, params, query: query as Record<string, string | undefined>, body, rateLimit: limit };
        const result = await route.handler(ctx);
        await client.query("commit");
        open = false;
        if (route.response.status === 204) res.status(204).end();
        else res.status(route.response.status).json(result);
      } catch (err) {
        if (client && open) await client.query("rollback").catch(() => undefined);
        // A key revoked or a nonce replayed (raised by the request's first statement) is the same 401.
        const code = (err as { code?: unknown }).code;
        next(code === "AH401" ? unauthenticated() : err instanceof AppError ? err : toAppError(err));
      } finally {
        client?.release();
      }
    });
  }
  return router;
}
