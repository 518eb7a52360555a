/**
 * Applies one Clerk delivery from the inbox (issue 7): as authhub_worker, with
 * the delivery named as the actor, by authhub_private.clerk_apply, which skips
 * what is older than what is stored or about a deleted entity, and records
 * permanent failures on the delivery instead of retrying them. An event whose
 * organization or user has not arrived yet is retried (graphile-worker backs
 * off; the parent's own job re-queues it as soon as the parent lands).
 */
import type { Task } from "graphile-worker";
import { inJobTransaction } from "../jobTransaction.js";

interface Payload {
  tenant_id: string;
  endpoint_id: string;
  svix_id: string;
}

export class WaitingForParent extends Error {}

export const clerk_event__apply: Task = async (payload, helpers) => {
  const { tenant_id, endpoint_id, svix_id } = payload as Payload;
  const outcome = await inJobTransaction(helpers, "clerk_event__apply", async (client) => {
    const { rows } = await client.query<{ outcome: string }>("select authhub_private.clerk_apply($1, $2, $3) as outcome", [tenant_id, endpoint_id, svix_id]);
    return rows[0]!.outcome;
  });
  if (outcome === "retry") throw new WaitingForParent(`delivery ${svix_id} waits for its organization or user`);
  if (outcome.startsWith("failed")) helpers.logger.warn(`delivery ${svix_id} ${outcome}`);
};
