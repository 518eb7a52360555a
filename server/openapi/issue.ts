/**
 * Making API keys (DESIGN.md §6): the public id `ak_` + 22 base62 characters,
 * the secret `sk_` + 43, generated here (SQL never sees a secret in the clear),
 * encrypted under the master key with its SHA-256 fingerprint, and issued by
 * authhub_private.issue_api_key, which checks the issuer's authority. One path
 * for GraphQL's createApiKey, `npx authhub apikey create` and the tests.
 */
import { createHash, randomInt } from "node:crypto";
import type pg from "pg";
import type { MasterKey } from "../auth/masterKey.js";

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const base62 = (length: number) => Array.from({ length }, () => BASE62[randomInt(62)]).join("");

export interface SecretMaterial {
  secret: string;
  fingerprint: string;
  secretEncrypted: string;
}

function newSecret(masterKey: MasterKey): SecretMaterial {
  const secret = `sk_${base62(43)}`;
  return { secret, fingerprint: createHash("sha256").update(secret, "utf8").digest("hex"), secretEncrypted: masterKey.encrypt(secret) };
}

export interface IssueInput {
  name: string;
  scopes: string[];
  organizationId?: string | null;
  rateLimitPerMinute?: number | null;
  expiresAt?: Date | null;
  /** Only for the operator (the CLI, as the owner); a user issues in its own tenant. */
  tenantId?: string | null;
}

export interface IssuedKey {
  id: string;
  keyId: string;
  secret: string;
  tenantId: string;
  organizationId: string | null;
  scopes: string[];
  rateLimitPerMinute: number;
  expiresAt: Date | null;
}

/** Issues a key on `client` (in its transaction, as whoever it is acting as); the secret is in the answer, once. */
export async function issueApiKey(client: Pick<pg.PoolClient, "query">, masterKey: MasterKey, input: IssueInput): Promise<IssuedKey> {
  const keyId = `ak_${base62(22)}`;
  const material = newSecret(masterKey);
  const { rows } = await client.query<{ id: string; tenant_id: string; organization_id: string | null; scopes: string[]; rate_limit_per_minute: number; expires_at: Date | null }>(
    `select (k).id, (k).tenant_id, (k).organization_id, (k).scopes::text[] as scopes, (k).rate_limit_per_minute, (k).expires_at
     from (select authhub_private.issue_api_key($1, $2, $3, $4, $5, $6, $7, $8, $9) as k) issued`,
    [
      keyId,
      input.name,
      input.scopes,
      input.organizationId ?? null,
      input.rateLimitPerMinute ?? null,
      input.expiresAt ?? null,
      material.fingerprint,
      material.secretEncrypted,
      input.tenantId ?? null,
    ],
  );
  const row = rows[0]!;
  return {
    id: row.id,
    keyId,
    secret: material.secret,
    tenantId: row.tenant_id,
    organizationId: row.organization_id,
    scopes: row.scopes,
    rateLimitPerMinute: row.rate_limit_per_minute,
    expiresAt: row.expires_at,
  };
}

/** Rotates a key's secret: the new one is in the answer, once; the old one works for `graceSeconds` more. */
export async function rotateApiKeySecret(
  client: Pick<pg.PoolClient, "query">,
  masterKey: MasterKey,
  id: string,
  graceSeconds: number,
): Promise<{ id: string; tenantId: string; keyId: string; secret: string }> {
  const material = newSecret(masterKey);
  const { rows } = await client.query<{ id: string; tenant_id: string; key_id: string }>(
    "select (k).id, (k).tenant_id, (k).key_id from (select authhub_private.rotate_api_key_secret($1, $2, $3, make_interval(secs => $4)) as k) rotated",
    [id, material.fingerprint, material.secretEncrypted, graceSeconds],
  );
  return { id: rows[0]!.id, tenantId: rows[0]!.tenant_id, keyId: rows[0]!.key_id, secret: material.secret };
}
