/**
 * Housekeeping for the Open API: forgets request nonces whose replay window
 * has closed, in bounded batches.
 */
import type { Task } from "graphile-worker";
import { inJobTransaction } from "../jobTransaction.js";

const PER_TRANSACTION = 5_000;
const MAX_TRANSACTIONS = 20;

export const open_api__cleanup: Task = async (_payload, helpers) => {
  let total = 0;
  for (let i = 0; i < MAX_TRANSACTIONS; i++) {
    const purged = await inJobTransaction(helpers, "open_api__cleanup", async (client) => {
      const { rows } = await client.query<{ n: number }>("select authhub_private.purge_expired_nonces($1) as n", [PER_TRANSACTION]);
      return rows[0]!.n;
    });
    total += purged;
    if (purged < PER_TRANSACTION) break;
  }
  if (total > 0) helpers.logger.info(`forgot ${total} expired nonce(s)`);
};
