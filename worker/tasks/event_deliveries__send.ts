/**
 * Sends an endpoint's due events (issue 17, DESIGN.md §14): takes what may go
 * now from the outbox (authhub_private.claim_event_deliveries: the oldest
 * pending event of each entity, leased for a minute), sends those in parallel
 * (they are of different entities), records each outcome
 * (authhub_private.record_event_attempt decides retries, failure and disabling,
 * and queues a send for an entity's next event once its head is done). Ordered
 * per entity because an entity's next event is not taken before the one before
 * it is delivered or failed; at least once because an event is recorded
 * delivered only after a 2xx, and a worker that dies leaves its lease to expire.
 *
 * A job does not poll for work that arrives while it runs (each committing
 * transaction queues its own send), so under a steady stream of changes the
 * sends never hold the worker's slots against other tasks: it goes on only
 * while it takes full batches (a backlog).
 */
import type { JobHelpers, Task } from "graphile-worker";
import { UUID_RE } from "../../db/claims.js";
import type { MasterKey } from "../../server/auth/masterKey.js";
import { workerContext } from "../context.js";
import { sendEvent, type Attempt } from "../events/send.js";
import { inJobTransaction } from "../jobTransaction.js";

const TASK = "event_deliveries__send";
/** Deliveries taken at once (one per entity). */
const BATCH = 20;
/** A job working through a backlog hands over to a successor after this long, so one endpoint does not hold a worker slot for ever. */
const MAX_RUN_MS = 10_000;
/** A send that found an event waiting behind one another worker holds looks again after this long. */
const BLOCKED_RETRY_MS = 1_000;

interface Payload {
  tenant_id: string;
  endpoint_id: string;
}

interface Claimed {
  event_id: string;
  attempt: number;
  url: string;
  secret_encrypted: string;
  payload: unknown;
}

export interface SentEvent {
  eventId: string;
  attempt: Attempt;
  outcome: string;
}

function assertPayload(payload: unknown): asserts payload is Payload {
  const p = payload as Partial<Payload> | null;
  if (!p || !UUID_RE.test(String(p.tenant_id)) || !UUID_RE.test(String(p.endpoint_id))) throw new Error(`${TASK}: malformed payload`);
}

async function attemptOne(d: Claimed, masterKey: MasterKey, production: boolean): Promise<Attempt> {
  let secret: string;
  try {
    secret = masterKey.decrypt(d.secret_encrypted);
  } catch {
    // The operator's to fix (a master key missing from AUTHHUB_MASTER_KEY_PREVIOUS): retried like any failure.
    return { status: null, error: "The endpoint's signing secret cannot be opened with the configured master key." };
  }
  return sendEvent({ url: d.url, secret, eventId: d.event_id, body: JSON.stringify(d.payload) }, { production });
}

/** One round: claim, send, record. What was sent, in the order claimed. */
export async function sendRound(payload: Payload, helpers: JobHelpers): Promise<SentEvent[]> {
  const { masterKey, production } = workerContext();
  const claimed = await inJobTransaction(
    helpers,
    TASK,
    async (client) =>
      (
        await client.query<Claimed>("select event_id, attempt, url, secret_encrypted, payload from authhub_private.claim_event_deliveries($1, $2, $3)", [
          payload.tenant_id,
          payload.endpoint_id,
          BATCH,
        ])
      ).rows,
  );
  return Promise.all(
    claimed.map(async (d): Promise<SentEvent> => {
      const attempt = await attemptOne(d, masterKey, production);
      const outcome = await inJobTransaction(
        helpers,
        TASK,
        async (client) =>
          (
            await client.query<{ outcome: string }>("select authhub_private.record_event_attempt($1, $2, $3, $4, $5) as outcome", [
              payload.tenant_id,
              payload.endpoint_id,
              d.event_id,
              attempt.status,
              attempt.error,
            ])
          ).rows[0]!.outcome,
      );
      return { eventId: d.event_id, attempt, outcome };
    }),
  );
}

export const event_deliveries__send: Task = async (payload, helpers) => {
  assertPayload(payload);
  const started = Date.now();
  for (;;) {
    const sent = await sendRound(payload, helpers);
    for (const s of sent) if (s.outcome === "failed") helpers.logger.warn(`event ${s.eventId} failed for good: ${s.attempt.error}`);
    if (sent.length === 0) {
      // Nothing to take, but an event may wait behind one another worker holds: its
      // record queues the next send, unless the event committed just as it finished.
      const blocked = await inJobTransaction(
        helpers,
        TASK,
        async (client) => (await client.query<{ b: boolean }>("select authhub_private.event_deliveries_blocked($1, $2) as b", [payload.tenant_id, payload.endpoint_id])).rows[0]!.b,
      );
      if (blocked) await helpers.addJob(TASK, payload, { runAt: new Date(Date.now() + BLOCKED_RETRY_MS) });
      return;
    }
    if (sent.length < BATCH) return;
    if (Date.now() - started > MAX_RUN_MS) {
      await helpers.addJob(TASK, payload);
      return;
    }
  }
};
