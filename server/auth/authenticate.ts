/**
 * Establishes who is calling (DESIGN.md §5) and records it in the request state:
 * - gateway mode (only when AUTHHUB_GATEWAY_SECRET is set): a correct
 *   X-Gateway-Token lets X-User-Id, X-Tenant-Id and X-Roles speak for the user;
 *   without the token those headers are ignored, and a wrong token is refused;
 * - otherwise `Authorization: Bearer <jwt>`, verified by TokenVerifier;
 * - otherwise anonymous.
 * Authority is then confirmed by SQL on every statement; this only says who.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { NextFunction, Request, Response } from "express";
import { highestLevel, UUID_RE, type Identity } from "../../db/claims.js";
import { AppError } from "../errors.js";
import { authentications } from "../metrics.js";
import { requestState } from "../requestState.js";
import type { TokenVerifier } from "./verify.js";

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();

/** Constant-time comparison that does not leak the secret's length. */
export function secretsEqual(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

function gatewayIdentity(req: Request): Identity {
  const userId = req.get("x-user-id")?.trim() ?? "";
  const tenantId = req.get("x-tenant-id")?.trim() ?? "";
  const roles = (req.get("x-roles") ?? "")
    .split(",")
    .map((r) => r.trim())
    .filter(Boolean);
  if (!UUID_RE.test(userId) || !UUID_RE.test(tenantId)) {
    throw new AppError("unauthenticated", "Gateway requests need X-User-Id and X-Tenant-Id as UUIDs.");
  }
  const level = highestLevel(roles);
  if (!level) throw new AppError("unauthenticated", "Gateway requests need X-Roles naming a known role.");
  return { userId: userId.toLowerCase(), tenantId: tenantId.toLowerCase(), level };
}

export function authenticate(options: { verifier: TokenVerifier; gatewaySecret: string | null }) {
  return async (req: Request, _res: Response, next: NextFunction) => {
    const state = requestState(req);
    try {
      const gatewayToken = req.get("x-gateway-token");
      if (options.gatewaySecret !== null && gatewayToken !== undefined) {
        if (!secretsEqual(gatewayToken, options.gatewaySecret)) {
          throw new AppError("unauthenticated", "The gateway token is not valid.");
        }
        state.identity = gatewayIdentity(req);
        state.via = "gateway";
        authentications.inc({ method: "gateway", outcome: "ok" });
        return next();
      }
      const authorization = req.get("authorization");
      if (authorization !== undefined) {
        const match = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*)$/.exec(authorization.trim());
        if (!match) throw new AppError("unauthenticated", "The Authorization header must be `Bearer <token>`.");
        const caller = await options.verifier.verify(match[1]!);
        if ("apiKey" in caller) state.apiKey = caller.apiKey;
        else state.identity = caller;
        state.via = "bearer";
        authentications.inc({ method: "bearer", outcome: "ok" });
      }
      next();
    } catch (err) {
      authentications.inc({ method: req.get("x-gateway-token") !== undefined && options.gatewaySecret !== null ? "gateway" : "bearer", outcome: "refused" });
      next(err);
    }
  };
}
