/**
 * AuthHub's ES256 signing keys: kept in authhub_private.signing_keys with the
 * private half encrypted under the master key. Creating and reading private
 * keys is the owner's business (boot, CLI); the server only ever reads the
 * public halves, through authhub_private.public_signing_keys().
 */
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from "jose";
import { randomUUID } from "node:crypto";
import type pg from "pg";
import type { Identity } from "../../db/claims.js";
import type { MasterKey } from "./masterKey.js";

export const ALG = "ES256";
export const AUDIENCE = "authhub";

export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
}

type Queryable = Pick<pg.Pool, "query">;

/** Makes sure an active key exists; returns its kid. Safe to call concurrently. */
export async function ensureActiveSigningKey(owner: Queryable, masterKey: MasterKey): Promise<string> {
  const existing = await owner.query<{ kid: string }>(
    "select kid from authhub_private.signing_keys where status = 'active' order by created_at desc limit 1",
  );
  if (existing.rows[0]) return existing.rows[0].kid;
  const { publicKey, privateKey } = await generateKeyPair(ALG, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const privateJwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(publicJwk);
  // Two processes booting at once: the single-active unique index lets one key win.
  await owner.query(
    `insert into authhub_private.signing_keys (kid, public_jwk, private_key_encrypted)
     values ($1, $2, $3)
     on conflict ((true)) where status = 'active' do nothing`,
    [kid, JSON.stringify(publicJwk), masterKey.encrypt(JSON.stringify(privateJwk))],
  );
  const active = await owner.query<{ kid: string }>(
    "select kid from authhub_private.signing_keys where status = 'active' order by created_at desc limit 1",
  );
  return active.rows[0]!.kid;
}

export async function loadActiveSigningKey(owner: Queryable, masterKey: MasterKey): Promise<SigningKey> {
  const kid = await ensureActiveSigningKey(owner, masterKey);
  const { rows } = await owner.query<{ private_key_encrypted: string }>(
    "select private_key_encrypted from authhub_private.signing_keys where kid = $1",
    [kid],
  );
  const jwk = JSON.parse(masterKey.decrypt(rows[0]!.private_key_encrypted)) as JWK;
  return { kid, privateKey: (await importJWK(jwk, ALG)) as CryptoKey };
}

export interface MintOptions {
  issuer: string;
  ttlSeconds: number;
}

/** An AuthHub access token (DESIGN.md §5 claims). */
export async function mintAccessToken(key: SigningKey, identity: Identity, options: MintOptions): Promise<{ token: string; expiresAt: Date }> {
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = {
    tenant_id: identity.tenantId,
    roles: [identity.level],
    sid: identity.sessionId ?? randomUUID(),
  };
  if (identity.orgId) claims.org_id = identity.orgId;
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: ALG, kid: key.kid, typ: "JWT" })
    .setIssuer(options.issuer)
    .setAudience(AUDIENCE)
    .setSubject(identity.userId)
    .setJti(randomUUID())
    .setIssuedAt(now)
    .setExpirationTime(now + options.ttlSeconds)
    .sign(key.privateKey);
  return { token, expiresAt: new Date((now + options.ttlSeconds) * 1000) };
}
