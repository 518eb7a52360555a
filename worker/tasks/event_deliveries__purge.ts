/**
 * Outbox retention: finished event deliveries (delivered or failed) are deleted
 * 30 days after they finished, in bounded batches, with their events; pending
 * ones stay until they finish.
 */
import type { Task } from "graphile-worker";
import { inBatches } from "../jobTransaction.js";

export const event_deliveries__purge: Task = async (_payload, helpers) => {
  const total = await inBatches(helpers, "event_deliveries__purge", { fn: "authhub_private.purge_event_deliveries", batch: 5_000, maxTransactions: 20 });
  if (total > 0) helpers.logger.info(`deleted ${total} finished event deliveries past retention`);
};
