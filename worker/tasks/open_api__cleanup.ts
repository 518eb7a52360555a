/**
 * Housekeeping for the Open API: forgets request nonces whose replay window
 * has closed, in bounded batches.
 */
import type { Task } from "graphile-worker";
import { inBatches } from "../jobTransaction.js";

export const open_api__cleanup: Task = async (_payload, helpers) => {
  const total = await inBatches(helpers, "open_api__cleanup", { fn: "authhub_private.purge_expired_nonces", batch: 5_000, maxTransactions: 20 });
  if (total > 0) helpers.logger.info(`forgot ${total} expired nonce(s)`);
};
