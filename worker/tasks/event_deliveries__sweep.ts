/**
 * Every minute: endpoints with event deliveries overdue (a worker died holding
 * them, a job was lost) get a send job, so a crash delays an event by about a
 * minute plus its lease, not by graphile-worker's four-hour lock timeout.
 */
import type { Task } from "graphile-worker";
import { inJobTransaction } from "../jobTransaction.js";

export const event_deliveries__sweep: Task = async (_payload, helpers) => {
  const n = await inJobTransaction(
    helpers,
    "event_deliveries__sweep",
    async (client) => (await client.query<{ n: number }>("select authhub_private.sweep_event_deliveries() as n")).rows[0]!.n,
  );
  if (n) helpers.logger.info(`queued sends for ${n} endpoint(s) with overdue events`);
};
