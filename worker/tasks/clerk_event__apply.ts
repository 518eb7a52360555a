/**
 * Drains one webhook endpoint's inbox (issue 7): applies its due deliveries in
 * batches, as authhub_worker, each delivery named as the actor of what it
 * changes, by authhub_private.clerk_drain (see its comment for the order, the
 * per-entity lock and the per-delivery backoff). Permanent failures are
 * recorded on the delivery, not retried; one that must wait for its
 * organization or user is due again when the parent lands, or after a backoff.
 *
 * The job is keyed per endpoint and queued only by a delivery that finds no
 * drain running, or by a drain's look for what it leaves (a full batch, a
 * retry later); deliveries that arrive while a drain runs are handed to it. So
 * a burst becomes a few jobs, not one each. The whole transaction is one round
 * trip.
 */
import type { JobHelpers, Task } from "graphile-worker";
import pg from "pg";
import { settingsStatement, UUID_RE } from "../../db/claims.js";
import { jobSettings } from "../jobTransaction.js";

const BATCH = 50;

interface Payload {
  tenant_id: string;
  endpoint_id: string;
}

/** What a drain did with one delivery, and when (epoch milliseconds, database clock) it began applying it. */
export interface Drained {
  svix_id: string;
  outcome: string;
  started_ms: number;
}

/** One drain of the payload's endpoint: what it did with each delivery it took. */
export async function drainEndpoint(payload: unknown, helpers: Pick<JobHelpers, "withPgClient">): Promise<Drained[]> {
  const { tenant_id, endpoint_id } = payload as Payload;
  if (!UUID_RE.test(String(tenant_id)) || !UUID_RE.test(String(endpoint_id))) throw new Error("clerk_event__apply: malformed payload");
  const lit = pg.escapeLiteral;
  return helpers.withPgClient(async (client) => {
    try {
      const results = (await client.query(
        `begin; ${settingsStatement(jobSettings("clerk_event__apply"))};` +
          ` select svix_id, outcome, extract(epoch from started_at)::float8 * 1000 as started_ms` +
          ` from authhub_private.clerk_drain(${lit(tenant_id)}, ${lit(endpoint_id)}, ${BATCH}); commit;`,
      )) as unknown as { rows: Drained[] }[];
      return results[2]!.rows;
    } catch (err) {
      await client.query("rollback").catch(() => undefined);
      throw err;
    }
  });
}

export const clerk_event__apply: Task = async (payload, helpers) => {
  for (const { svix_id, outcome } of await drainEndpoint(payload, helpers)) if (outcome.startsWith("failed")) helpers.logger.warn(`delivery ${svix_id} ${outcome}`);
};
