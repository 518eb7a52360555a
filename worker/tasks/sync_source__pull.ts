/**
 * The pull connector's job (DESIGN §13; issue 17): one per store source, in
 * the source's own queue (`sync-pull:<source id>`, so stores never wait for
 * each other) under the job key of the same name (one pending job per
 * source). A run polls the store's database (worker/pull/pull.ts) and queues
 * the next run: after the source's poll interval, at once when it stopped
 * with rows left, or after a growing backoff when the store's database failed
 * (down, slow, a broken view), recorded on the source and its sync statuses.
 * sync_sources__schedule restarts the chain of any source that has none.
 */
import type { JobHelpers, Task } from "graphile-worker";
import { UUID_RE } from "../../db/claims.js";
import { workerContext } from "../context.js";
import { inJobTransaction } from "../jobTransaction.js";
import { pullOnce, type Cursor, type Source } from "../pull/pull.js";
import { safeStoreError } from "../pull/store.js";

/** Longest a run reads forward before it hands over to its successor. */
const BUDGET_MS = 20_000;
/** The longest backoff after repeated failures. */
const MAX_BACKOFF_MS = 300_000;

export const pullQueue = (sourceId: string) => `sync-pull:${sourceId}`;

export interface PullPayload {
  tenant_id: string;
  source_id: string;
  /** Reconcile in this run whatever the schedule says. */
  reconcile?: boolean;
}

export function assertPullPayload(payload: unknown): asserts payload is PullPayload {
  const p = payload as Partial<PullPayload> | null;
  if (typeof p?.tenant_id !== "string" || !UUID_RE.test(p.tenant_id) || typeof p.source_id !== "string" || !UUID_RE.test(p.source_id)) {
    throw new TypeError("sync_source__pull: tenant_id and source_id are required");
  }
}

/** The delay before the next run after `failures` consecutive failures (0: the poll interval). */
export function nextDelayMs(pollIntervalMs: number, failures: number): number {
  if (failures <= 0) return pollIntervalMs;
  return Math.min(MAX_BACKOFF_MS, Math.max(pollIntervalMs, 1_000) * 2 ** Math.min(failures, 16));
}

export async function queuePull(helpers: Pick<JobHelpers, "addJob">, payload: PullPayload, delayMs: number, mode: "replace" | "preserve_run_at" = "replace"): Promise<void> {
  await helpers.addJob(
    "sync_source__pull",
    { tenant_id: payload.tenant_id, source_id: payload.source_id },
    {
      queueName: pullQueue(payload.source_id),
      jobKey: pullQueue(payload.source_id),
      jobKeyMode: mode,
      runAt: new Date(Date.now() + delayMs),
      // Failures are handled (backoff) by the task itself; a crash is retried a few times.
      maxAttempts: 5,
    },
  );
}

export const sync_source__pull: Task = async (payload, helpers) => {
  try {
    assertPullPayload(payload);
  } catch (err) {
    helpers.logger.warn(`${(err as Error).message}; skipped`);
    return;
  }
  const { source, cursors } = await inJobTransaction(helpers, "sync_source__pull", async (client) => {
    const s = await client.query<Source>(
      `select s.tenant_id, s.id, s.store_id, s.url_encrypted, s.schema_name, s.api_key_id, s.poll_interval_ms, s.lookback_ms, s.batch_size,
              s.reconcile_every_ms, s.read_timeout_ms, s.enabled, coalesce(h.failures, 0) as failures
       from retail_private.sync_sources s
       left join retail_private.sync_source_health h on h.tenant_id = s.tenant_id and h.source_id = s.id
       where s.tenant_id = $1 and s.id = $2`,
      [payload.tenant_id, payload.source_id],
    );
    const c = await client.query<Cursor>(
      "select entity, updated_at::text as updated_at, external_id, reconciled_at from retail_private.sync_source_cursors where tenant_id = $1 and source_id = $2",
      [payload.tenant_id, payload.source_id],
    );
    return { source: s.rows[0] ?? null, cursors: c.rows };
  });
  if (!source || !source.enabled) {
    helpers.logger.info(`sync_source__pull: source ${payload.source_id} is gone or disabled; its chain ends`);
    return;
  }
  const { masterKey, authUrl } = workerContext();
  if (!authUrl) throw new Error("sync_source__pull: the worker has no authenticator URL (configureWorker)");
  let delay: number;
  const started = Date.now();
  try {
    const report = await pullOnce({ authUrl, url: masterKey.decrypt(source.url_encrypted), source, cursors, budgetMs: BUDGET_MS, forceReconcile: payload.reconcile === true });
    await inJobTransaction(helpers, "sync_source__pull", (client) =>
      client.query(
        `insert into retail_private.sync_source_health as h (tenant_id, source_id, failures, last_poll_at) values ($1, $2, 0, now())
         on conflict (tenant_id, source_id) do update set failures = 0, last_poll_at = now()`,
        [source.tenant_id, source.id],
      ),
    );
    if (report.applied + report.rejected > 0) helpers.logger.debug(`pulled ${report.applied} row(s), ${report.rejected} rejected, for source ${source.id}`);
    // The interval runs from this poll's start, so a slow apply does not add to the lag.
    delay = report.more ? 0 : Math.max(0, source.poll_interval_ms - (Date.now() - started));
  } catch (err) {
    // Never the URL or a stack: what kind of failure, and its code.
    const message = safeStoreError(err);
    const failures = await inJobTransaction(
      helpers,
      "sync_source__pull",
      async (client) => (await client.query<{ n: number }>("select retail_private.sync_source_failed($1, $2, $3) as n", [source.tenant_id, source.id, message])).rows[0]!.n,
    );
    delay = nextDelayMs(source.poll_interval_ms, failures);
    helpers.logger.warn(`sync_source__pull: source ${source.id} failed (${failures} in a row), next try in ${delay} ms: ${message}`);
  }
  await queuePull(helpers, payload, delay);
};
