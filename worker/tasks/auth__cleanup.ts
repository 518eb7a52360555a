/**
 * Housekeeping for the Auth API: deletes ended logins (expired, or revoked a
 * day ago) with their refresh tokens, in bounded batches, and rate-limit
 * windows that have closed.
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
  const windows = await inJobTransaction(helpers, "auth__cleanup", async (client) => {
    const { rows } = await client.query<{ n: number }>("select authhub_private.purge_rate_limits(interval '10 minutes') as n");
    return rows[0]!.n;
  });
  if (families + windows > 0) helpers.logger.info(`removed ${families} ended login(s) and ${windows} rate-limit window(s)`);
};
