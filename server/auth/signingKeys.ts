/**
 * AuthHub's ES256 signing keys: kept in authhub_private.signing_keys with the
 * private half encrypted under the master key. Creating and reading private
 * keys is the owner's business (boot, CLI); the server only ever reads the
 * public halves, through authhub_private.public_signing_keys().
 */
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from "jose";
import { randomUUID } from "node:crypto";
import type pg from "pg";
import type { ApiKeyIdentity, Identity } from "../../db/claims.js";
import type { MasterKey } from "./masterKey.js";

export const ALG = "ES256";
export const AUDIENCE = "authhub";

export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
}

type Queryable = Pick<pg.Pool, "query">;

/** A fresh ES256 key pair: its kid (the JWK thumbprint), public JWK and encrypted private JWK. */
export async function newSigningKeyMaterial(masterKey: MasterKey): Promise<{ kid: string; publicJwk: JWK; privateKeyEncrypted: string }> {
  const { publicKey, privateKey } = await generateKeyPair(ALG, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk);
  return { kid, publicJwk, privateKeyEncrypted: masterKey.encrypt(JSON.stringify(await exportJWK(privateKey))) };
}

/** Makes sure an active key exists; returns its kid. Safe to call concurrently. */
export async function ensureActiveSigningKey(owner: Queryable, masterKey: MasterKey): Promise<string> {
  const existing = await owner.query<{ kid: string }>("select kid from authhub_private.signing_keys where status = 'active' order by created_at desc limit 1");
  if (existing.rows[0]) return existing.rows[0].kid;
  const { kid, publicJwk, privateKeyEncrypted } = await newSigningKeyMaterial(masterKey);
  // Two processes booting at once: the single-active unique index lets one key win.
  await owner.query(
    `insert into authhub_private.signing_keys (kid, public_jwk, private_key_encrypted)
     values ($1, $2, $3)
     on conflict ((true)) where status = 'active' do nothing`,
    [kid, JSON.stringify(publicJwk), privateKeyEncrypted],
  );
  const active = await owner.query<{ kid: string }>("select kid from authhub_private.signing_keys where status = 'active' order by created_at desc limit 1");
  return active.rows[0]!.kid;
}

export async function loadActiveSigningKey(owner: Queryable, masterKey: MasterKey): Promise<SigningKey> {
  const kid = await ensureActiveSigningKey(owner, masterKey);
  const { rows } = await owner.query<{ private_key_encrypted: string }>("select private_key_encrypted from authhub_private.signing_keys where kid = $1", [kid]);
  const jwk = JSON.parse(masterKey.decrypt(rows[0]!.private_key_encrypted)) as JWK;
  return { kid, privateKey: (await importJWK(jwk, ALG)) as CryptoKey };
}

export interface MintOptions {
  issuer: string;
  ttlSeconds: number;
}

/** An AuthHub access token (DESIGN.md §5 claims). */
export async function mintAccessToken(key: SigningKey, identity: Identity, options: MintOptions): Promise<{ token: string; expiresAt: Date }> {
  const claims: Record<string, unknown> = {
    tenant_id: identity.tenantId,
    roles: [identity.level],
    // A login's id (token exchange, refresh), or, for a token tied to no login
    // (the CLI's), an id that cannot be mistaken for one.
    sid: identity.sessionId ?? `cli-${randomUUID()}`,
  };
  if (identity.orgId) claims.org_id = identity.orgId;
  return signToken(key, claims, identity.userId, options);
}

/** Every AuthHub token's envelope: our key, issuer and audience, a fresh jti, the TTL from now. */
async function signToken(key: SigningKey, claims: Record<string, unknown>, subject: string, options: MintOptions): Promise<{ token: string; expiresAt: Date }> {
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: ALG, kid: key.kid, typ: "JWT" })
    .setIssuer(options.issuer)
    .setAudience(AUDIENCE)
    .setSubject(subject)
    .setJti(randomUUID())
    .setIssuedAt(now)
    .setExpirationTime(now + options.ttlSeconds)
    .sign(key.privateKey);
  return { token, expiresAt: new Date((now + options.ttlSeconds) * 1000) };
}

/**
 * The server's signer: signs with whichever key is active *now* (the session
 * functions name it in the same statement that checks the user), decrypting
 * each key once. The server's login role reads only the active key's
 * ciphertext; the master key that opens it never leaves this process.
 */
export class ActiveKeySigner {
  private readonly keys = new Map<string, Promise<SigningKey>>();

  constructor(
    private readonly authPool: Queryable,
    private readonly masterKey: MasterKey,
    private readonly options: MintOptions,
  ) {}

  private key(kid: string): Promise<SigningKey> {
    const cached = this.keys.get(kid);
    if (cached) return cached;
    const loading = (async () => {
      const { rows } = await this.authPool.query<{ kid: string; private_key_encrypted: string }>("select kid, private_key_encrypted from authhub_private.active_signing_key()");
      const row = rows[0];
      if (!row) throw new Error("There is no active signing key");
      const jwk = JSON.parse(this.masterKey.decrypt(row.private_key_encrypted)) as JWK;
      return { kid: row.kid, privateKey: (await importJWK(jwk, ALG)) as CryptoKey };
    })();
    // Rotated between the statement that named `kid` and now: the new active key
    // signs instead, and is remembered under its own kid.
    const settled = loading.then((key) => {
      if (key.kid !== kid) this.keys.set(key.kid, loading);
      return key;
    });
    this.keys.set(kid, settled);
    settled.catch(() => this.keys.delete(kid));
    return settled;
  }

  /** An access token for an API key, signed by the key active now. */
  async signApiKeyWithActive(apiKey: ApiKeyIdentity & { keyId: string; scopes: string[] }): Promise<{ token: string; expiresAt: Date }> {
    const { rows } = await this.authPool.query<{ kid: string }>("select kid from authhub_private.active_signing_key()");
    if (!rows[0]) throw new Error("There is no active signing key");
    return mintApiKeyToken(await this.key(rows[0].kid), apiKey, this.options);
  }

  /** An access token for `identity`, signed by the key `kid` (the active one, as the database said). */
  async sign(kid: string, identity: Identity): Promise<{ token: string; expiresAt: Date }> {
    return mintAccessToken(await this.key(kid), identity, this.options);
  }
}

/**
 * An access token for an API key (the client_credentials grant): `sub` is the
 * key's public id, `api_key_id` its row id, `scope` its scopes; no `roles` (a
 * key is not a user). SQL answers for it from the key's row, live.
 */
export async function mintApiKeyToken(
  key: SigningKey,
  apiKey: ApiKeyIdentity & { keyId: string; scopes: string[] },
  options: MintOptions,
): Promise<{ token: string; expiresAt: Date }> {
  const claims: Record<string, unknown> = { tenant_id: apiKey.tenantId, api_key_id: apiKey.apiKeyId, scope: apiKey.scopes.join(" ") };
  if (apiKey.orgId) claims.org_id = apiKey.orgId;
  return signToken(key, claims, apiKey.keyId, options);
}
