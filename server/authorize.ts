/**
 * POST /v1/authorize: sibling services ask "may the caller do P (here)?".
 * The caller is whoever the bearer token (or gateway headers) names; the answer
 * comes from authhub_private.authorize, the same SQL the policies use.
 *
 *   { "permission": "user:write", "organizationId": "…" }   → { "allowed": true }
 *   { "checks": [ { "permission": …, "organizationId"?: … }, … up to 100 ] }
 *                                                           → { "results": [ { "allowed": … }, … ] }
 */
import express, { type NextFunction, type Request, type Response } from "express";
import type pg from "pg";
import { UUID_RE } from "../db/claims.js";
import { AppError, type FieldProblem } from "./errors.js";
import { requestState } from "./requestState.js";
import { withRequestTransaction } from "./requestTransaction.js";

export const MAX_CHECKS = 100;

interface Check {
  permission: string;
  organizationId: string | null;
}

const PERMISSION_RE = /^[a-z]+:[a-z_]+$/;

function parseCheck(value: unknown, path: string, problems: FieldProblem[]): Check | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    problems.push({ field: path || "body", message: "must be an object" });
    return null;
  }
  const { permission, organizationId, ...rest } = value as Record<string, unknown>;
  const at = (name: string) => (path ? `${path}.${name}` : name);
  for (const extra of Object.keys(rest)) problems.push({ field: at(extra), message: "is not a known field" });
  if (typeof permission !== "string" || permission.length > 64 || !PERMISSION_RE.test(permission)) {
    problems.push({ field: at("permission"), message: "must be a permission such as user:read" });
  }
  if (organizationId !== undefined && organizationId !== null && (typeof organizationId !== "string" || !UUID_RE.test(organizationId))) {
    problems.push({ field: at("organizationId"), message: "must be a UUID" });
  }
  return typeof permission === "string" ? { permission, organizationId: typeof organizationId === "string" ? organizationId.toLowerCase() : null } : null;
}

/** The checks a body asks for, and whether it was the single or the batch form. */
export function parseAuthorizeBody(body: unknown): { checks: Check[]; batch: boolean } {
  const problems: FieldProblem[] = [];
  let checks: (Check | null)[] = [];
  let batch = false;
  if (typeof body === "object" && body !== null && !Array.isArray(body) && "checks" in body) {
    batch = true;
    const { checks: list, ...rest } = body as Record<string, unknown>;
    for (const extra of Object.keys(rest)) problems.push({ field: extra, message: "is not a known field" });
    if (!Array.isArray(list) || list.length === 0 || list.length > MAX_CHECKS) {
      problems.push({ field: "checks", message: `must be a list of 1 to ${MAX_CHECKS} checks` });
    } else {
      checks = list.map((c, i) => parseCheck(c, `checks[${i}]`, problems));
    }
  } else {
    checks = [parseCheck(body, "", problems)];
  }
  if (problems.length > 0) throw new AppError("invalid_input", "The request body is not a valid authorization query.", { details: problems });
  return { checks: checks as Check[], batch };
}

export function authorizeHandler(pool: pg.Pool) {
  return async (req: Request, res: Response, next: NextFunction) => {
    try {
      const state = requestState(req);
      if (!state.identity) throw new AppError("unauthenticated", "A bearer token is required.");
      const { checks, batch } = parseAuthorizeBody(req.body);
      const allowed = await withRequestTransaction(pool, state, async (client) => {
        const { rows } = await client.query<{ allowed: boolean | null }>({
          name: "authhub_authorize",
          text: `select authhub_private.authorize(c.permission, c.organization_id) as allowed
                 from unnest($1::text[], $2::uuid[]) with ordinality as c(permission, organization_id, n)
                 order by c.n`,
          values: [checks.map((c) => c.permission), checks.map((c) => c.organizationId)],
        });
        return rows.map((r) => r.allowed);
      });
      const unknown = allowed.flatMap((a, i) => (a === null ? [i] : []));
      if (unknown.length > 0) {
        throw new AppError("invalid_input", "Unknown permission.", {
          details: unknown.map((i) => ({ field: batch ? `checks[${i}].permission` : "permission", message: "is not in the permission catalogue" })),
        });
      }
      res.json(batch ? { results: allowed.map((a) => ({ allowed: a === true })) } : { allowed: allowed[0] === true });
    } catch (err) {
      next(err);
    }
  };
}

export const authorizeBodyParser = express.json({ limit: "32kb", strict: true });
