/**
 * Deletes audit events past their tenant's retention, a whole expired seal at a
 * time (authhub_private.purge_expired_audit_events records each purge for
 * `authhub audit verify`), in bounded transactions up to a bounded amount per run.
 */
import type { Task } from "graphile-worker";
import { inBatches } from "../jobTransaction.js";

export const audit_events__purge: Task = async (_payload, helpers) => {
  // The batch counts seals, the answer events: only an empty answer means done.
  const total = await inBatches(helpers, "audit_events__purge", { fn: "authhub_private.purge_expired_audit_events", batch: 20, maxTransactions: 50, stopBelow: 1 });
  if (total > 0) helpers.logger.info(`purged ${total} expired audit event(s)`);
};
