/**
 * Every job touches AuthHub's tables the same way: one transaction, as the
 * worker role (never the owner the worker connects as), with the job named as
 * the actor the audit log records (`system:<task>`).
 */
import type { JobHelpers } from "graphile-worker";
import type { PoolClient } from "pg";
import { settingsStatement } from "../db/claims.js";

/** A job's transaction settings: the worker role, and the job as the actor. */
export function jobSettings(task: string): Record<string, string> {
  return { role: "authhub_worker", "authhub.actor": `system:${task}` };
}

export async function inJobTransaction<T>(helpers: JobHelpers, task: string, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  return helpers.withPgClient(async (client) => {
    await client.query("begin");
    try {
      await client.query(settingsStatement(jobSettings(task)));
      const result = await fn(client);
      await client.query("commit");
      return result;
    } catch (err) {
      await client.query("rollback").catch(() => undefined);
      throw err;
    }
  });
}

/**
 * Housekeeping in bounded batches: calls `fn(batch)` (an authhub_private
 * function answering how much it removed), one transaction per call, until a
 * call removes less than `stopBelow` (by default a full batch) or
 * `maxTransactions` calls were made. Answers the total removed.
 */
export async function inBatches(helpers: JobHelpers, task: string, options: { fn: string; batch: number; maxTransactions: number; stopBelow?: number }): Promise<number> {
  const { fn, batch, maxTransactions, stopBelow = batch } = options;
  if (!/^(authhub_private|retail_private)\.[a-z_]+$/.test(fn)) throw new Error(`inBatches: not a housekeeping function: ${fn}`);
  let total = 0;
  for (let i = 0; i < maxTransactions; i++) {
    const n = await inJobTransaction(helpers, task, async (client) => (await client.query<{ n: number }>(`select ${fn}($1) as n`, [batch])).rows[0]!.n);
    total += n;
    if (n < stopBelow) break;
  }
  return total;
}
