/**
 * Deletes audit events past their tenant's retention, a whole expired seal at a
 * time (authhub_private.purge_expired_audit_events records each purge for
 * `authhub audit verify`), in bounded transactions up to a bounded amount per run.
 */
import type { Task } from "graphile-worker";
import { inJobTransaction } from "../jobTransaction.js";

const SEALS_PER_TRANSACTION = 20;
const MAX_TRANSACTIONS = 50;

export const audit_events__purge: Task = async (_payload, helpers) => {
  let total = 0;
  for (let i = 0; i < MAX_TRANSACTIONS; i++) {
    const purged = await inJobTransaction(helpers, "audit_events__purge", async (client) => {
      const { rows } = await client.query<{ purged: number }>("select authhub_private.purge_expired_audit_events($1) as purged", [
        SEALS_PER_TRANSACTION,
      ]);
      return rows[0]!.purged;
    });
    if (purged === 0) break;
    total += purged;
  }
  if (total > 0) helpers.logger.info(`purged ${total} expired audit event(s)`);
};
