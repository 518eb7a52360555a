/**
 * Open API authentication (DESIGN.md §6): every /open/v1 request carries
 * X-Api-Key, X-Timestamp, X-Nonce and X-Signature, an HMAC-SHA256 of the
 * canonical string (client/index.js builds it for the signing client and for
 * this check alike) keyed with the key's secret. Secrets are stored encrypted
 * under the master key; the server reads a key's (live key, usable secrets)
 * at most once a second and decrypts them in memory. Every failure answers the
 * same 401. The nonce is recorded, and the key's liveness re-checked, by the
 * request's first statement (authhub_private.begin_api_request), so a revoked
 * key stops working at the commit that revoked it, whatever is cached here.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { ShortCache } from "../lookups.js";
import type pg from "pg";
import { bodyHash, canonicalString } from "../../client/index.js";
import type { MasterKey } from "../auth/masterKey.js";
import { AppError } from "../errors.js";

export const TIMESTAMP_WINDOW_SECONDS = 300;
const KEY_ID_RE = /^ak_[0-9A-Za-z]{22}$/;
const NONCE_RE = /^[A-Za-z0-9_-]{16,64}$/;
const SIGNATURE_RE = /^v1=[0-9a-f]{64}$/;

export interface ApiKeyRecord {
  /** The key's row id. */
  id: string;
  keyId: string;
  tenantId: string;
  organizationId: string | null;
  name: string;
  scopes: string[];
  rateLimitPerMinute: number;
  tenantRateLimitPerMinute: number | null;
  expiresAt: Date | null;
  /** Secrets the key may be signed with now (the current one, and one in its grace period). */
  secrets: Buffer[];
}

/** The one answer for every authentication failure: nothing tells which check failed. */
export const unauthenticated = () => new AppError("unauthenticated", "The request is not signed by a valid API key.");

/** Live keys by public id, read at most once per `ttlMs` each (and remembered as unknown for as long). */
export class ApiKeyStore {
  private readonly cache: ShortCache<ApiKeyRecord | null>;

  constructor(
    private readonly authPool: pg.Pool,
    private readonly masterKey: MasterKey,
    ttlMs = 1000,
  ) {
    this.cache = new ShortCache(ttlMs);
  }

  /** Whether `keyId` would be answered without the database now. */
  isCached(keyId: string): boolean {
    return this.cache.has(keyId);
  }

  get(keyId: string): Promise<ApiKeyRecord | null> {
    return this.cache.get(keyId, () => this.load(keyId));
  }

  private async load(keyId: string): Promise<ApiKeyRecord | null> {
    const { rows } = await this.authPool.query<{
      id: string;
      tenant_id: string;
      organization_id: string | null;
      name: string;
      scopes: string[];
      rate_limit_per_minute: number;
      tenant_rate_limit_per_minute: number | null;
      expires_at: Date | null;
      secrets: string[];
    }>("select * from authhub_private.api_key_for_request($1)", [keyId]);
    const row = rows[0];
    if (!row) return null;
    return {
      id: row.id,
      keyId,
      tenantId: row.tenant_id,
      organizationId: row.organization_id,
      name: row.name,
      scopes: row.scopes,
      rateLimitPerMinute: row.rate_limit_per_minute,
      tenantRateLimitPerMinute: row.tenant_rate_limit_per_minute,
      expiresAt: row.expires_at,
      secrets: row.secrets.map((s) => Buffer.from(this.masterKey.decrypt(s), "utf8")),
    };
  }
}

export interface SignedRequest {
  method: string;
  /** The request target as sent: path and query, still percent-encoded. */
  originalUrl: string;
  header(name: string): string | undefined;
  rawBody: Buffer;
  /** The body's SHA-256 (hex) when it was hashed as it streamed by (bulk loads); else rawBody's. */
  bodySha256?: string;
}

/** A stand-in secret, so an unknown key costs the same work as a wrong signature. */
const DECOY = [Buffer.from("sk_decoy-secret-for-unknown-keys-0000000000000", "utf8")];

/**
 * Whether `presented` matches what one of the key's secrets gives (`expected`,
 * a digest of the secret's length): every secret is tried, with no early exit,
 * in constant time, and an unknown key (null) tries a decoy, so neither the
 * answer's timing nor its work tells a known key from an unknown one.
 */
export function anySecretMatches(key: { secrets: Buffer[] } | null, expected: (secret: Buffer) => Buffer, presented: Buffer): boolean {
  let valid = false;
  for (const secret of key?.secrets.length ? key.secrets : DECOY) {
    const digest = expected(secret);
    if (digest.length === presented.length && timingSafeEqual(digest, presented) && key) valid = true;
  }
  return valid;
}

/** The key a request is signed with, or the one 401. */
export async function verifySignedRequest(
  req: SignedRequest,
  store: ApiKeyStore,
  /** Reads a key that is not cached (given the read): may refuse to read at all (null). */
  lookUp: (read: () => Promise<ApiKeyRecord | null>) => Promise<ApiKeyRecord | null> = (read) => read(),
  nowSeconds = Math.floor(Date.now() / 1000),
): Promise<{ key: ApiKeyRecord; nonce: string; signedAt: number }> {
  const keyId = req.header("x-api-key") ?? "";
  const timestamp = req.header("x-timestamp") ?? "";
  const nonce = req.header("x-nonce") ?? "";
  const sig = req.header("x-signature") ?? "";
  if (!KEY_ID_RE.test(keyId) || !/^\d{1,12}$/.test(timestamp) || !NONCE_RE.test(nonce) || !SIGNATURE_RE.test(sig)) throw unauthenticated();
  if (Math.abs(nowSeconds - Number(timestamp)) > TIMESTAMP_WINDOW_SECONDS) throw unauthenticated();
  const q = req.originalUrl.indexOf("?");
  const path = q === -1 ? req.originalUrl : req.originalUrl.slice(0, q);
  let canonical: string;
  try {
    canonical = canonicalString({
      method: req.method,
      path,
      query: q === -1 ? "" : req.originalUrl.slice(q + 1),
      timestamp,
      nonce,
      bodySha256: req.bodySha256 ?? bodyHash(req.rawBody),
    });
  } catch {
    // A query that does not percent-decode.
    throw unauthenticated();
  }
  const key = store.isCached(keyId) ? await store.get(keyId) : await lookUp(() => store.get(keyId));
  const valid = anySecretMatches(key, (secret) => createHmac("sha256", secret).update(canonical, "utf8").digest(), Buffer.from(sig.slice(3), "hex"));
  if (!valid || !key || (key.expiresAt && key.expiresAt.getTime() <= nowSeconds * 1000)) throw unauthenticated();
  return { key, nonce, signedAt: Number(timestamp) };
}
