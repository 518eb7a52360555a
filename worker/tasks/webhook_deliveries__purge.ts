/**
 * Inbox retention: finished webhook deliveries are deleted 30 days after they
 * were processed, in bounded batches; pending ones stay until they finish.
 */
import type { Task } from "graphile-worker";
import { inBatches } from "../jobTransaction.js";

export const webhook_deliveries__purge: Task = async (_payload, helpers) => {
  const total = await inBatches(helpers, "webhook_deliveries__purge", { fn: "authhub_private.purge_webhook_deliveries", batch: 5_000, maxTransactions: 20 });
  if (total > 0) helpers.logger.info(`deleted ${total} finished webhook deliveries past retention`);
};
