/**
 * Every minute: tenants with a store-day marked over a minute ago get their
 * rollup fold queued again (retail_private.sweep_rollups). The fold is queued
 * by the writes themselves; this covers a fold that failed after a newer write
 * superseded its job, or died past its attempts, so such days are current
 * within about a minute instead of at the tenant's next write.
 */
import type { Task } from "graphile-worker";
import { inJobTransaction } from "../jobTransaction.js";

export const retail_rollups__sweep: Task = async (_payload, helpers) => {
  const n = await inJobTransaction(
    helpers,
    "retail_rollups__sweep",
    async (client) => (await client.query<{ n: number }>("select retail_private.sweep_rollups() as n")).rows[0]!.n,
  );
  if (n) helpers.logger.info(`re-queued the rollup fold of ${n} tenant(s) with days left dirty`);
};
