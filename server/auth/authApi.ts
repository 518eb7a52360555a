/**
 * The Auth API (DESIGN.md §5):
 *
 *   GET  /.well-known/jwks.json               AuthHub's public signing keys
 *   GET  /.well-known/openid-configuration    where everything is
 *   POST /auth/token                          RFC 8693 token exchange, refresh_token
 *   POST /auth/revoke                         RFC 7009, revokes a login (refresh family)
 *
 * /auth/* answer in OAuth's shape: `{"error": "invalid_grant", "error_description": …}`.
 * Clients are public (no client authentication): possession of a subject token
 * or a refresh token is what counts. Everything about users, tenants and
 * sessions is decided in SQL by definer functions that answer a refusal the
 * same way whichever part failed, so nothing here can tell an unknown user
 * from a suspended one or a tenant they do not belong to.
 */
import express, { type NextFunction, type Request, type Response } from "express";
import { createHash, createHmac, randomBytes } from "node:crypto";
import { isIPv4, isIPv6 } from "node:net";
import type pg from "pg";
import type { Identity, RoleLevel } from "../../db/claims.js";
import type { Config } from "../config.js";
import { anySecretMatches, ApiKeyStore } from "../openapi/keys.js";
import type { RateLimits } from "../rateLimit.js";
import { requestState } from "../requestState.js";
import type { MasterKey } from "./masterKey.js";
import { ActiveKeySigner } from "./signingKeys.js";
import type { TokenVerifier } from "./verify.js";

export const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";
/** Subject tokens are JWTs from a trusted issuer, however the client labels them. */
const SUBJECT_TOKEN_TYPES = new Set(["urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token", ACCESS_TOKEN_TYPE]);
/** `rt_` + 32 random bytes, base64url. */
const REFRESH_TOKEN_RE = /^rt_[A-Za-z0-9_-]{43}$/;
/** A client retrying a refresh within this many seconds gets the same successor. */
const REFRESH_RETRY_GRACE_SECONDS = 10;
const MAX_TOKEN_LENGTH = 16_384;

export class OAuthError extends Error {
  constructor(
    readonly error: string,
    readonly description: string,
    readonly status = 400,
    readonly retryAfter?: number,
  ) {
    super(description);
    this.name = "OAuthError";
  }
}

export interface AuthApiDeps {
  config: Config;
  authPool: pg.Pool;
  masterKey: MasterKey;
  verifier: TokenVerifier;
  rateLimits: RateLimits;
}

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest();
const newRefreshToken = () => `rt_${randomBytes(32).toString("base64url")}`;

/**
 * The successor of a refresh token: derived, so a retry derives the same one,
 * and stored only hashed. One candidate per master key the server holds
 * (current first), so a retry still finds its successor across a master-key
 * rotation or a rolling deploy.
 */
function successorsOf(token: string, successorKeys: Buffer[]): string[] {
  return successorKeys.map((key) => `rt_${createHmac("sha256", key).update(token, "utf8").digest("base64url")}`);
}

/**
 * The address a client is counted under: Express's `req.ip` (the TCP peer, or
 * with AUTHHUB_TRUST_PROXY what the trusted proxies report), parsed strictly:
 * brackets, a port and a zone are dropped, an IPv4-mapped IPv6 address counts as
 * its IPv4 address, an IPv6 host by its /64 (one host can hold a whole /64).
 * Anything that does not parse as an address counts as the TCP peer.
 */
export function clientAddress(req: Pick<Request, "ip" | "socket">): string {
  return canonicalAddress(req.ip) ?? canonicalAddress(req.socket?.remoteAddress) ?? "unknown";
}

function canonicalAddress(raw: string | undefined): string | null {
  if (!raw) return null;
  let host = raw.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(host);
  if (bracketed) host = bracketed[1]!;
  else if (/^[^:]+:\d+$/.test(host)) host = host.slice(0, host.indexOf(":"));
  host = host.split("%")[0]!;
  if (isIPv4(host)) return host;
  if (!isIPv6(host)) return null;
  const groups = ipv6Groups(host);
  // ::ffff:a.b.c.d (in any notation) is an IPv4 client.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return [groups[6]! >> 8, groups[6]! & 255, groups[7]! >> 8, groups[7]! & 255].join(".");
  }
  return `${groups
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(":")}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (an embedded IPv4 tail included). */
function ipv6Groups(address: string): number[] {
  let text = address.toLowerCase();
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4[1]!.split(".").map(Number) as [number, number, number, number];
    text = `${text.slice(0, -v4[1]!.length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const middle = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill("0");
  return [...left, ...middle, ...right].map((g) => parseInt(g, 16));
}

/** One form or JSON parameter: absent → null; repeated or not a string → invalid_request (RFC 6749 §3.2). */
function param(body: Record<string, unknown>, name: string, maxLength = 500): string | null {
  const value = body[name];
  if (value === undefined || value === "") return null;
  if (typeof value !== "string") throw new OAuthError("invalid_request", `The ${name} parameter must be given once, as a string.`);
  if (value.length > maxLength) throw new OAuthError("invalid_request", `The ${name} parameter is too long.`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new OAuthError("invalid_request", `The ${name} parameter contains control characters.`);
  return value;
}

function requiredParam(body: Record<string, unknown>, name: string, maxLength?: number): string {
  const value = param(body, name, maxLength);
  if (value === null) throw new OAuthError("invalid_request", `The ${name} parameter is required.`);
  return value;
}

interface SessionRow {
  tenant_id: string;
  user_id: string;
  organization_id: string | null;
  level: RoleLevel;
  family_id: string;
  signing_kid: string;
}

const bodyParsers = [express.urlencoded({ extended: false, limit: "32kb" }), express.json({ limit: "32kb" })];

export function authApiRouter(deps: AuthApiDeps): express.Router {
  const { config, authPool, verifier } = deps;
  const base = config.issuer.replace(/\/+$/, "");
  const signer = new ActiveKeySigner(authPool, deps.masterKey, { issuer: config.issuer, ttlSeconds: config.accessTokenTtlSeconds });
  const successorKeys = deps.masterKey.deriveAll("refresh-token-successor");
  const apiKeys = new ApiKeyStore(authPool, deps.masterKey);
  const trustedIssuers = config.trustedIssuers.map((t) => t.issuer);
  let jwksCache: { at: number; body: { keys: Record<string, unknown>[] } } | null = null;
  const refreshTtl = `${config.refreshTokenTtlSeconds} seconds`;
  const sessionMaxAge = `${config.sessionMaxAgeSeconds} seconds`;
  const router = express.Router();

  router.get("/.well-known/jwks.json", async (_req, res, next) => {
    try {
      // Read at most once a second per server, however often it is asked.
      if (!jwksCache || Date.now() - jwksCache.at > 1000) {
        const { rows } = await authPool.query<{ jwk: Record<string, unknown> }>("select authhub_private.public_signing_keys() as jwk");
        // Public members only, whatever the row holds (the table's check refuses private ones too).
        const keys = rows.map(({ jwk }) => Object.fromEntries(["kty", "crv", "x", "y", "kid", "alg", "use"].filter((k) => k in jwk).map((k) => [k, jwk[k]])));
        jwksCache = { at: Date.now(), body: { keys } };
      }
      res.setHeader("Cache-Control", "public, max-age=60");
      res.json(jwksCache.body);
    } catch (err) {
      next(err);
    }
  });

  router.get("/.well-known/openid-configuration", (_req, res) => {
    res.setHeader("Cache-Control", "public, max-age=300");
    res.json({
      issuer: config.issuer,
      jwks_uri: `${base}/.well-known/jwks.json`,
      token_endpoint: `${base}/auth/token`,
      revocation_endpoint: `${base}/auth/revoke`,
      grant_types_supported: [TOKEN_EXCHANGE, "refresh_token", "client_credentials"],
      token_endpoint_auth_methods_supported: ["none", "client_secret_basic", "client_secret_post"],
      revocation_endpoint_auth_methods_supported: ["none"],
      subject_token_types_supported: [...SUBJECT_TOKEN_TYPES],
      access_token_signing_alg_values_supported: ["ES256"],
    });
  });

  /** One hit in a per-minute bucket; over the limit → 429 with Retry-After. */
  async function limit(kind: string, key: string, max: number) {
    const decision = await deps.rateLimits.hit(kind, key, max);
    if (!decision.allowed) {
      throw new OAuthError("rate_limited", "Too many token requests; try again later.", 429, decision.resetSeconds);
    }
  }
  const digest = (key: string) => sha256(key).toString("base64url");

  async function tokenAnswer(res: Response, row: SessionRow, refreshToken: string) {
    const identity: Identity = { userId: row.user_id, tenantId: row.tenant_id, orgId: row.organization_id, level: row.level, sessionId: row.family_id };
    const { token } = await signer.sign(row.signing_kid, identity);
    res.json({
      access_token: token,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: "Bearer",
      expires_in: config.accessTokenTtlSeconds,
      refresh_token: refreshToken,
    });
  }

  async function exchange(req: Request, res: Response, body: Record<string, unknown>, ipLimit: Promise<void>) {
    const subjectToken = requiredParam(body, "subject_token", MAX_TOKEN_LENGTH);
    const subjectTokenType = requiredParam(body, "subject_token_type");
    if (!SUBJECT_TOKEN_TYPES.has(subjectTokenType)) {
      throw new OAuthError("invalid_request", "subject_token_type must name a JWT (urn:ietf:params:oauth:token-type:jwt, id_token or access_token).");
    }
    const requested = param(body, "requested_token_type");
    if (requested !== null && requested !== ACCESS_TOKEN_TYPE) {
      throw new OAuthError("invalid_request", `Only ${ACCESS_TOKEN_TYPE} can be requested.`);
    }
    const tenant = requiredParam(body, "tenant", 100);
    const organization = param(body, "organization", 100);
    // The address's limit is counted while the subject token is verified.
    const [, subject] = await Promise.all([
      ipLimit,
      verifier.verifySubjectToken(subjectToken).catch((err: Error) => {
        throw new OAuthError("invalid_grant", err.message);
      }),
    ]);
    await limit("auth-subject", digest(`${subject.issuer} ${subject.subject}`), config.tokenRateLimit.perSubject);
    const refreshToken = newRefreshToken();
    const { rows } = await authPool.query<SessionRow>("select * from authhub_private.start_session($1, $2, $3, $4, $5, $6, $7::interval, $8::interval, $9)", [
      tenant,
      organization,
      subject.subject,
      subject.issuer,
      trustedIssuers,
      sha256(refreshToken),
      refreshTtl,
      sessionMaxAge,
      requestState(req).traceId,
    ]);
    if (!rows[0]) throw new OAuthError("invalid_target", "No token can be issued for this subject in the tenant or organization requested.");
    await tokenAnswer(res, rows[0], refreshToken);
  }

  async function refresh(req: Request, res: Response, body: Record<string, unknown>, ipLimit: Promise<void>) {
    const token = requiredParam(body, "refresh_token");
    const invalid = new OAuthError("invalid_grant", "The refresh token is invalid, expired or revoked.");
    if (!REFRESH_TOKEN_RE.test(token)) throw invalid;
    const hash = sha256(token);
    // Counted per login (rotation makes a new token every time, the login stays),
    // found while the address's limit is counted.
    const [, found] = await Promise.all([ipLimit, authPool.query<{ id: string | null }>("select authhub_private.refresh_token_family($1) as id", [hash])]);
    const family = found.rows[0]?.id;
    if (!family) throw invalid;
    await limit("auth-refresh", family, config.tokenRateLimit.perSubject);
    const successors = successorsOf(token, successorKeys);
    const { rows } = await authPool.query<SessionRow & { outcome: string; successor: number | null }>(
      "select * from authhub_private.rotate_refresh_token($1, $2, $3, $4::interval, $5::interval, $6)",
      [hash, successors.map(sha256), trustedIssuers, refreshTtl, `${REFRESH_RETRY_GRACE_SECONDS} seconds`, requestState(req).traceId],
    );
    const row = rows[0];
    if (!row || (row.outcome !== "rotated" && row.outcome !== "replayed") || !row.successor) throw invalid;
    await tokenAnswer(res, row, successors[row.successor - 1]!);
  }

  /**
   * client_credentials (RFC 6749 §4.4): an Open API key (client_id `ak_…`,
   * client_secret `sk_…`, in the body or HTTP Basic) gets an access token for
   * GraphQL carrying its tenant, organization and scopes; no refresh token.
   * SQL answers for the key from its row on every statement, so revoking the
   * key ends its tokens at once.
   */
  async function clientCredentials(req: Request, res: Response, body: Record<string, unknown>, ipLimit: Promise<void>) {
    const basic = /^Basic ([A-Za-z0-9+/=]+)$/.exec(req.get("authorization")?.trim() ?? "");
    let clientId = param(body, "client_id", 100);
    let clientSecret = param(body, "client_secret", 100);
    if (basic) {
      if (clientId !== null || clientSecret !== null) throw new OAuthError("invalid_request", "Give the client's credentials once: HTTP Basic or the body, not both.");
      const decoded = Buffer.from(basic[1]!, "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      clientId = colon === -1 ? decoded : decodeURIComponent(decoded.slice(0, colon));
      clientSecret = colon === -1 ? "" : decodeURIComponent(decoded.slice(colon + 1));
    }
    const invalidClient = new OAuthError("invalid_client", "The client's credentials are not valid.", 401);
    if (basic) res.setHeader("WWW-Authenticate", 'Basic realm="authhub"');
    await ipLimit;
    if (!clientId || !clientSecret || !/^ak_[0-9A-Za-z]{22}$/.test(clientId)) throw invalidClient;
    // Failures are counted per client address and key id: guesses from one
    // address slow that address down, and can never lock the key's owner
    // (elsewhere) out; successes count only towards the address's own limit.
    // Each attempt is counted before it is tried and a success gives its point
    // back, so a concurrent burst of guesses cannot pass a check made before any
    // of them was counted.
    const failureKey = digest(`${clientAddress(req)} ${clientId}`);
    const attempt = await deps.rateLimits.hit("auth-client-failure", failureKey, config.tokenRateLimit.perSubject);
    if (!attempt.allowed) throw new OAuthError("rate_limited", "Too many failed attempts for this client; try again later.", 429, attempt.resetSeconds);
    const key = await apiKeys.get(clientId);
    // Every secret the key may be used with is compared, in constant time; an unknown key costs the same.
    const valid = anySecretMatches(key, (secret) => createHash("sha256").update(secret).digest(), sha256(clientSecret));
    if (!valid || !key) throw invalidClient;
    await deps.rateLimits.giveBack("auth-client-failure", failureKey, config.tokenRateLimit.perSubject);
    const { token } = await signer.signApiKeyWithActive({ apiKeyId: key.id, tenantId: key.tenantId, orgId: key.organizationId, keyId: key.keyId, scopes: key.scopes });
    res.json({ access_token: token, token_type: "Bearer", expires_in: config.accessTokenTtlSeconds, scope: key.scopes.join(" ") });
  }

  router.post("/auth/token", bodyParsers, async (req: Request, res: Response, next: NextFunction) => {
    res.setHeader("Cache-Control", "no-store");
    res.setHeader("Pragma", "no-cache");
    try {
      const ipLimit = limit("auth-ip", clientAddress(req), config.tokenRateLimit.perIp);
      // Settled here too, so a refusal that comes first leaves no unhandled rejection behind.
      ipLimit.catch(() => undefined);
      const body = (typeof req.body === "object" && req.body !== null ? req.body : {}) as Record<string, unknown>;
      const grantType = requiredParam(body, "grant_type");
      if (grantType === TOKEN_EXCHANGE) await exchange(req, res, body, ipLimit);
      else if (grantType === "refresh_token") await refresh(req, res, body, ipLimit);
      else if (grantType === "client_credentials") await clientCredentials(req, res, body, ipLimit);
      else throw new OAuthError("unsupported_grant_type", "Supported grant types: token exchange, refresh_token and client_credentials.");
    } catch (err) {
      next(err);
    }
  });

  router.post("/auth/revoke", bodyParsers, async (req: Request, res: Response, next: NextFunction) => {
    try {
      await limit("auth-ip", clientAddress(req), config.tokenRateLimit.perIp);
      const body = (typeof req.body === "object" && req.body !== null ? req.body : {}) as Record<string, unknown>;
      const token = requiredParam(body, "token", MAX_TOKEN_LENGTH);
      const hint = param(body, "token_type_hint");
      if (REFRESH_TOKEN_RE.test(token)) {
        await authPool.query("select authhub_private.revoke_refresh_token($1, $2)", [sha256(token), requestState(req).traceId]);
      } else if (hint === "access_token" || token.split(".").length === 3) {
        // Access tokens are short-lived and checked live against the database on use.
        throw new OAuthError("unsupported_token_type", "Access tokens are not revocable; revoke the refresh token of the login.");
      }
      // RFC 7009 §2.2: unknown and already-revoked tokens answer 200 too.
      res.status(200).end();
    } catch (err) {
      next(err);
    }
  });

  return router;
}
