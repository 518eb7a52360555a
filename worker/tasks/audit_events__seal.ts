/** Seals each tenant's finished audit events into its hash chain (authhub_private.seal_audit_events). */
import type { Task } from "graphile-worker";
import { inJobTransaction } from "../jobTransaction.js";

export const audit_events__seal: Task = async (_payload, helpers) => {
  const sealed = await inJobTransaction(helpers, "audit_events__seal", async (client) => {
    const { rows } = await client.query<{ sealed: number }>("select authhub_private.seal_audit_events() as sealed");
    return rows[0]!.sealed;
  });
  if (sealed > 0) helpers.logger.info(`sealed ${sealed} tenant range(s)`);
};
