/**
 * Identity-sync benchmarks (issue 7), run by bench/run.ts: Clerk deliveries
 * posted to the receiver (signed, verified, stored and queued) and applied by
 * the real clerk_event__apply task (the endpoint's drain) until done, against
 * raw add_job calls with a no-op task, with the same worker and concurrency
 * (target ≥ 0.5); and the p99 from a delivery's acceptance (or add_job's
 * return) to its application starting (target ≤ 2×). A delivery's start is
 * the start of the drain transaction that applied it (its processed_at), its
 * acceptance its received_at, both read from the inbox.
 */
import { Logger, run, type Task } from "graphile-worker";
import pg from "pg";
import { Webhook } from "svix";
import type { MasterKey } from "../server/auth/masterKey.js";
import { createWebhookEndpoint } from "../server/webhooks/endpoints.js";
import { tasks } from "../worker/tasks/index.js";

export async function measureWebhooks(options: { owner: pg.Pool; ownerUrl: string; base: string; masterKey: MasterKey; tenantId: string; count: number; concurrency: number }) {
  const { owner, ownerUrl, base, masterKey, tenantId, count, concurrency } = options;
  const endpoint = await createWebhookEndpoint(owner, masterKey, { name: "bench", issuer: "https://clerk.bench.example", tenantId });
  const signer = new Webhook(endpoint.secret);
  const starts = new Map<string, number>();
  const accepted = new Map<string, number>();
  let done = 0;
  const taskList = {
    clerk_event__apply: tasks.clerk_event__apply as Task,
    bench__noop: (async (payload) => {
      starts.set((payload as { id: string }).id, performance.now());
      done++;
    }) as Task,
  };
  // The worker's own pool, as `npm start` gives it (jobs plus its LISTEN connection).
  const workerPool = new pg.Pool({ connectionString: ownerUrl, max: concurrency + 2 });
  workerPool.on("error", () => undefined);
  workerPool.on("connect", (c) => c.on("error", () => undefined));
  const runner = await run({ pgPool: workerPool, taskList, concurrency, noHandleSignals: true, pollInterval: 1000, logger: new Logger(() => () => undefined) });
  const waitDone = async (target: number) => {
    while (done < target) await new Promise((r) => setTimeout(r, 5));
  };
  const waitApplied = async (ids: string[]) => {
    for (;;) {
      const { rows } = await owner.query<{ n: number }>("select count(*)::int as n from authhub.webhook_deliveries where endpoint_id = $1 and svix_id = any($2) and state <> 'pending'", [endpoint.id, ids]);
      if (rows[0]!.n >= ids.length) return;
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const inParallel = async (n: number, fn: (i: number) => Promise<void>) => {
    let next = 0;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < n) await fn(next++);
    }));
  };
  const p99 = (xs: number[]) => {
    xs.sort((a, b) => a - b);
    return xs[Math.min(xs.length - 1, Math.floor(0.99 * xs.length))]!;
  };
  let rawDone = 0;
  const once = async (count: number, tag: string) => {
    // Webhooks: delivered, verified, stored + queued, applied.
    const hookIds = Array.from({ length: count }, (_, i) => `msg_bench_${process.pid}_${tag}_${i}`);
    let t = performance.now();
    await inParallel(count, async (i) => {
      const id = hookIds[i]!;
      const body = JSON.stringify({
        type: "user.created",
        object: "event",
        data: { id: `user_bench_${tag}_${i}`, primary_email_address_id: "e", email_addresses: [{ id: "e", email_address: `hook${tag}_${i}@bench.test` }], updated_at: Date.now() },
      });
      const now = new Date();
      const res = await fetch(`${base}${endpoint.path}`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "svix-id": id, "svix-timestamp": String(Math.floor(now.getTime() / 1000)), "svix-signature": signer.sign(id, now, body) },
        body,
      });
      if (res.status !== 202) throw new Error(`webhook: ${res.status} ${await res.text()}`);
    });
    await waitApplied(hookIds);
    const hooksMs = performance.now() - t;
    const hookWaits = (
      await owner.query<{ ms: number }>(
        "select extract(epoch from processed_at - received_at) * 1000 as ms from authhub.webhook_deliveries where endpoint_id = $1 and svix_id = any($2)",
        [endpoint.id, hookIds],
      )
    ).rows.map((r) => Number(r.ms));
    const failed = (await owner.query("select count(*)::int as n from authhub.webhook_deliveries where endpoint_id = $1 and svix_id = any($2) and state <> 'done'", [endpoint.id, hookIds])).rows[0].n;
    if (failed) throw new Error(`webhook: ${failed} deliveries not applied`);
    // Raw add_job with a no-op task, same worker, same concurrency.
    const rawIds = Array.from({ length: count }, (_, i) => `raw_${tag}_${i}`);
    t = performance.now();
    await inParallel(count, async (i) => {
      await owner.query("select graphile_worker.add_job('bench__noop', json_build_object('id', $1::text))", [rawIds[i]]);
      accepted.set(rawIds[i]!, performance.now());
    });
    await waitDone(rawDone + count);
    rawDone += count;
    const rawMs = performance.now() - t;
    const rawWaits = rawIds.map((id) => starts.get(id)! - accepted.get(id)!);
    return { hooksPerSecond: (count / hooksMs) * 1000, rawPerSecond: (count / rawMs) * 1000, hooksP99: p99(hookWaits), rawP99: p99(rawWaits) };
  };
  try {
    // A warm-up pass (plans, connections, JIT), as the other benchmarks have, then the measured one.
    await once(Math.min(100, count), "warm");
    return await once(count, "run");
  } finally {
    await runner.stop();
    await workerPool.end();
  }
}
