/**
 * What every bench module gets from bench/run.ts: one throwaway database
 * (an embedded cluster, or BENCH_DATABASE_URL as superuser), migrated, with a
 * 1k-user and a 100k-user tenant; the owner's pool and the authenticator's
 * (sized as the server's); the run's sizes. A module takes a BenchContext and
 * returns its rows (bench/stats.ts Row), so run.ts only calls and collects.
 */
import pg from "pg";
import { closePool, makePool } from "../db/pools.js";
import { startScratchCluster } from "../db/scratch.js";
import { runMigrations } from "../db/migrate.js";
import { AUTHENTICATOR_ROLE, ensureRolesAndDatabase, OWNER_ROLE, withCredentials } from "../db/setup.js";

/** A seeded tenant: its id and its one tenant admin. */
export interface SeededTenant {
  slug: string;
  tenantId: string;
  adminId: string;
}

/** The run's sizes, from the environment (defaults keep `npm run bench` within its time budget). */
export const sizes = {
  /** Rounds every row is decided on (the median of per-round ratios; at least 3). */
  rounds: Number(process.env.BENCH_ROUNDS ?? 5),
  /** Transactions per side per round for the database-only rows. */
  queriesPerRound: Number(process.env.BENCH_QUERIES ?? 200),
  /** HTTP requests per side per round. */
  httpPerRound: Number(process.env.BENCH_HTTP_REQUESTS ?? 200),
  httpConcurrency: 4,
  /** Webhook latency is measured at a steady rate both sides sustain (bench/webhooks.ts). */
  webhookSteadyRate: Number(process.env.BENCH_WEBHOOK_RATE ?? 200),
  /** Events in the audit log for its growth row (the "~1M" of its label). */
  auditEvents: Number(process.env.BENCH_AUDIT_EVENTS ?? 1_000_000),
  /** Deliveries per steady round. */
  webhookSteadyCount: Number(process.env.BENCH_WEBHOOK_COUNT ?? 400),
};

export interface BenchContext {
  rootUrl: string;
  database: string;
  ownerUrl: string;
  authUrl: string;
  /** The authenticator's password (null: the server trusts local connections). */
  authPassword: string | null;
  owner: pg.Pool;
  auth: pg.Pool;
  small: SeededTenant;
  large: SeededTenant;
  sizes: typeof sizes;
  stop: () => Promise<void>;
}

async function seedTenant(owner: pg.Pool, slug: string, users: number): Promise<SeededTenant> {
  const tenantId = (await owner.query<{ id: string }>("insert into authhub.tenants (slug, name) values ($1, $2) returning id", [slug, slug])).rows[0]!.id;
  await owner.query(
    `insert into authhub.users (tenant_id, email, display_name, level)
     select $1, 'user' || g || '@' || $2::text || '.test', 'User ' || g, case when g = 1 then 'TENANT_ADMIN' else 'USER' end::authhub.role_level
     from generate_series(1, $3) g`,
    [tenantId, slug, users],
  );
  const adminId = (await owner.query<{ id: string }>("select id from authhub.users where tenant_id = $1 and level = 'TENANT_ADMIN'", [tenantId])).rows[0]!.id;
  return { slug, tenantId, adminId };
}

export async function setUp(): Promise<BenchContext> {
  const cluster = await startScratchCluster(process.env.BENCH_DATABASE_URL || null, "authhub-bench-");
  const { rootUrl, ownerPassword, authenticatorPassword } = cluster;
  const database = `authhub_bench_${process.pid}`;
  await ensureRolesAndDatabase({ rootUrl, database, ownerPassword, authenticatorPassword });
  const ownerUrl = withCredentials(rootUrl, OWNER_ROLE, ownerPassword, database);
  const authUrl = withCredentials(rootUrl, AUTHENTICATOR_ROLE, authenticatorPassword, database);
  await runMigrations(ownerUrl);
  // Pools as the server makes them (db/pools.ts); the authenticator's holds 20, as server/main.ts's does.
  const owner = makePool(ownerUrl, { name: "bench-owner", max: 12, acquireTimeoutMs: 30_000 });
  const auth = makePool(authUrl, { name: "authenticator", max: 20, acquireTimeoutMs: 30_000 });
  process.stderr.write("seeding a 1k-user and a 100k-user tenant…\n");
  // The audit triggers would write 101k events nobody reads here (bench/audit.ts measures them): off while seeding.
  await owner.query("alter table authhub.users disable trigger _900_audit_insert");
  const small = await seedTenant(owner, "small", 1_000);
  const large = await seedTenant(owner, "large", 100_000);
  await owner.query("alter table authhub.users enable always trigger _900_audit_insert");
  await owner.query("analyze");
  // A rejection nobody awaited would end the process past main's finally, leaving the embedded
  // PostgreSQL running on a shared machine: stop it first.
  const onCrash = (err: unknown) => {
    console.error(err);
    void stop().finally(() => process.exit(1));
  };
  process.once("unhandledRejection", onCrash);
  let stopped: Promise<void> | null = null;
  // Once, whoever asks first (main's finally, or the crash handler while main still waits).
  const stop = () =>
    (stopped ??= (async () => {
      process.off("unhandledRejection", onCrash);
      // After a failure a connection may still be out: end it after a short grace rather than wait forever.
      await closePool(owner, 2000);
      await closePool(auth, 2000);
      const root = new pg.Client({ connectionString: rootUrl });
      await root.connect();
      await root.query(`drop database if exists ${pg.escapeIdentifier(database)} with (force)`);
      await root.end();
      await cluster.stop();
    })());
  return { rootUrl, database, ownerUrl, authUrl, authPassword: authenticatorPassword, owner, auth, small, large, sizes, stop };
}
