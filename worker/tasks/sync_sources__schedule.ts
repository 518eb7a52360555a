/**
 * Every minute: each enabled pull source has a pending job. A chain ends only
 * when its job fails beyond its attempts (a crash, not a store failure, which
 * the job handles with backoff) or the worker lost it; this restarts it
 * without disturbing a pending one (its run time is kept).
 */
import type { Task } from "graphile-worker";
import { inJobTransaction } from "../jobTransaction.js";
import { queuePull } from "./sync_source__pull.js";

export const sync_sources__schedule: Task = async (_payload, helpers) => {
  const sources = await inJobTransaction(
    helpers,
    "sync_sources__schedule",
    async (client) => (await client.query<{ tenant_id: string; id: string }>("select tenant_id, id from retail_private.sync_sources where enabled")).rows,
  );
  for (const s of sources) await queuePull(helpers, { tenant_id: s.tenant_id, source_id: s.id }, 0, "preserve_run_at");
};
