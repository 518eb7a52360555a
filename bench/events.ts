/**
 * Outbound events benchmarks (issue 17, DESIGN.md §14), to be run by
 * bench/run.ts, against raw graphile-worker on the same worker (same pool,
 * same concurrency): `add_job` and a no-op task.
 *
 *  - Change committed → first delivery attempt, p99 (target ≤ 1 s) at a steady
 *    100 changes/s: each tick commits one user change (a tenant with an event
 *    endpoint, spread over 50 users, as admins' edits are) and adds one raw job;
 *    an event's time is from its UPDATE's return (committed) to its request
 *    reaching a local receiver (the first attempt), the raw job's from add_job's
 *    return to the no-op task's start.
 *  - Throughput (reported): bursts of changes at the shared concurrency until
 *    the receiver has every event (outbox trigger, send job, claim, signing,
 *    HTTP, record), against bursts of as many add_job calls run to the end of
 *    their no-op task; rounds alternate which side goes first. The ratio is
 *    events/s ÷ raw jobs/s.
 *
 * The worker runs the real event_deliveries__send task; the receiver answers
 * 204 at once and verifies nothing (the tests verify signatures).
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Logger, run, type Task } from "graphile-worker";
import pg from "pg";
import type { MasterKey } from "../server/auth/masterKey.js";
import { createEventEndpoint } from "../server/events/endpoints.js";
import { configureWorker } from "../worker/context.js";
import { tasks } from "../worker/tasks/index.js";
import { percentile } from "./stats.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface EventsBenchResult {
  /** Changes per second during the steady phase. */
  perSecond: number;
  /** Change committed → first delivery attempt at `perSecond`: p50, p99 (ms). */
  firstAttemptP50: number;
  firstAttemptP99: number;
  /** add_job → no-op start at the same rate, p99 (ms). */
  rawP99: number;
  /** Bursts: events delivered per second, raw jobs run per second, and their ratio. */
  eventsPerSecond: number;
  rawPerSecond: number;
  throughputRatio: number;
}

export async function measureEvents(options: {
  owner: pg.Pool;
  ownerUrl: string;
  masterKey: MasterKey;
  tenantId: string;
  /** Changes per burst, and rounds of bursts. */
  count: number;
  rounds: number;
  concurrency: number;
  /** The steady phase: how many changes, at what rate (default 100/s). */
  paced: { count: number; perSecond: number };
}): Promise<EventsBenchResult> {
  const { owner, ownerUrl, masterKey, tenantId, count, rounds, concurrency, paced } = options;

  // The receiver: when each event's first attempt arrived, by the tag in its body.
  const arrived = new Map<string, number>();
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const t = performance.now();
      const tag = (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { data: { displayName: string } }).data.displayName;
      if (!arrived.has(tag)) arrived.set(tag, t);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/events`;

  // Users to change (created before the endpoint, so their creation sends nothing).
  const { rows: users } = await owner.query<{ id: string }>(
    `insert into authhub.users (tenant_id, email) select $1, 'events-bench-' || g || '-' || $2 || '@bench.test' from generate_series(1, 50) g returning id`,
    [tenantId, process.pid],
  );
  const endpoint = await createEventEndpoint(owner, masterKey, { url, eventTypes: ["identity.user.updated"], tenantId }, { production: false });

  const committed = new Map<string, number>();
  const rawStarted = new Map<string, number>();
  const rawAdded = new Map<string, number>();
  let rawDone = 0;
  configureWorker({ masterKey, clerkApiUrl: "http://127.0.0.1:9", production: false });
  const taskList = {
    event_deliveries__send: tasks.event_deliveries__send!,
    bench__noop: (async (payload) => {
      rawStarted.set((payload as { id: string }).id, performance.now());
      rawDone++;
    }) as Task,
  };
  const workerPool = new pg.Pool({ connectionString: ownerUrl, max: concurrency + 2 });
  workerPool.on("error", () => undefined);
  workerPool.on("connect", (c) => c.on("error", () => undefined));
  const runner = await run({ pgPool: workerPool, taskList, concurrency, noHandleSignals: true, pollInterval: 1000, logger: new Logger(() => () => undefined) });

  const change = async (tag: string, i: number) => {
    await owner.query("update authhub.users set display_name = $3 where tenant_id = $1 and id = $2", [tenantId, users[i % users.length]!.id, tag]);
    committed.set(tag, performance.now());
  };
  const addJob = async (id: string) => {
    await owner.query("select graphile_worker.add_job('bench__noop', json_build_object('id', $1::text))", [id]);
    rawAdded.set(id, performance.now());
  };
  const until = async (what: string, done: () => boolean, timeoutMs = 120_000) => {
    const deadline = performance.now() + timeoutMs;
    while (!done()) {
      if (performance.now() > deadline) throw new Error(`events bench: timed out waiting for ${what}`);
      await sleep(2);
    }
  };
  const atConcurrency = async (n: number, fn: (i: number) => Promise<void>) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < n) await fn(next++);
      }),
    );
  };

  const eventBurst = async (tag: string, n: number) => {
    const tags = Array.from({ length: n }, (_, i) => `${tag}-${i}`);
    const t = performance.now();
    await atConcurrency(n, (i) => change(tags[i]!, i));
    await until("a burst's events", () => tags.every((x) => arrived.has(x)));
    return performance.now() - t;
  };
  const rawBurst = async (tag: string, n: number) => {
    const target = rawDone + n;
    const t = performance.now();
    await atConcurrency(n, (i) => addJob(`${tag}-${i}`));
    await until("a burst's raw jobs", () => rawDone >= target);
    return performance.now() - t;
  };
  const bursts = async (tag: string, n: number, r: number) => {
    let eventsMs = 0;
    let rawMs = 0;
    for (let round = 0; round < r; round++) {
      const sides = [
        async () => {
          eventsMs += await eventBurst(`${tag}e${round}`, n);
        },
        async () => {
          rawMs += await rawBurst(`${tag}r${round}`, n);
        },
      ];
      if (round % 2) sides.reverse();
      for (const side of sides) await side();
    }
    return { eventsPerSecond: ((n * r) / eventsMs) * 1000, rawPerSecond: ((n * r) / rawMs) * 1000 };
  };
  // Side by side on one schedule, so both meet the same moment's noise.
  const steady = async (tag: string, n: number) => {
    const tags = Array.from({ length: n }, (_, i) => `${tag}-${i}`);
    const rawIds = tags.map((t) => `${t}-raw`);
    const target = rawDone + n;
    const t0 = performance.now();
    const sent: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) {
      const wait = t0 + (i * 1000) / paced.perSecond - performance.now();
      if (wait > 0) await sleep(wait);
      sent.push(Promise.all([change(tags[i]!, i), addJob(rawIds[i]!)]));
    }
    await Promise.all(sent);
    await until("the steady phase's events", () => tags.every((x) => arrived.has(x)) && rawDone >= target);
    const latencies = tags.map((x) => arrived.get(x)! - committed.get(x)!);
    return {
      firstAttemptP50: percentile(latencies, 50),
      firstAttemptP99: percentile(latencies, 99),
      rawP99: percentile(
        rawIds.map((id) => rawStarted.get(id)! - rawAdded.get(id)!),
        99,
      ),
    };
  };

  try {
    // A warm-up (plans, connections), then statistics as autovacuum would keep them.
    await bursts("warm", Math.min(100, count), 1);
    await steady("steady-warm", Math.min(100, paced.count));
    await owner.query("analyze authhub.events, authhub.event_deliveries, authhub.event_endpoints, authhub.users, graphile_worker._private_jobs");
    const throughput = await bursts("burst", count, rounds);
    const latency = await steady("steady", paced.count);
    return { perSecond: paced.perSecond, ...latency, ...throughput, throughputRatio: throughput.eventsPerSecond / throughput.rawPerSecond };
  } finally {
    await runner.stop();
    await workerPool.end();
    await new Promise<void>((resolve) => receiver.close(() => resolve()));
    await owner.query("delete from authhub.event_endpoints where id = $1", [endpoint.id]);
  }
}
