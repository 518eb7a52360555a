/**
 * Deletes audit events past their tenant's retention, in bounded batches (one
 * transaction each, so locks stay short), up to a bounded amount per run.
 */
import type { Task } from "graphile-worker";
import { inJobTransaction } from "../jobTransaction.js";

const BATCH = 1000;
const MAX_BATCHES = 50;

export const audit_events__purge: Task = async (_payload, helpers) => {
  let total = 0;
  for (let i = 0; i < MAX_BATCHES; i++) {
    const purged = await inJobTransaction(helpers, "audit_events__purge", async (client) => {
      const { rows } = await client.query<{ purged: number }>("select authhub_private.purge_expired_audit_events($1) as purged", [BATCH]);
      return rows[0]!.purged;
    });
    total += purged;
    if (purged < BATCH) break;
  }
  if (total > 0) helpers.logger.info(`purged ${total} expired audit event(s)`);
};
