/**
 * Registering a store's own PostgreSQL as a pull source (DESIGN §13; issue
 * 17), for `npx authhub sync source add`. The source gets its own key: an API
 * key bound to the store with the scope sync:write, whose secret nobody is
 * shown (the pull job acts as the key in SQL, never over HTTP). Revoking that
 * key stops the pull. The URL is encrypted under the master key and never
 * printed, logged or audited.
 */
import type pg from "pg";
import type { MasterKey } from "../auth/masterKey.js";
import { issueApiKey } from "../openapi/issue.js";

export interface SourceInput {
  tenantId: string;
  storeCode: string;
  url: string;
  schema?: string | null;
  pollIntervalMs?: number | null;
  lookbackMs?: number | null;
}

export interface RegisteredSource {
  id: string;
  tenantId: string;
  storeId: string;
  storeCode: string;
  schema: string;
  apiKeyId: string;
  pollIntervalMs: number;
  lookbackMs: number;
}

export class SourceInputError extends Error {}

/** A postgres:// URL naming a host and a database; the message never repeats it. */
export function checkStoreUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new SourceInputError("--url must be a postgres:// URL");
  }
  if (!/^postgres(ql)?:$/.test(parsed.protocol) || parsed.hostname === "" || parsed.pathname.length < 2) {
    throw new SourceInputError("--url must be a postgres:// URL naming a host and a database");
  }
}

/** In the caller's (the operator's) transaction. */
export async function registerSource(client: Pick<pg.PoolClient, "query">, masterKey: MasterKey, input: SourceInput): Promise<RegisteredSource> {
  checkStoreUrl(input.url);
  const schema = input.schema ?? "public";
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new SourceInputError("--schema must be a lower-case PostgreSQL name");
  const { rows } = await client.query<{ id: string }>("select s.id from retail.stores s where s.tenant_id = $1 and s.code = $2", [input.tenantId, input.storeCode]);
  const storeId = rows[0]?.id;
  if (!storeId) throw new SourceInputError(`No store ${input.storeCode} in that tenant.`);
  const key = await issueApiKey(client, masterKey, {
    name: `Pull connector: ${input.storeCode}`,
    scopes: ["sync:write"],
    organizationId: storeId,
    tenantId: input.tenantId,
  });
  // One source per store is the table's rule (sync_sources_store_key): a concurrent add waits on it and is refused here too.
  const inserted = await client
    .query<{ id: string; poll_interval_ms: number; lookback_ms: number }>(
      `insert into retail_private.sync_sources (tenant_id, store_id, url_encrypted, schema_name, api_key_id, poll_interval_ms, lookback_ms)
       values ($1, $2, $3, $4, $5, coalesce($6, 2000), coalesce($7, 60000)) returning id, poll_interval_ms, lookback_ms`,
      [input.tenantId, storeId, masterKey.encrypt(input.url), schema, key.id, input.pollIntervalMs ?? null, input.lookbackMs ?? null],
    )
    .catch((err: unknown) => {
      const e = err as { code?: string; constraint?: string };
      if (e.code === "23505" && e.constraint === "sync_sources_store_key") throw new SourceInputError(`Store ${input.storeCode} already has a pull source.`);
      throw err;
    });
  const s = inserted.rows[0]!;
  return { id: s.id, tenantId: input.tenantId, storeId, storeCode: input.storeCode, schema, apiKeyId: key.id, pollIntervalMs: s.poll_interval_ms, lookbackMs: s.lookback_ms };
}
