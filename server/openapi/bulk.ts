/**
 * Bulk backfill (DESIGN §13; issue 17.2): `POST /open/v1/sync/{entity}/bulk`
 * with an NDJSON body, one row per line in the Data Sync API's row shape. The
 * body is streamed, never held whole: to a temporary file while it is hashed
 * and counted (AUTHHUB_SYNC_BULK_MAX_BYTES, 413 above), then, once the
 * signature over that hash holds (signed as every Open API request), staged
 * line by line in the key's own transaction (retail_private.sync_bulk_*) and
 * handed to the worker (sync_bulk__apply), which applies it through
 * retail.sync as the key: the same versions and tombstones as a push. Answers
 * 202 {"jobId"}; GET /open/v1/sync/jobs/{jobId} reports progress. A key bound
 * to a store loads that store; one bulk job per store at a time (409).
 */
import express, { type NextFunction, type Request, type Response } from "express";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { unlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import type pg from "pg";
import { beginRequestStatement, pgSettingsForApiKey, type TransactionLimits } from "../../db/claims.js";
import { releaseClient, rollbackAndRelease } from "../../db/pools.js";
import type { MasterKey } from "../auth/masterKey.js";
import { clientAddress } from "../auth/authApi.js";
import { AppError, toAppError } from "../errors.js";
import type { RateLimits } from "../rateLimit.js";
import { requestState } from "../requestState.js";
import { unknownIdGuard } from "../lookups.js";
import { ApiKeyStore, TIMESTAMP_WINDOW_SECONDS, unauthenticated, verifySignedRequest } from "./keys.js";
import { SYNC_ENTITIES } from "./sync.js";

export interface SyncBulkOptions {
  authPool: pg.Pool;
  masterKey: MasterKey;
  rateLimits: RateLimits;
  limits: TransactionLimits;
  maxBytes: number;
}

/** Rows staged per statement. */
const STAGE_BATCH = 1000;

/** Streams the request body to a file, hashing and counting it; refuses it past `maxBytes`. */
function spool(req: Request, file: string, maxBytes: number): Promise<{ sha256: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const hash = createHash("sha256");
    const out = createWriteStream(file, { mode: 0o600 });
    let bytes = 0;
    let failed = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      req.unpipe(out);
      out.destroy();
      reject(err instanceof Error ? err : new Error("the request body could not be read"));
    };
    req.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > maxBytes) {
        fail(new AppError("payload_too_large", `A bulk load is at most ${maxBytes} bytes.`));
        return;
      }
      hash.update(chunk);
    });
    req.on("error", fail);
    out.on("error", fail);
    out.on("finish", () => {
      if (!failed) resolve({ sha256: hash.digest("hex"), bytes });
    });
    req.pipe(out);
  });
}

export function syncBulkRouter(options: SyncBulkOptions): express.Router {
  const router = express.Router();
  const store = new ApiKeyStore(options.authPool, options.masterKey, 1000);
  const guard = unknownIdGuard("openapi-unknown-key", 600);

  router.post("/open/v1/sync/:entity/bulk", async (req: Request, res: Response, next: NextFunction) => {
    const state = requestState(req);
    const file = path.join(os.tmpdir(), `authhub-bulk-${randomBytes(12).toString("hex")}.ndjson`);
    let client: pg.PoolClient | undefined;
    try {
      const entity = req.params.entity as string;
      if (!(SYNC_ENTITIES as readonly string[]).includes(entity)) {
        throw new AppError("invalid_input", "The path is not valid.", { details: [{ field: "entity", message: `must be one of ${SYNC_ENTITIES.join(", ")}` }] });
      }
      const declared = Number(req.get("content-length") ?? "0");
      if (declared > options.maxBytes) throw new AppError("payload_too_large", `A bulk load is at most ${options.maxBytes} bytes.`);
      const { sha256 } = await spool(req, file, options.maxBytes);
      const { key, nonce, signedAt } = await verifySignedRequest(
        { method: req.method, originalUrl: req.originalUrl, header: (n) => req.get(n), rawBody: Buffer.alloc(0), bodySha256: sha256 },
        store,
        (read) => guard(clientAddress(req), read),
      );
      state.via = "api_key";
      state.apiKey = { apiKeyId: key.id, tenantId: key.tenantId, orgId: key.organizationId };
      if (!key.scopes.includes("sync:write")) throw new AppError("insufficient_scope", "This key lacks the scope sync:write.");
      // The nonce's record and the key's liveness, committed on their own (as for every Open API request),
      // before the rate limit: a refused request is recorded too, so it cannot be replayed once the window frees up.
      const accepted = await options.authPool.query<{ accepted: boolean }>("select authhub_private.begin_api_request($1, $2, $3, $4, to_timestamp($5)) as accepted", [
        key.id,
        key.tenantId,
        nonce,
        TIMESTAMP_WINDOW_SECONDS,
        Math.trunc(signedAt),
      ]);
      if (accepted.rows[0]?.accepted !== true) throw unauthenticated();
      const limit = await options.rateLimits.hitBatched("apikey", key.id, key.rateLimitPerMinute);
      if (!limit.allowed) {
        res.setHeader("Retry-After", String(limit.resetSeconds));
        throw new AppError("rate_limited", "This key is over its rate limit; try again later.");
      }

      client = await options.authPool.connect();
      // The load's own transaction: staging many rows takes longer than a request's statement limit.
      await client.query(
        beginRequestStatement(
          pgSettingsForApiKey({ apiKeyId: key.id, tenantId: key.tenantId, orgId: key.organizationId }, state.traceId, {
            statementTimeoutMs: Math.max(options.limits.statementTimeoutMs, 60_000),
            idleInTransactionTimeoutMs: options.limits.idleInTransactionTimeoutMs,
          }),
        ),
      );
      const jobId = (await client.query<{ id: string }>("select retail_private.sync_bulk_begin($1) as id", [entity])).rows[0]!.id;
      let seq = 1;
      let batch: unknown[] = [];
      const flush = async () => {
        if (batch.length === 0) return;
        await client!.query("select retail_private.sync_bulk_stage($1, $2, $3::jsonb)", [jobId, seq, JSON.stringify(batch)]);
        seq += batch.length;
        batch = [];
      };
      const lines = createInterface({ input: createReadStream(file, { encoding: "utf8" }), crlfDelay: Infinity });
      for await (const line of lines) {
        if (line.trim() === "") continue;
        let row: unknown;
        try {
          row = JSON.parse(line);
        } catch {
          // Kept, so the apply rejects it with the others, by its line.
          row = { line: seq + batch.length, invalid: "not valid JSON" };
        }
        batch.push(row);
        if (batch.length >= STAGE_BATCH) await flush();
      }
      await flush();
      await client.query("select retail_private.sync_bulk_queue($1)", [jobId]);
      await client.query("commit");
      releaseClient(client);
      client = undefined;
      res.status(202).json({ jobId });
    } catch (err) {
      // A refused body is not read to its end: the connection is closed after the answer.
      if (!req.complete) res.setHeader("Connection", "close");
      if (client) await rollbackAndRelease(client, err);
      next(err instanceof AppError ? err : toAppError(err));
    } finally {
      await unlink(file).catch(() => undefined);
    }
  });
  return router;
}
