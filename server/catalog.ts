/**
 * GET /catalog/v1/{tenantSlug}/products?store=&limit=&cursor= (DESIGN §12):
 * the public catalogue for consumer apps, without authentication. SQL decides
 * what is public (retail.catalog_products, the only door anonymous callers have
 * to retail data): published, active, live products of active stores, their
 * variants' SKU, title, price and whether they are in stock; nothing else.
 * Answers carry an ETag (a 304 for a matching If-None-Match) and
 * Cache-Control; each client address has its own rate limit.
 */
import express, { type NextFunction, type Request, type Response } from "express";
import { createHash } from "node:crypto";
import type pg from "pg";
import { beginRequestStatement, pgSettingsFor, type TransactionLimits } from "../db/claims.js";
import { releaseClient, rollbackAndRelease } from "../db/pools.js";
import { clientAddress } from "./auth/authApi.js";
import { AppError, type FieldProblem } from "./errors.js";
import type { RateLimits } from "./rateLimit.js";
import { requestState } from "./requestState.js";

const SLUG_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const UUID_CURSOR_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface CatalogOptions {
  authPool: pg.Pool;
  limits: TransactionLimits;
  rateLimits: RateLimits;
  /** Requests per minute per client address. */
  perAddress: number;
  /** How long clients and caches may keep an answer (seconds). */
  maxAgeSeconds: number;
}

interface CatalogRow {
  id: string;
  store: string;
  title: string;
  variants: { sku: string; title: string | null; priceMinor: number; currency: string; inStock: boolean }[];
}

export function catalogRouter(options: CatalogOptions): express.Router {
  const router = express.Router();
  router.get("/catalog/v1/:tenantSlug/products", async (req: Request, res: Response, next: NextFunction) => {
    let client: pg.PoolClient | undefined;
    try {
      const limit = await options.rateLimits.hitBatched("catalog-ip", clientAddress(req), options.perAddress);
      if (!limit.allowed) {
        res.setHeader("Retry-After", String(limit.resetSeconds));
        throw new AppError("rate_limited", "Too many catalogue requests from this address; try again later.");
      }
      const tenant = String(req.params.tenantSlug);
      const store = typeof req.query.store === "string" ? req.query.store : null;
      const size = req.query.limit === undefined ? 50 : Number(req.query.limit);
      const cursor = typeof req.query.cursor === "string" ? req.query.cursor : null;
      const problems: FieldProblem[] = [];
      if (!SLUG_RE.test(tenant)) problems.push({ field: "tenantSlug", message: "must be a tenant slug" });
      if (store !== null && !SLUG_RE.test(store)) problems.push({ field: "store", message: "must be a store code" });
      if (!(Number.isInteger(size) && size >= 1 && size <= 100)) problems.push({ field: "limit", message: "must be between 1 and 100" });
      if (cursor !== null && !UUID_CURSOR_RE.test(cursor)) problems.push({ field: "cursor", message: "must be a nextCursor from a previous page" });
      for (const name of Object.keys(req.query)) if (!["store", "limit", "cursor"].includes(name)) problems.push({ field: name, message: "is not a known parameter" });
      if (problems.length > 0) throw new AppError("invalid_input", "The catalogue request is not valid.", { details: problems });

      client = await options.authPool.connect();
      await client.query(beginRequestStatement(pgSettingsFor(null, requestState(req).traceId, options.limits)));
      const { rows } = await client.query<CatalogRow>("select id, store, title, variants from retail.catalog_products($1, $2, $3, $4)", [tenant, store, cursor, size + 1]);
      await client.query("commit");
      releaseClient(client);
      client = undefined;

      const more = rows.length > size;
      const data = more ? rows.slice(0, size) : rows;
      const body = JSON.stringify({ data, nextCursor: more ? data[data.length - 1]!.id : null });
      const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 32)}"`;
      res.setHeader("ETag", etag);
      res.setHeader("Cache-Control", `public, max-age=${options.maxAgeSeconds}`);
      res.setHeader("Vary", "Accept-Encoding");
      if (req.get("if-none-match") === etag) {
        res.status(304).end();
        return;
      }
      res.type("application/json").send(body);
    } catch (err) {
      if (client) await rollbackAndRelease(client, err);
      next(err);
    }
  });
  return router;
}
