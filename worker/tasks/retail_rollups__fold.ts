/**
 * Recomputes a tenant's dirty store-days into the daily rollups
 * (retail_private.fold_rollups), in bounded transactions until none is left.
 * Queued by the triggers that mark the days (one job per tenant, due a quarter
 * of a second after the first change of a burst; its key keeps a burst to one
 * job). A day whose writer is still in flight is left for the job that writer
 * queues, so nothing is missed and nothing waits on a lock.
 */
import type { Task } from "graphile-worker";
import { UUID_RE } from "../../db/claims.js";
import { inJobTransaction } from "../jobTransaction.js";

const DAYS_PER_TRANSACTION = 200;

export const retail_rollups__fold: Task = async (payload, helpers) => {
  const tenantId = (payload as { tenant_id?: unknown } | null)?.tenant_id;
  if (typeof tenantId !== "string" || !UUID_RE.test(tenantId)) {
    helpers.logger.warn("retail_rollups__fold: no tenant_id in the payload; skipped");
    return;
  }
  let total = 0;
  for (let i = 0; i < 100; i++) {
    const n = await inJobTransaction(
      helpers,
      "retail_rollups__fold",
      async (client) => (await client.query<{ n: number }>("select retail_private.fold_rollups($1, $2) as n", [tenantId, DAYS_PER_TRANSACTION])).rows[0]!.n,
    );
    total += n;
    if (n < DAYS_PER_TRANSACTION) break;
  }
  if (total > 0) helpers.logger.debug(`recomputed ${total} store-day(s) of daily totals`);
};
