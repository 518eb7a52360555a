/**
 * Housekeeping for the Auth API: deletes ended logins (expired, or revoked a
 * day ago) with their refresh tokens, in bounded batches. (Closed rate-limit
 * windows are swept by the servers' limiter, server/rateLimit.ts.)
 */
import type { Task } from "graphile-worker";
import { inJobTransaction } from "../jobTransaction.js";

const FAMILIES_PER_TRANSACTION = 500;
const MAX_TRANSACTIONS = 20;

export const auth__cleanup: Task = async (_payload, helpers) => {
  let families = 0;
  for (let i = 0; i < MAX_TRANSACTIONS; i++) {
    const purged = await inJobTransaction(helpers, "auth__cleanup", async (client) => {
      const { rows } = await client.query<{ n: number }>("select authhub_private.purge_ended_sessions($1) as n", [FAMILIES_PER_TRANSACTION]);
      return rows[0]!.n;
    });
    families += purged;
    if (purged < FAMILIES_PER_TRANSACTION) break;
  }
  if (families > 0) helpers.logger.info(`removed ${families} ended login(s)`);
};
