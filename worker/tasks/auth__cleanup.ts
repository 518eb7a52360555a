/**
 * Housekeeping for the Auth API: deletes ended logins (expired, or revoked a
 * day ago) with their refresh tokens, in bounded batches. (Closed rate-limit
 * windows are swept by the servers' limiter, server/rateLimit.ts.)
 */
import type { Task } from "graphile-worker";
import { inBatches } from "../jobTransaction.js";

export const auth__cleanup: Task = async (_payload, helpers) => {
  const families = await inBatches(helpers, "auth__cleanup", { fn: "authhub_private.purge_ended_sessions", batch: 500, maxTransactions: 20 });
  if (families > 0) helpers.logger.info(`removed ${families} ended login(s)`);
};
