/**
 * Every minute: endpoints whose deliveries are overdue (the drain that held
 * them died with its worker, say) are drained again, so a crash delays a
 * delivery by about a minute, not by graphile-worker's four-hour lock timeout.
 */
import type { Task } from "graphile-worker";
import { inJobTransaction } from "../jobTransaction.js";

export const clerk_deliveries__sweep: Task = async (_payload, helpers) => {
  const n = await inJobTransaction(
    helpers,
    "clerk_deliveries__sweep",
    async (client) => (await client.query<{ n: number }>("select authhub_private.sweep_clerk_deliveries() as n")).rows[0]!.n,
  );
  if (n) helpers.logger.info(`re-queued the drains of ${n} endpoint(s) with overdue deliveries`);
};
