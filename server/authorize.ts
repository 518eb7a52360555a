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
import pg from "pg";
import { pgSettingsForCaller, requestSettingsStatements, UUID_RE, type TransactionLimits } from "../db/claims.js";
import { AppError, type FieldProblem } from "./errors.js";
import { requestState, type RequestState } from "./requestState.js";

const { escapeLiteral } = pg;

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

/**
 * One round trip: the request's settings and the checks as a single
 * multi-statement query, which PostgreSQL runs in one implicit transaction (so
 * the transaction-local settings hold for the checks). Every value is validated
 * above and quoted with escapeLiteral; the decision API is called per request by
 * sibling services, so its latency is the product.
 */
async function decide(pool: pg.Pool, state: RequestState, checks: Check[], limits: TransactionLimits): Promise<(boolean | null)[]> {
  const lit = (v: string) => escapeLiteral(v);
  const values = checks.map((c, i) => `(${lit(c.permission)}, ${c.organizationId === null ? "null" : lit(c.organizationId)}::uuid, ${i})`).join(", ");
  const text =
    `${requestSettingsStatements(pgSettingsForCaller(state, state.traceId, limits))};\n` +
    `select authhub_private.authorize(c.permission, c.organization_id) as allowed ` +
    `from (values ${values}) as c(permission, organization_id, n) order by c.n`;
  const results = (await pool.query(text)) as unknown as pg.QueryResult<{ allowed: boolean | null }>[];
  return results.at(-1)!.rows.map((r) => r.allowed);
}

export function authorizeHandler(pool: pg.Pool, limits: TransactionLimits) {
  return async (req: Request, res: Response, next: NextFunction) => {
    try {
      const state = requestState(req);
      if (!state.identity && !state.apiKey) throw new AppError("unauthenticated", "A bearer token is required.");
      const { checks, batch } = parseAuthorizeBody(req.body);
      const allowed = await decide(pool, state, checks, limits);
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
