/**
 * Access-token verification (DESIGN.md §5): AuthHub's own ES256 keys, read from
 * the database, plus the JWKS of each configured trusted issuer. The token's
 * unverified `iss` only chooses which key set and rules apply; the signature,
 * algorithm allowlist, issuer, audience and expiry are then all enforced, and
 * the claims are checked for shape before anything reaches SQL.
 */
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from "jose";
import { highestLevel, UUID_RE, type ApiKeyIdentity, type Identity } from "../../db/claims.js";
import type { TrustedIssuer } from "../config.js";
import { AppError } from "../errors.js";
import { ALG, AUDIENCE } from "./signingKeys.js";

/** Asymmetric algorithms only: never `none`, never HS* (a public key must not become an HMAC secret). */
const TRUSTED_ALGORITHMS = ["ES256", "ES384", "RS256", "PS256", "EdDSA"];

/**
 * Reads AuthHub's published public keys (the verifier reloads them every
 * minute, so a retired key drops out within one; see TokenVerifier.ownKeys for
 * unknown kids).
 */
export type OwnKeysLoader = () => Promise<JSONWebKeySet>;

/** The AuthHub user id for an identity provider's user id in a tenant, or null (unknown, suspended, another issuer's). */
export type ExternalUserResolver = (tenantId: string, issuer: string, externalId: string) => Promise<string | null>;

interface KeySetRule {
  own: boolean;
  keys: JWTVerifyGetKey;
  issuer: string;
  audience: string;
  /** `azp` values that stand in for the audience (a trusted issuer's, when configured). */
  authorizedParties?: string[];
  /** Longest accepted time since `iat` (a trusted issuer's tokens). */
  maxTokenAgeSeconds?: number;
  algorithms: string[];
}

/** Seconds of clock difference tolerated on `exp`, `nbf` and `iat`. */
export const CLOCK_TOLERANCE_SECONDS = 5;

/** How often AuthHub's own keys are reloaded anyway (ms). */
const OWN_KEYS_MAX_AGE_MS = 60_000;

export class TokenVerifier {
  private readonly ownIssuer: string;
  private readonly loadOwnKeys: OwnKeysLoader;
  private ownKeySet: JWTVerifyGetKey | null = null;
  private ownKids = new Set<string>();
  private ownLoadedAt = 0;
  private ownLoading: Promise<void> | null = null;
  private readonly unknownKidCooldownMs: number;
  private readonly trusted = new Map<string, KeySetRule>();
  private readonly resolveExternalUser: ExternalUserResolver;

  constructor(options: {
    issuer: string;
    loadOwnKeys: OwnKeysLoader;
    trustedIssuers: TrustedIssuer[];
    resolveExternalUser: ExternalUserResolver;
    /** After a reload, kids it did not know are answered from memory for this long (ms; default 1000). */
    unknownKidCooldownMs?: number;
  }) {
    this.ownIssuer = options.issuer;
    this.loadOwnKeys = options.loadOwnKeys;
    this.resolveExternalUser = options.resolveExternalUser;
    this.unknownKidCooldownMs = options.unknownKidCooldownMs ?? 1_000;
    for (const t of options.trustedIssuers) {
      this.trusted.set(t.issuer, {
        own: false,
        keys: createRemoteJWKSet(new URL(t.jwksUri), { cooldownDuration: 30_000, cacheMaxAge: 600_000, timeoutDuration: 5_000 }),
        issuer: t.issuer,
        audience: t.audience ?? AUDIENCE,
        ...(t.authorizedParties ? { authorizedParties: t.authorizedParties } : {}),
        maxTokenAgeSeconds: t.maxTokenAgeSeconds,
        algorithms: TRUSTED_ALGORITHMS,
      });
    }
  }

  /**
   * AuthHub's key set, reloaded from the database when it is a minute old, or
   * for a kid it does not know once the last reload is older than the
   * cool-down (so a key rotated in by another instance verifies within a
   * second). Reloads are single-flight: concurrent requests share the one in
   * progress, and until the cool-down ends every unknown kid, however many and
   * however made up, is answered from the set in memory (the negative answer
   * is cached), so a flood of them costs at most one query per cool-down.
   */
  private async ownKeys(kid: string | undefined): Promise<JWTVerifyGetKey> {
    const age = Date.now() - this.ownLoadedAt;
    const unknownKid = kid !== undefined && !this.ownKids.has(kid);
    if (!this.ownKeySet || age > OWN_KEYS_MAX_AGE_MS || (unknownKid && age > this.unknownKidCooldownMs)) {
      this.ownLoading ??= this.reloadOwnKeys().finally(() => {
        this.ownLoading = null;
      });
      await this.ownLoading;
    }
    return this.ownKeySet!;
  }

  private async reloadOwnKeys(): Promise<void> {
    const jwks = await this.loadOwnKeys();
    this.ownKeySet = createLocalJWKSet(jwks);
    this.ownKids = new Set(jwks.keys.map((k) => k.kid).filter((k): k is string => typeof k === "string"));
    this.ownLoadedAt = Date.now();
  }

  /**
   * A trusted identity provider's token presented for token exchange (RFC 8693
   * subject_token): its issuer and subject, once signature, algorithm, issuer,
   * audience and expiry hold. AuthHub's own tokens are not accepted here.
   */
  async verifySubjectToken(token: string): Promise<{ issuer: string; subject: string }> {
    let iss: unknown;
    try {
      iss = decodeJwt(token).iss;
    } catch {
      throw unauthenticated("The subject token is not a JWT.");
    }
    const rule = typeof iss === "string" ? this.trusted.get(iss) : undefined;
    if (!rule) throw unauthenticated("The subject token's issuer is not trusted.");
    // However long the issuer let it live, a subject token older than its issuer's maximum age is not exchanged.
    const payload = await verifyWith(token, rule);
    if (typeof payload.sub !== "string" || !EXTERNAL_ID_RE.test(payload.sub)) {
      throw unauthenticated("The subject token's subject is not a valid external user id.");
    }
    return { issuer: rule.issuer, subject: payload.sub };
  }

  /** Who a bearer token speaks for: a user (Identity), or an API key (its client-credentials token), or an `unauthenticated` error saying only what a client can fix. */
  async verify(token: string): Promise<Identity | { apiKey: ApiKeyIdentity }> {
    let unverified: JWTPayload;
    let kid: string | undefined;
    try {
      unverified = decodeJwt(token);
      kid = decodeProtectedHeader(token).kid;
    } catch {
      throw unauthenticated("The bearer token is malformed.");
    }
    const iss = unverified.iss;
    let rule: KeySetRule | undefined;
    if (iss === this.ownIssuer) {
      rule = { own: true, keys: await this.ownKeys(kid), issuer: this.ownIssuer, audience: AUDIENCE, algorithms: [ALG] };
    } else if (typeof iss === "string") {
      rule = this.trusted.get(iss);
    }
    if (!rule) throw unauthenticated("The token's issuer is not trusted.");

    const payload = await verifyWith(token, rule);
    if (rule.own && (payload as Record<string, unknown>).api_key_id !== undefined) return { apiKey: apiKeyFromClaims(payload) };
    if (rule.own) {
      const identity = identityFromClaims(payload, payload.sub);
      // AuthHub's own token naming a login (a uuid sid): SQL checks the login is live.
      return { ...identity, loginId: identity.sessionId && UUID_RE.test(identity.sessionId) ? identity.sessionId.toLowerCase() : null };
    }
    // A trusted issuer names its own user id: it speaks only for the AuthHub user
    // holding that external_id in the tenant it names (DESIGN.md §5).
    const externalId = payload.sub;
    const tenantId = (payload as Record<string, unknown>).tenant_id;
    if (typeof externalId !== "string" || !EXTERNAL_ID_RE.test(externalId)) {
      throw unauthenticated("The token's subject is not a valid external user id.");
    }
    if (typeof tenantId !== "string" || !UUID_RE.test(tenantId)) throw unauthenticated("The token carries no valid tenant_id.");
    const userId = await this.resolveExternalUser(tenantId.toLowerCase(), rule.issuer, externalId);
    if (!userId) throw unauthenticated("The token's user is not known to AuthHub.");
    return identityFromClaims(payload, userId);
  }
}

/**
 * Signature, algorithm, issuer, audience (or an authorized party standing in
 * for it), expiry, issue time and required claims; errors say only what a
 * client can fix.
 */
async function verifyWith(token: string, rule: KeySetRule): Promise<JWTPayload> {
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, rule.keys, {
      issuer: rule.issuer,
      algorithms: rule.algorithms,
      requiredClaims: ["exp", "iat", "sub"],
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      ...(rule.maxTokenAgeSeconds !== undefined ? { maxTokenAge: rule.maxTokenAgeSeconds } : {}),
    }));
  } catch (cause) {
    const code = (cause as { code?: string }).code;
    const claim = (cause as { claim?: string }).claim;
    const message =
      code === "ERR_JWT_EXPIRED"
        ? claim === "iat"
          ? "The token is too old to be accepted."
          : "The token has expired."
        : code === "ERR_JWT_CLAIM_VALIDATION_FAILED"
          ? claim === "iat"
            ? "The token is issued in the future."
            : "The token is not meant for AuthHub or is missing required claims."
          : "The token's signature could not be verified.";
    throw unauthenticated(message, cause);
  }
  // jose checks `iat` only against a maximum age: a token dated ahead of the
  // clock (beyond the tolerance) would otherwise outlive every maximum age.
  if (typeof payload.iat !== "number" || payload.iat > Date.now() / 1000 + CLOCK_TOLERANCE_SECONDS) {
    throw unauthenticated("The token is issued in the future.");
  }
  if (!meantForAuthHub(payload, rule)) throw unauthenticated("The token is not meant for AuthHub or is missing required claims.");
  return payload;
}

/** Its `aud` names the audience, or (for an issuer that lists authorized parties) its `azp` is one of them. */
function meantForAuthHub(payload: JWTPayload, rule: KeySetRule): boolean {
  const audiences = typeof payload.aud === "string" ? [payload.aud] : Array.isArray(payload.aud) ? payload.aud : [];
  if (audiences.includes(rule.audience)) return true;
  const azp = (payload as Record<string, unknown>).azp;
  return rule.authorizedParties !== undefined && typeof azp === "string" && rule.authorizedParties.includes(azp);
}

function unauthenticated(message: string, cause?: unknown): AppError {
  return new AppError("unauthenticated", message, { cause });
}

const optionalString = (v: unknown, max: number): string | null => (typeof v === "string" && v.length > 0 && v.length <= max ? v : null);

const EXTERNAL_ID_RE = /^[^\s\p{Cc}]{1,255}$/u;

/**
 * Only these claims are read; any other claim (`role`, a setting name…) is
 * ignored. `sub` is the AuthHub user id: the token's own, or the one its
 * external subject resolved to.
 */
export function identityFromClaims(payload: JWTPayload, sub: unknown): Identity {
  const { tenant_id: tenantId, org_id: orgId, roles } = payload as Record<string, unknown>;
  if (typeof sub !== "string" || !UUID_RE.test(sub)) throw unauthenticated("The token's subject is not an AuthHub user id.");
  if (typeof tenantId !== "string" || !UUID_RE.test(tenantId)) throw unauthenticated("The token carries no valid tenant_id.");
  if (orgId !== undefined && orgId !== null && (typeof orgId !== "string" || !UUID_RE.test(orgId))) {
    throw unauthenticated("The token's org_id is not valid.");
  }
  if (!Array.isArray(roles) || roles.length === 0 || roles.length > 10) throw unauthenticated("The token carries no roles.");
  const level = highestLevel(roles);
  if (!level) throw unauthenticated("The token's roles are not recognised.");
  return {
    userId: sub.toLowerCase(),
    tenantId: tenantId.toLowerCase(),
    orgId: typeof orgId === "string" ? orgId.toLowerCase() : null,
    level,
    sessionId: optionalString(payload.sid, 200),
    tokenId: optionalString(payload.jti, 200),
    issuer: optionalString(payload.iss, 500),
  };
}

/** An API key's access token: its row id, tenant and organization (its scopes are read from its row, live). */
function apiKeyFromClaims(payload: JWTPayload): ApiKeyIdentity {
  const { api_key_id: apiKeyId, tenant_id: tenantId, org_id: orgId } = payload as Record<string, unknown>;
  if (typeof apiKeyId !== "string" || !UUID_RE.test(apiKeyId)) throw unauthenticated("The token's api_key_id is not valid.");
  if (typeof tenantId !== "string" || !UUID_RE.test(tenantId)) throw unauthenticated("The token carries no valid tenant_id.");
  if (orgId !== undefined && orgId !== null && (typeof orgId !== "string" || !UUID_RE.test(orgId))) throw unauthenticated("The token's org_id is not valid.");
  return { apiKeyId: apiKeyId.toLowerCase(), tenantId: tenantId.toLowerCase(), orgId: typeof orgId === "string" ? orgId.toLowerCase() : null };
}
