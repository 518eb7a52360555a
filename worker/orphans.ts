/**
 * Jobs a dead worker held. graphile-worker leaves a job (and its named queue)
 * locked by a worker that died without stopping (SIGKILL, out of memory, a lost
 * host) for four hours before anyone may take it: a rollup fold or a webhook
 * drain cut off by a crash would wait that long. Here each worker pool holds a
 * session advisory lock named after its id for as long as its process lives,
 * on a connection of its own; a pool whose lock anyone can take is gone, and
 * its jobs and queues are unlocked (graphile-worker's force_unlock_workers) for
 * the living to run again. Jobs are written to be run again anyway (one can
 * fail after its effect committed).
 *
 * Every worker of a database must run this code: a pool that holds no such
 * lock (an older release, another program) looks dead once its jobs have been
 * locked for the grace below. `runOnce` pools (`otpool-…`) are left alone.
 */
import pg from "pg";
import type { Logger } from "../server/logger.js";

/** The advisory lock of a pool id. */
const LOCK = "pg_catalog.hashtextextended('authhub-worker-pool:' || $1, 0)";
/** A pool takes its lock as it is made; a job locked for less than this may be a new pool's, not yet locked. */
const GRACE_SECONDS = 10;

export class OrphanedJobs {
  private client: pg.Client | null = null;
  private connecting: Promise<pg.Client> | null = null;
  private readonly own = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly log: Logger,
    private readonly intervalMs = 15_000,
  ) {}

  /** The liveness connection, (re)opened with every own pool's lock taken again. */
  private connection(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= (async () => {
      // pg-pool keeps a password given apart from the URL non-enumerable: copied by name.
      const client = new pg.Client({ ...this.config, password: this.config.password, application_name: "authhub-worker-liveness" });
      client.on("error", (err) => {
        this.log.warn("worker liveness connection lost", { err });
        if (this.client === client) this.client = null;
      });
      // Ended without an error (the server closed it): the next look reconnects and locks again.
      client.on("end", () => {
        if (this.client === client) this.client = null;
      });
      try {
        await client.connect();
        for (const id of this.own) await client.query(`select pg_advisory_lock(${LOCK})`, [id]);
      } catch (err) {
        await client.end().catch(() => undefined);
        throw err;
      }
      this.client = client;
      return client;
    })().finally(() => (this.connecting = null));
    return this.connecting;
  }

  /** This process's pool `id` lives: its lock is held until the process (or its connection) ends. */
  async claim(id: string): Promise<void> {
    this.own.add(id);
    const client = await this.connection();
    await client.query(`select pg_advisory_lock(${LOCK})`, [id]);
  }

  /** Unlocks the jobs and queues of pools that are gone; answers their ids. */
  async reap(): Promise<string[]> {
    const client = await this.connection();
    const { rows } = await client.query<{ pool: string }>(
      `select distinct locked_by as pool from (
         select locked_by, locked_at from graphile_worker._private_jobs where locked_by is not null
         union all
         select locked_by, locked_at from graphile_worker._private_job_queues where locked_by is not null
       ) l
       where locked_by like 'pool-%' and locked_at < now() - make_interval(secs => $1)`,
      [GRACE_SECONDS],
    );
    const gone: string[] = [];
    for (const { pool } of rows) {
      if (this.own.has(pool)) continue;
      const free = (await client.query<{ free: boolean }>(`select pg_try_advisory_lock(${LOCK}) as free`, [pool])).rows[0]!.free;
      if (!free) continue;
      try {
        // A job on its last attempt, or superseded while it ran (add_job, given the key of a locked job, spends
        // the locked one's attempts and queues a new one, which may have run already and skipped what this one
        // held), would never run again: the attempt the death cut off is given back.
        await client.query(
          `begin;
           create temporary table cut_off on commit drop as
             select id, max_attempts from graphile_worker._private_jobs where locked_by = ${pg.escapeLiteral(pool)} and attempts >= max_attempts;
           select graphile_worker.force_unlock_workers(array[${pg.escapeLiteral(pool)}]);
           select graphile_worker.reschedule_jobs(array[c.id], attempts => c.max_attempts - 1) from cut_off c;
           commit;`,
        );
        gone.push(pool);
      } catch (err) {
        await client.query("rollback").catch(() => undefined);
        throw err;
      } finally {
        await client.query(`select pg_advisory_unlock(${LOCK})`, [pool]);
      }
    }
    if (gone.length) this.log.warn("released the jobs of worker pools that are gone", { pools: gone });
    return gone;
  }

  /** Reaps now and then every interval (jittered), until stop(). */
  start(): void {
    const tick = (): void => {
      void this.reap()
        .catch((err: unknown) => this.log.warn("could not look for the jobs of dead workers", { err }))
        .finally(() => {
          if (this.stopped) return;
          this.timer = setTimeout(tick, this.intervalMs * (0.7 + Math.random() * 0.6));
          this.timer.unref();
        });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const client = this.client ?? (await this.connecting?.catch(() => null)) ?? null;
    this.client = null;
    await client?.end().catch(() => undefined);
  }
}
