/**
 * Applies one Clerk delivery from the inbox (issue 7): as authhub_worker, with
 * the delivery named as the actor, by authhub_private.clerk_apply, which skips
 * what is older than what is stored or about a deleted entity, and records
 * permanent failures on the delivery instead of retrying them. An event whose
 * organization or user has not arrived yet is retried (graphile-worker backs
 * off; the parent's own job re-queues it as soon as the parent lands).
 *
 * The whole transaction is one round trip (the job's inJobTransaction shape,
 * sent as one simple query): this job runs for every delivery.
 */
import type { Task } from "graphile-worker";
import pg from "pg";
import { UUID_RE } from "../../db/claims.js";

interface Payload {
  tenant_id: string;
  endpoint_id: string;
  svix_id: string;
}

export class WaitingForParent extends Error {}

export const clerk_event__apply: Task = async (payload, helpers) => {
  const { tenant_id, endpoint_id, svix_id } = payload as Payload;
  if (!UUID_RE.test(String(tenant_id)) || !UUID_RE.test(String(endpoint_id)) || !/^[A-Za-z0-9_.:-]{1,100}$/.test(String(svix_id))) {
    throw new Error("clerk_event__apply: malformed payload");
  }
  const lit = pg.escapeLiteral;
  const outcome = await helpers.withPgClient(async (client) => {
    try {
      const results = (await client.query(
        `begin; select set_config('role', 'authhub_worker', true), set_config('authhub.actor', 'system:clerk_event__apply', true);` +
          ` select authhub_private.clerk_apply(${lit(tenant_id)}, ${lit(endpoint_id)}, ${lit(svix_id)}) as outcome; commit;`,
      )) as unknown as { rows: { outcome?: string }[] }[];
      return String(results[2]!.rows[0]!.outcome);
    } catch (err) {
      await client.query("rollback").catch(() => undefined);
      throw err;
    }
  });
  if (outcome === "retry") throw new WaitingForParent(`delivery ${svix_id} waits for its organization or user`);
  if (outcome.startsWith("failed")) helpers.logger.warn(`delivery ${svix_id} ${outcome}`);
};
