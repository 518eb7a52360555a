/**
 * How an authenticated identity becomes Postgres settings for one transaction:
 * the claims as `jwt.claims.*`, then `authhub_private.begin_request()`, which
 * resolves the caller's live authority once and names the role to run as (the
 * least of the claim and the database's live level). The server, the tests and
 * the benchmarks all go through this, so the settings a policy sees are the same
 * whichever door the request came in by.
 */
import pg from "pg";

export const ROLE_LEVELS = ["USER", "ORG_ADMIN", "TENANT_ADMIN", "SUPER_ADMIN"] as const;
export type RoleLevel = (typeof ROLE_LEVELS)[number];

/** An Open API key, as the server knows it once a request's signature holds. */
export interface ApiKeyIdentity {
  /** The key's row id (not the public `ak_…` id). */
  apiKeyId: string;
  tenantId: string;
  orgId: string | null;
}

export interface Identity {
  userId: string;
  tenantId: string;
  orgId?: string | null;
  /** The highest level named in the token's `roles` claim. */
  level: RoleLevel;
  sessionId?: string | null;
  /**
   * The AuthHub login (refresh family) an access token from /auth/token belongs
   * to: SQL refuses the token once that login has ended. Null for tokens tied to
   * no login (the CLI's, a trusted issuer's).
   */
  loginId?: string | null;
  tokenId?: string | null;
  issuer?: string | null;
}

export const isRoleLevel = (v: unknown): v is RoleLevel => typeof v === "string" && (ROLE_LEVELS as readonly string[]).includes(v);

/** The highest known level among `roles`, or null when none is known. */
export function highestLevel(roles: readonly unknown[]): RoleLevel | null {
  let best: RoleLevel | null = null;
  for (const r of roles) {
    if (isRoleLevel(r) && (best === null || ROLE_LEVELS.indexOf(r) > ROLE_LEVELS.indexOf(best))) best = r;
  }
  return best;
}

/**
 * Bounds on one request's transaction, applied with its settings: no statement
 * runs longer, and a transaction left idle (a stalled handler) is ended by the
 * server, so no request can pin a pooled connection for long.
 */
export interface TransactionLimits {
  statementTimeoutMs: number;
  idleInTransactionTimeoutMs: number;
}

function limitSettings(limits: TransactionLimits | undefined): Record<string, string> {
  return limits ? { statement_timeout: String(limits.statementTimeoutMs), idle_in_transaction_session_timeout: String(limits.idleInTransactionTimeoutMs) } : {};
}

/**
 * A user's (or, with no identity, an anonymous caller's) claims. The level is
 * the token's claim; begin_request caps it by the database's live level.
 */
export function pgSettingsFor(identity: Identity | null, traceId?: string, limits?: TransactionLimits): Record<string, string> {
  const settings: Record<string, string> = limitSettings(limits);
  if (traceId) settings["authhub.trace_id"] = traceId;
  if (!identity) return settings;
  settings["jwt.claims.sub"] = identity.userId;
  settings["jwt.claims.tenant_id"] = identity.tenantId;
  settings["jwt.claims.roles"] = JSON.stringify([identity.level]);
  // The same, as one value SQL can cast without parsing JSON (authhub.current_claimed_level()).
  settings["jwt.claims.level"] = identity.level;
  if (identity.orgId) settings["jwt.claims.org_id"] = identity.orgId;
  if (identity.sessionId) settings["jwt.claims.sid"] = identity.sessionId;
  if (identity.loginId) settings["authhub.session_id"] = identity.loginId;
  if (identity.tokenId) settings["jwt.claims.jti"] = identity.tokenId;
  if (identity.issuer) settings["jwt.claims.iss"] = identity.issuer;
  return settings;
}

/**
 * A key's request: the API client role, the key and its tenant (and
 * organization). Never `jwt.claims.sub`: a key is not a user, and SQL answers
 * for it from the key's own row (its scopes, its subtree).
 */
export function pgSettingsForApiKey(key: ApiKeyIdentity, traceId?: string, limits?: TransactionLimits): Record<string, string> {
  const settings: Record<string, string> = { ...limitSettings(limits), "jwt.claims.api_key_id": key.apiKeyId, "jwt.claims.tenant_id": key.tenantId };
  if (key.orgId) settings["jwt.claims.org_id"] = key.orgId;
  if (traceId) settings["authhub.trace_id"] = traceId;
  return settings;
}

/** The settings for whoever the request state says is calling: a user, an API key, or nobody. */
export function pgSettingsForCaller(caller: { identity: Identity | null; apiKey?: ApiKeyIdentity | null }, traceId?: string, limits?: TransactionLimits): Record<string, string> {
  return caller.apiKey ? pgSettingsForApiKey(caller.apiKey, traceId, limits) : pgSettingsFor(caller.identity, traceId, limits);
}

/**
 * The settings as one `select pg_catalog.set_config(…, true), …` statement, for
 * paths that send a transaction as a single multi-statement query (one round
 * trip). Keys and values are quoted by pg's escapeLiteral. Settings naming a
 * `role` (the worker's jobs, schema introspection) switch to it directly.
 */
export function settingsStatement(settings: Record<string, string>): string {
  const entries = Object.entries(settings);
  if (entries.length === 0) return "select";
  return `select ${entries.map(([k, v]) => `pg_catalog.set_config(${pg.escapeLiteral(k)}, ${pg.escapeLiteral(v)}, true)`).join(", ")}`;
}

/** The statement that resolves the caller's authority and switches to its role (after the claims are set). */
export const RESOLVE_ROLE = "select pg_catalog.set_config('role', authhub_private.begin_request(), true)";

/**
 * A request's settings and its authority as statements to run inside its
 * transaction: the claims, then the role begin_request resolves. Settings that
 * name a role themselves (introspection) skip the resolution.
 */
export function requestSettingsStatements(settings: Record<string, string>): string {
  return "role" in settings ? settingsStatement(settings) : `${settingsStatement(settings)}; ${RESOLVE_ROLE}`;
}

/** Opens a request's transaction in one round trip: begin, settings, authority. */
export function beginRequestStatement(settings: Record<string, string>): string {
  return `begin; ${requestSettingsStatements(settings)}`;
}

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
