/**
 * Inbox retention: finished webhook deliveries are deleted 30 days after they
 * were processed, in bounded batches; pending ones stay until they finish.
 */
import type { Task } from "graphile-worker";
import { inJobTransaction } from "../jobTransaction.js";

const PER_TRANSACTION = 5_000;
const MAX_TRANSACTIONS = 20;

export const webhook_deliveries__purge: Task = async (_payload, helpers) => {
  let total = 0;
  for (let i = 0; i < MAX_TRANSACTIONS; i++) {
    const purged = await inJobTransaction(helpers, "webhook_deliveries__purge", async (client) => {
      const { rows } = await client.query<{ n: number }>("select authhub_private.purge_webhook_deliveries($1) as n", [PER_TRANSACTION]);
      return rows[0]!.n;
    });
    total += purged;
    if (purged < PER_TRANSACTION) break;
  }
  if (total > 0) helpers.logger.info(`deleted ${total} finished webhook deliveries past retention`);
};
