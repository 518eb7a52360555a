/**
 * Identity-sync benchmarks (issue 7), run by bench/run.ts, against raw
 * graphile-worker: add_job, and a no-op task, on the same worker (same pool,
 * same concurrency).
 *
 *  - Throughput (target ≥ 0.5): bursts of Clerk deliveries posted to the
 *    receiver at the shared concurrency (signed, verified, stored, and handed to
 *    a drain),
 *    each until the real clerk_event__apply drain has applied every one, against
 *    bursts of as many add_job calls run to the end of their no-op task; rounds
 *    alternate which side goes first.
 *  - Accept-to-start p99 (target ≤ 2×): deliveries at a steady rate the system
 *    sustains (`perSecond`, the same for both sides, sent on schedule whatever
 *    the answers), from the moment the sender has its 202 to the moment the
 *    drain begins applying it, against add_job's return to the no-op task's
 *    start. A drain applies several deliveries in one call, so its start is read
 *    from the database's clock, mapped onto this process's by the quickest of 20
 *    round trips. Reported beside it, stricter: the p99 to the drain's commit
 *    (when the change is visible), at that rate and during the throughput
 *    bursts, where a queue forms on both sides and the slower side's is longer.
 *
 *  - Webhook to effect (issue 7, item 4; reported): a Clerk role change sent,
 *    until the user's next /v1/authorize answers accordingly, asked in a loop.
 *
 * After the warm-up, the tables it wrote are analyzed, as autovacuum would
 * have done in a running system: plans made while the inbox was empty scan it
 * whole, and a minute passes before autovacuum's first look.
 *
 * The sender's work is not the receiver's: every delivery is signed before the
 * clock starts, and sent with node:http over kept-alive connections. The drain
 * is timed by wrapping the task's own function (drainEndpoint), so completion
 * is counted without polling the database.
 */
import { Logger, run, type Task } from "graphile-worker";
import http from "node:http";
import pg from "pg";
import { Webhook } from "svix";
import type { Identity } from "../db/claims.js";
import type { MasterKey } from "../server/auth/masterKey.js";
import { createWebhookEndpoint } from "../server/webhooks/endpoints.js";
import { drainEndpoint } from "../worker/tasks/clerk_event__apply.js";
import type { BenchContext } from "./context.js";
import { figuresRow, median, percentile, type Row } from "./stats.js";

interface Delivery {
  id: string;
  body: string;
  headers: Record<string, string>;
}

const p99 = (xs: number[]) => percentile(xs, 99);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function measureWebhooks(
  ctx: BenchContext,
  server: {
    base: string;
    masterKey: MasterKey;
    /** Mints an access token for a user, for the webhook-to-effect measure. */
    mint: (identity: Identity) => Promise<string>;
  },
  effects = 60,
): Promise<Row[]> {
  const { owner, ownerUrl, sizes } = ctx;
  const { base, masterKey, mint } = server;
  const tenantId = ctx.small.tenantId;
  const { rounds, httpConcurrency: concurrency, httpPerRound: count } = sizes;
  const paced = { count: sizes.webhookSteadyCount, perSecond: sizes.webhookSteadyRate };
  const endpoint = await createWebhookEndpoint(owner, masterKey, { name: "bench", issuer: "https://clerk.bench.example", tenantId });
  const signer = new Webhook(endpoint.secret);
  const url = new URL(`${base}${endpoint.path}`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency * 4 });

  // When each delivery's (or raw job's) job started, and how many are done.
  const started = new Map<string, number>();
  // Delivery: when its application began, database clock (epoch ms); when the drain that applied it had committed.
  const startedDb = new Map<string, number>();
  const committed = new Map<string, number>();
  const answered = new Map<string, number>();
  const notDone: string[] = [];
  let applied = 0;
  let rawDone = 0;
  const taskList = {
    clerk_event__apply: (async (payload, helpers) => {
      const drained = await drainEndpoint(payload, helpers);
      const t = performance.now();
      for (const { svix_id, outcome, started_ms } of drained) {
        startedDb.set(svix_id, started_ms);
        committed.set(svix_id, t);
        if (outcome === "done") applied++;
        else notDone.push(`${svix_id}: ${outcome}`);
      }
    }) as Task,
    bench__noop: (async (payload) => {
      started.set((payload as { id: string }).id, performance.now());
      rawDone++;
    }) as Task,
  };
  // The worker's own pool, as `npm start` gives it (jobs plus its LISTEN connection).
  const workerPool = new pg.Pool({ connectionString: ownerUrl, max: concurrency + 2 });
  workerPool.on("error", () => undefined);
  workerPool.on("connect", (c) => c.on("error", () => undefined));
  const runner = await run({ pgPool: workerPool, taskList, concurrency, noHandleSignals: true, pollInterval: 1000, logger: new Logger(() => () => undefined) });

  const until = async (done: () => boolean) => {
    while (!done()) {
      if (notDone.length) throw new Error(`webhooks not applied: ${notDone.slice(0, 3).join("; ")}`);
      await sleep(1);
    }
  };
  const signed = (id: string, event: unknown): Delivery => {
    const body = JSON.stringify(event);
    const now = new Date();
    return {
      id,
      body,
      headers: { "Content-Type": "application/json", "svix-id": id, "svix-timestamp": String(Math.floor(now.getTime() / 1000)), "svix-signature": signer.sign(id, now, body) },
    };
  };
  const prepare = (tag: string, n: number): Delivery[] =>
    Array.from({ length: n }, (_, i) =>
      signed(`msg_bench_${process.pid}_${tag}_${i}`, {
        type: "user.created",
        object: "event",
        data: { id: `user_bench_${tag}_${i}`, primary_email_address_id: "e", email_addresses: [{ id: "e", email_address: `hook${tag}_${i}@bench.test` }], updated_at: Date.now() },
      }),
    );
  // A kept-alive socket the server closes just as it is reused fails with ECONNRESET before the
  // request reached the server: sent again once, as HTTP clients do (the same svix-id, so a
  // delivery that did arrive is not applied twice).
  const deliver = (d: Delivery): Promise<void> =>
    deliverOnce(d).catch((err: unknown) => {
      if ((err as { code?: string }).code === "ECONNRESET") return deliverOnce(d);
      throw err;
    });
  const deliverOnce = (d: Delivery) =>
    new Promise<void>((resolve, reject) => {
      const req = http.request(url, { method: "POST", agent, headers: { ...d.headers, "Content-Length": Buffer.byteLength(d.body) } }, (res) => {
        res.resume();
        res.on("end", () => {
          answered.set(d.id, performance.now());
          if (res.statusCode === 202) resolve();
          else reject(new Error(`webhook: ${res.statusCode}`));
        });
      });
      req.on("error", reject);
      req.end(d.body);
    });
  const addJob = async (id: string) => {
    await owner.query("select graphile_worker.add_job('bench__noop', json_build_object('id', $1::text))", [id]);
    answered.set(id, performance.now());
  };
  const atConcurrency = async (n: number, fn: (i: number) => Promise<void>) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < n) await fn(next++);
      }),
    );
  };
  const onSchedule = async (n: number, fn: (i: number) => Promise<void>) => {
    const t0 = performance.now();
    const sent: Promise<void>[] = [];
    // Failures are held until every send is out: a rejection nobody awaits yet would end the process.
    const failures: unknown[] = [];
    for (let i = 0; i < n; i++) {
      const wait = t0 + (i * 1000) / paced.perSecond - performance.now();
      if (wait > 0) await sleep(wait);
      sent.push(fn(i).catch((err: unknown) => void failures.push(err)));
    }
    await Promise.all(sent);
    if (failures.length) throw new Error(`${failures.length} of ${n} paced sends failed`, { cause: failures[0] });
  };
  // The database clock's reading minus this process's (performance.timeOrigin + now()), from the quickest of 20 round trips.
  const clockSkew = async () => {
    let best = { rtt: Infinity, skew: 0 };
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      const { rows } = await owner.query<{ ms: number }>("select extract(epoch from clock_timestamp())::float8 * 1000 as ms");
      const t1 = performance.now();
      if (t1 - t0 < best.rtt) best = { rtt: t1 - t0, skew: rows[0]!.ms - (performance.timeOrigin + (t0 + t1) / 2) };
    }
    return best.skew;
  };
  // From the sender's 202 to the application's start (database clock), or to the drain's commit (this process's clock).
  const hookStarts = async (ids: string[]) => {
    const skew = await clockSkew();
    return ids.map((id) => startedDb.get(id)! - skew - performance.timeOrigin - answered.get(id)!);
  };
  const hookWaits = (ids: string[]) => ids.map((id) => committed.get(id)! - answered.get(id)!);
  // From add_job's return to the no-op task's start.
  const waits = (ids: string[]) => ids.map((id) => started.get(id)! - answered.get(id)!);

  // One burst of deliveries, or of raw jobs, at the shared concurrency: how long until all are done, and their waits.
  const hookBurst = async (tag: string, n: number) => {
    const hooks = prepare(tag, n);
    const target = applied + n;
    const t = performance.now();
    await atConcurrency(n, (i) => deliver(hooks[i]!));
    await until(() => applied >= target);
    return { ms: performance.now() - t, waits: hookWaits(hooks.map((h) => h.id)) };
  };
  const rawBurst = async (tag: string, n: number) => {
    const rawIds = Array.from({ length: n }, (_, i) => `raw_${tag}_${i}`);
    const target = rawDone + n;
    const t = performance.now();
    await atConcurrency(n, (i) => addJob(rawIds[i]!));
    await until(() => rawDone >= target);
    return { ms: performance.now() - t, waits: waits(rawIds) };
  };
  // Rounds alternate which side goes first, so drift and noise land on both alike; each round gives its own ratios.
  const bursts = async (tag: string, n: number, rounds: number) => {
    const perRound: { hooksPerSecond: number; rawPerSecond: number; hooksCommitP99: number; rawP99: number }[] = [];
    for (let round = 0; round < rounds; round++) {
      let hooks = { ms: 0, waits: [] as number[] };
      let raw = { ms: 0, waits: [] as number[] };
      const sides = [
        async () => {
          hooks = await hookBurst(`${tag}${round}`, n);
        },
        async () => {
          raw = await rawBurst(`${tag}${round}`, n);
        },
      ];
      if (round % 2) sides.reverse();
      for (const side of sides) await side();
      perRound.push({ hooksPerSecond: (n / hooks.ms) * 1000, rawPerSecond: (n / raw.ms) * 1000, hooksCommitP99: p99(hooks.waits), rawP99: p99(raw.waits) });
    }
    return perRound;
  };
  // Side by side: each tick sends one delivery and adds one raw job, so both meet the same moment's noise.
  const steady = async (tag: string, n: number) => {
    const hooks = prepare(tag, n);
    const rawIds = Array.from({ length: n }, (_, i) => `raw_${tag}_${i}`);
    const target = applied + n;
    const rawTarget = rawDone + n;
    await onSchedule(n, (i) => Promise.all([deliver(hooks[i]!), addJob(rawIds[i]!)]).then(() => undefined));
    await until(() => applied >= target && rawDone >= rawTarget);
    const ids = hooks.map((h) => h.id);
    return { hooksStartP99: p99(await hookStarts(ids)), hooksCommitP99: p99(hookWaits(ids)), rawP99: p99(waits(rawIds)) };
  };
  // Webhook to effect (issue 7, item 4): a Clerk role change (org:member ⇄ org:admin) from
  // the moment it is sent until /v1/authorize, asked again and again as that user, answers
  // accordingly: receipt, the drain, its commit, and the next request.
  const toEffect = async (n: number) => {
    const t0 = Date.now();
    const user = `user_effect_${endpoint.id.slice(0, 8)}`;
    const org = `org_effect_${endpoint.id.slice(0, 8)}`;
    const setUp = [
      signed(`msg_effect_${process.pid}_user`, {
        type: "user.created",
        object: "event",
        data: { id: user, primary_email_address_id: "e", email_addresses: [{ id: "e", email_address: `${user}@bench.test` }], updated_at: t0 },
      }),
      signed(`msg_effect_${process.pid}_org`, { type: "organization.created", object: "event", data: { id: org, name: "Effect", slug: org.replaceAll("_", "-"), updated_at: t0 } }),
    ];
    const membership = (i: number, role: string) =>
      signed(`msg_effect_${process.pid}_${i}`, {
        type: i === 0 ? "organizationMembership.created" : "organizationMembership.updated",
        object: "event",
        data: { id: `orgmem_${org}`, role, organization: { id: org }, public_user_data: { user_id: user }, updated_at: t0 + i },
      });
    const target = applied + 3;
    for (const d of setUp) await deliver(d);
    await deliver(membership(0, "org:member"));
    await until(() => applied >= target);
    const { rows } = await owner.query<{ user_id: string; organization_id: string }>(
      "select m.user_id, m.organization_id from authhub.memberships m join authhub.users u on u.id = m.user_id where u.tenant_id = $1 and u.external_id = $2",
      [tenantId, user],
    );
    const token = await mint({ userId: rows[0]!.user_id, tenantId, level: "ORG_ADMIN" });
    const canWrite = async () => {
      const res = await fetch(`${base}/v1/authorize`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
        body: JSON.stringify({ permission: "org:write", organizationId: rows[0]!.organization_id }),
      });
      return ((await res.json()) as { allowed: boolean }).allowed;
    };
    if (await canWrite()) throw new Error("effect: an org:member may not write");
    const ms: number[] = [];
    for (let i = 1; i <= n; i++) {
      const admin = i % 2 === 1;
      const change = membership(i, admin ? "org:admin" : "org:member");
      const t = performance.now();
      await deliver(change);
      while ((await canWrite()) !== admin) if (performance.now() - t > 5000) throw new Error("effect: not applied within 5 s");
      ms.push(performance.now() - t);
      await sleep(20);
    }
    ms.sort((a, b) => a - b);
    return { effectP50: percentile(ms, 50), effectP99: p99(ms), effectMax: ms.at(-1)! };
  };

  try {
    process.stderr.write("webhooks: delivered and applied…\n");
    // A warm-up (plans, connections, JIT), as the other benchmarks have, then the measured passes.
    await bursts("burst_warm", Math.min(100, count), 1);
    await steady("steady_warm", Math.min(100, paced.count));
    // Statistics for what the warm-up wrote, as autovacuum keeps them in a running system (its
    // first look comes a minute on): plans made while the inbox was empty scan it whole.
    await owner.query("analyze authhub.webhook_deliveries, authhub_private.clerk_entities, authhub.users, authhub.audit_events, graphile_worker._private_jobs");
    const burst = await bursts("burst", count, rounds);
    const steadyRounds = [];
    for (let round = 0; round < rounds; round++) steadyRounds.push(await steady(`steady${round}`, paced.count));
    const effect = await toEffect(effects);
    const med = (xs: number[]) => median(xs).toFixed(1);
    return [
      figuresRow({
        benchmark: "Webhooks: delivered + applied per second ÷ raw add_job + no-op task (same worker, concurrency)",
        perRound: burst.map((r) => r.hooksPerSecond / r.rawPerSecond),
        target: { atLeast: 0.5 },
        detail: `webhooks ${med(burst.map((r) => r.hooksPerSecond))}/s; raw ${med(burst.map((r) => r.rawPerSecond))}/s (medians of rounds of ${count})`,
      }),
      figuresRow({
        benchmark: `Webhooks: accept-to-start p99 ÷ raw add_job-to-start p99 (${paced.perSecond}/s, side by side)`,
        perRound: steadyRounds.map((r) => r.hooksStartP99 / r.rawP99),
        target: { atMost: 2 },
        detail:
          `webhook p99 ${med(steadyRounds.map((r) => r.hooksStartP99))} ms (202 to the start of its application); raw p99 ${med(steadyRounds.map((r) => r.rawP99))} ms (medians of rounds of ${paced.count}); ` +
          `webhook to effect (a role change sent until /v1/authorize answers accordingly, ${effects} changes): p50 ${effect.effectP50.toFixed(1)} ms, p99 ${effect.effectP99.toFixed(1)} ms, max ${effect.effectMax.toFixed(1)} ms`,
      }),
      figuresRow({
        benchmark: `Webhooks: accept-to-commit p99 ÷ raw add_job-to-start p99 (${paced.perSecond}/s, side by side)`,
        perRound: steadyRounds.map((r) => r.hooksCommitP99 / r.rawP99),
        target: "report",
        detail: `webhook p99 ${med(steadyRounds.map((r) => r.hooksCommitP99))} ms (202 to the drain's commit: the change is visible); raw p99 ${med(steadyRounds.map((r) => r.rawP99))} ms`,
      }),
      figuresRow({
        benchmark: "Webhooks: accept-to-commit p99 ÷ raw add_job-to-start p99, during the throughput bursts",
        perRound: burst.map((r) => r.hooksCommitP99 / r.rawP99),
        target: "report",
        detail: `webhook p99 ${med(burst.map((r) => r.hooksCommitP99))} ms; raw p99 ${med(burst.map((r) => r.rawP99))} ms (a queue forms on both sides)`,
      }),
    ];
  } finally {
    await runner.stop();
    await workerPool.end();
    agent.destroy();
  }
}
