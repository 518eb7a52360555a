/**
 * Identity-sync benchmarks (issue 7), run by bench/run.ts: Clerk deliveries
 * posted to the receiver (signed, verified, stored and queued) and applied by
 * the real clerk_event__apply task until done, against raw add_job calls with a
 * no-op task, with the same worker and concurrency (target ≥ 0.5); and the
 * p99 from a delivery's acceptance (or add_job's return) to its job starting
 * (target ≤ 2×).
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
  const real = tasks.clerk_event__apply as Task;
  const taskList = {
    clerk_event__apply: (async (payload, helpers) => {
      starts.set((payload as { svix_id: string }).svix_id, performance.now());
      await real(payload, helpers);
      done++;
    }) as Task,
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
  const inParallel = async (n: number, fn: (i: number) => Promise<void>) => {
    let next = 0;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < n) await fn(next++);
    }));
  };
  const p99 = (ids: string[]) => {
    const xs = ids.map((id) => starts.get(id)! - accepted.get(id)!).sort((a, b) => a - b);
    return xs[Math.min(xs.length - 1, Math.floor(0.99 * xs.length))]!;
  };
  try {
    // Webhooks: delivered, verified, stored + queued, applied.
    const hookIds = Array.from({ length: count }, (_, i) => `msg_bench_${process.pid}_${i}`);
    let t = performance.now();
    await inParallel(count, async (i) => {
      const id = hookIds[i]!;
      const body = JSON.stringify({
        type: "user.created",
        object: "event",
        data: { id: `user_bench_${i}`, primary_email_address_id: "e", email_addresses: [{ id: "e", email_address: `hook${i}@bench.test` }], updated_at: Date.now() },
      });
      const now = new Date();
      const res = await fetch(`${base}${endpoint.path}`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "svix-id": id, "svix-timestamp": String(Math.floor(now.getTime() / 1000)), "svix-signature": signer.sign(id, now, body) },
        body,
      });
      if (res.status !== 202) throw new Error(`webhook: ${res.status} ${await res.text()}`);
      accepted.set(id, performance.now());
    });
    await waitDone(count);
    const hooksMs = performance.now() - t;
    // Raw add_job with a no-op task, same worker, same concurrency.
    const rawIds = Array.from({ length: count }, (_, i) => `raw_${i}`);
    t = performance.now();
    await inParallel(count, async (i) => {
      await owner.query("select graphile_worker.add_job('bench__noop', json_build_object('id', $1::text))", [rawIds[i]]);
      accepted.set(rawIds[i]!, performance.now());
    });
    await waitDone(2 * count);
    const rawMs = performance.now() - t;
    return { hooksPerSecond: (count / hooksMs) * 1000, rawPerSecond: (count / rawMs) * 1000, hooksP99: p99(hookIds), rawP99: p99(rawIds) };
  } finally {
    await runner.stop();
    await workerPool.end();
  }
}
