/**
 * Housekeeping for the Open API: forgets request nonces whose replay window
 * has closed, idempotency keys older than a day, and rejected sync rows older
 * than 30 days, in bounded batches.
 */
import type { Task } from "graphile-worker";
import { inBatches } from "../jobTransaction.js";

export const open_api__cleanup: Task = async (_payload, helpers) => {
  const total = await inBatches(helpers, "open_api__cleanup", { fn: "authhub_private.purge_expired_nonces", batch: 5_000, maxTransactions: 20 });
  if (total > 0) helpers.logger.info(`forgot ${total} expired nonce(s)`);
  const keys = await inBatches(helpers, "open_api__cleanup", { fn: "authhub_private.purge_idempotency_keys", batch: 5_000, maxTransactions: 20 });
  if (keys > 0) helpers.logger.info(`forgot ${keys} idempotency key(s) older than a day`);
  const rejects = await inBatches(helpers, "open_api__cleanup", { fn: "retail_private.purge_sync_rejects", batch: 5_000, maxTransactions: 20 });
  if (rejects > 0) helpers.logger.info(`purged ${rejects} rejected sync row(s) older than 30 days`);
};
