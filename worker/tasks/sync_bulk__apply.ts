/**
 * Applies a bulk load (issue 17.2; server/openapi/bulk.ts staged it) through
 * retail.sync as the key that sent it (the authenticator and begin_request,
 * as its request would), with the source kind bulk: 1,000 staged rows per
 * transaction, each with its progress (retail_private.sync_bulk_progress), so
 * a batch is applied with its counts or not at all and a rerun goes on from
 * the next. One queue per store (`sync-bulk:<store>`).
 */
import type { Task } from "graphile-worker";
import { pgSettingsForApiKey, UUID_RE } from "../../db/claims.js";
import { KeySession } from "../pull/keySession.js";
import { workerContext } from "../context.js";
import { inJobTransaction } from "../jobTransaction.js";

const BATCH = 1000;

interface Job {
  tenant_id: string;
  id: string;
  store_id: string;
  entity: string;
  api_key_id: string;
  state: string;
}

export const sync_bulk__apply: Task = async (payload, helpers) => {
  const p = payload as { tenant_id?: unknown; job_id?: unknown } | null;
  if (typeof p?.tenant_id !== "string" || !UUID_RE.test(p.tenant_id) || typeof p.job_id !== "string" || !UUID_RE.test(p.job_id)) {
    helpers.logger.warn("sync_bulk__apply: tenant_id and job_id are required; skipped");
    return;
  }
  const { tenant_id: tenantId, job_id: jobId } = p as { tenant_id: string; job_id: string };
  const job = await inJobTransaction(
    helpers,
    "sync_bulk__apply",
    async (c) =>
      (await c.query<Job>("select tenant_id, id, store_id, entity, api_key_id, state from retail_private.sync_bulk_jobs where tenant_id = $1 and id = $2", [tenantId, jobId]))
        .rows[0],
  );
  if (!job || !["queued", "applying"].includes(job.state)) {
    helpers.logger.info(`sync_bulk__apply: job ${jobId} is gone or finished; skipped`);
    return;
  }
  const { authUrl } = workerContext();
  if (!authUrl) throw new Error("sync_bulk__apply: the worker has no authenticator URL (configureWorker)");
  const settings = { ...pgSettingsForApiKey({ apiKeyId: job.api_key_id, tenantId: job.tenant_id, orgId: job.store_id }, `bulk-${job.id}`), "retail.sync_kind": "bulk" };
  const hub = await KeySession.open(authUrl, "authhub-bulk", settings);
  let failure: string | null = null;
  try {
    // A batch at a time, each with its progress, until none is left.
    while (
      await hub.tx(async (c) => {
        const { rows } = await c.query<{ seq: string; body: unknown }>("select seq::text, body from retail_private.sync_bulk_next($1, $2)", [job.id, BATCH]);
        if (rows.length === 0) return false;
        const results = (await c.query<{ r: unknown }>("select retail.sync($1, $2::jsonb) as r", [job.entity, JSON.stringify(rows.map((r) => r.body))])).rows[0]!.r;
        await c.query("select retail_private.sync_bulk_progress($1, $2::bigint, $3::jsonb)", [job.id, rows[rows.length - 1]!.seq, JSON.stringify(results)]);
        return true;
      })
    );
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    // A key revoked meanwhile, or the entity's rows refused as a whole: the job fails, visibly, and is not retried.
    failure = typeof code === "string" && /^(AH4|42501)/.test(code) ? `refused (${code})` : null;
    if (!failure) throw err;
  } finally {
    await hub.close();
  }
  await inJobTransaction(helpers, "sync_bulk__apply", (c) => c.query("select retail_private.sync_bulk_finish($1, $2, $3)", [tenantId, jobId, failure]));
};
