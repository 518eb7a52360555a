/**
 * How an authenticated identity becomes Postgres settings for one transaction:
 * `role` (from an allowlist, never from the caller verbatim), and the claims as
 * `jwt.claims.*`. The server, the CLI and the tests all go through this, so the
 * settings a policy sees are the same whichever door the request came in by.
 */
import pg from "pg";

export const ROLE_LEVELS = ["USER", "ORG_ADMIN", "TENANT_ADMIN", "SUPER_ADMIN"] as const;
export type RoleLevel = (typeof ROLE_LEVELS)[number];

/** The `roles` claim's values and the Postgres role each selects. Nothing else is accepted. */
export const PG_ROLE_FOR: Record<RoleLevel, string> = {
  USER: "authhub_user",
  ORG_ADMIN: "authhub_org_admin",
  TENANT_ADMIN: "authhub_tenant_admin",
  SUPER_ADMIN: "authhub_super_admin",
};
export const ANONYMOUS_ROLE = "authhub_anonymous";
export const API_CLIENT_ROLE = "authhub_api_client";

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

export function pgSettingsFor(identity: Identity | null, traceId?: string): Record<string, string> {
  const settings: Record<string, string> = {};
  if (traceId) settings["authhub.trace_id"] = traceId;
  if (!identity) {
    settings.role = ANONYMOUS_ROLE;
    return settings;
  }
  settings.role = PG_ROLE_FOR[identity.level];
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
export function pgSettingsForApiKey(key: ApiKeyIdentity, traceId?: string): Record<string, string> {
  const settings: Record<string, string> = { role: API_CLIENT_ROLE, "jwt.claims.api_key_id": key.apiKeyId, "jwt.claims.tenant_id": key.tenantId };
  if (key.orgId) settings["jwt.claims.org_id"] = key.orgId;
  if (traceId) settings["authhub.trace_id"] = traceId;
  return settings;
}

/** The settings for whoever the request state says is calling: a user, an API key, or nobody. */
export function pgSettingsForCaller(caller: { identity: Identity | null; apiKey?: ApiKeyIdentity | null }, traceId?: string): Record<string, string> {
  return caller.apiKey ? pgSettingsForApiKey(caller.apiKey, traceId) : pgSettingsFor(caller.identity, traceId);
}

/**
 * The settings as one `select pg_catalog.set_config(…, true), …` statement, for
 * paths that send a transaction as a single multi-statement query (one round
 * trip). Keys and values are quoted by pg's escapeLiteral.
 */
export function settingsStatement(settings: Record<string, string>): string {
  return `select ${Object.entries(settings)
    .map(([k, v]) => `pg_catalog.set_config(${pg.escapeLiteral(k)}, ${pg.escapeLiteral(v)}, true)`)
    .join(", ")}`;
}

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
