/**
 * POST /webhooks/clerk/:endpointId (DESIGN.md §7, issue 7): a Clerk (Svix)
 * delivery, verified on the raw body with the endpoint's own secret by the
 * `svix` package (svix-id, svix-timestamp within 300 s either way, one or more
 * `v1,` signatures), then stored in the inbox and queued in one transaction
 * (authhub_private.accept_webhook). Answers 2xx at once; a redelivered id is a
 * 2xx that changes nothing; a bad signature is 400 with nothing stored. A body
 * over the limit is 413 before anything is parsed.
 */
import express, { type NextFunction, type Request, type Response } from "express";
import type pg from "pg";
import { Webhook, WebhookVerificationError } from "svix";
import { clientAddress } from "../auth/authApi.js";
import { UUID_RE } from "../../db/claims.js";
import { entityOf } from "../../db/clerkEntity.js";
import type { MasterKey } from "../auth/masterKey.js";
import { ShortCache, unknownIdGuard } from "../lookups.js";
import { AppError } from "../errors.js";

export interface ClerkWebhookOptions {
  authPool: pg.Pool;
  masterKey: MasterKey;
  maxBodyBytes: number;
}

export function clerkWebhookRouter(options: ClerkWebhookOptions): express.Router {
  const router = express.Router();
  const endpoints = new ShortCache<{ enabled: boolean; secret: string } | null>(1000);
  const load = (id: string) =>
    options.authPool
      .query<{ enabled: boolean; secret_encrypted: string }>("select enabled, secret_encrypted from authhub_private.webhook_endpoint_for_delivery($1)", [id])
      .then(({ rows }) => (rows[0] ? { enabled: rows[0].enabled, secret: options.masterKey.decrypt(rows[0].secret_encrypted) } : null));
  // An address that keeps naming endpoints that do not exist (300 a minute) is
  // refused without a lookup each.
  const guard = unknownIdGuard("webhook-unknown-endpoint", 300);

  router.post("/webhooks/clerk/:endpointId", express.raw({ type: () => true, limit: options.maxBodyBytes }), async (req: Request, res: Response, next: NextFunction) => {
    try {
      const id = String(req.params.endpointId);
      const found = await guard(clientAddress(req), async () => (UUID_RE.test(id) ? endpoints.get(id.toLowerCase(), () => load(id.toLowerCase())) : null));
      if (!found || !found.enabled) throw new AppError("not_found", "No such webhook endpoint.");
      const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const headers = { "svix-id": req.get("svix-id") ?? "", "svix-timestamp": req.get("svix-timestamp") ?? "", "svix-signature": req.get("svix-signature") ?? "" };
      let event: unknown = null;
      try {
        event = new Webhook(found.secret).verify(body, headers);
      } catch (err) {
        // A valid signature over a body that is not JSON is a delivery all the same: recorded, then failed.
        if (!(err instanceof SyntaxError) || err instanceof WebhookVerificationError) {
          throw new AppError("invalid_signature", "The webhook signature is not valid.");
        }
      }
      // What ids the inbox takes is SQL's: its format is a constraint (400 invalid_input), and
      // `reconcile:` ids, the reconciliation job's own, are refused by accept_webhook (403).
      const { type, entity } = entityOf(event);
      const { rows } = await options.authPool.query<{ stored: boolean }>("select authhub_private.accept_webhook($1, $2, $3, $4, $5) as stored", [
        id.toLowerCase(),
        headers["svix-id"],
        type,
        entity,
        // Text as received (a NUL byte, which no text column holds, is replaced).
        body.toString("utf8").replaceAll("\u0000", "\uFFFD"),
      ]);
      res.status(rows[0]?.stored ? 202 : 200).json({ received: true, duplicate: !rows[0]?.stored });
    } catch (err) {
      next(err);
    }
  });
  return router;
}
