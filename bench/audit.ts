/**
 * Audit benchmarks (issue 4), run by bench/run.ts on the same database:
 *  - single-row and 100-row inserts into an audited table ÷ the same table
 *    unaudited (two identical copies, one enrolled), targets ≥ 0.6 and ≥ 0.35;
 *  - "last 50 events of a tenant" p50 with 10k and with 1M events in the log.
 * The GraphQL mutation comparison needs the HTTP server and lives in bench/http.ts.
 */
import type pg from "pg";
import type { BenchContext } from "./context.js";
import { rlsBegin, statementName, tenantAdmin } from "./rls.js";
import { emptySample, figuresRow, interleave, percentile, ratioRow, timed, type Row, type Sample } from "./stats.js";

export async function prepareAuditTables(owner: pg.Pool): Promise<void> {
  await owner.query(`
    create schema bench_audit;
    create table bench_audit.audited (like authhub.users including all);
    create table bench_audit.plain (like authhub.users including all);
    alter table bench_audit.audited enable row level security;
    alter table bench_audit.audited force row level security;
    alter table bench_audit.plain enable row level security;
    alter table bench_audit.plain force row level security;
    create policy all_owner on bench_audit.audited for all to authhub_owner using (true) with check (true);
    create policy all_owner on bench_audit.plain for all to authhub_owner using (true) with check (true);
    create trigger _100_timestamps before insert or update on bench_audit.audited for each row execute function authhub_private.tg__timestamps();
    create trigger _100_timestamps before insert or update on bench_audit.plain for each row execute function authhub_private.tg__timestamps();
    select authhub_private.audit_table('bench_audit.audited', 'tenant_id', null);`);
}

export async function measureAuditInserts(ctx: BenchContext): Promise<Row[]> {
  const { owner, small, sizes } = ctx;
  const tenantId = small.tenantId;
  const client = await owner.connect();
  let n = 0;
  const one = (table: string) => () =>
    client.query({ name: `bench_one_${table}`, text: `insert into bench_audit.${table} (tenant_id, email) values ($1, $2)`, values: [tenantId, `one${n++}@bench.test`] });
  const hundred = (table: string) => () =>
    client.query({
      name: `bench_hundred_${table}`,
      text: `insert into bench_audit.${table} (tenant_id, email) select $1, 'h' || $2::text || '-' || g || '@bench.test' from generate_series(1, 100) g`,
      values: [tenantId, n++],
    });
  try {
    const single = await interleave(
      sizes.rounds,
      [
        { name: "audited", run: one("audited") },
        { name: "plain", run: one("plain") },
      ],
      { calls: 400, warmup: 100 },
    );
    const batch = await interleave(
      sizes.rounds,
      [
        { name: "audited", run: hundred("audited") },
        { name: "plain", run: hundred("plain") },
      ],
      { calls: 20, warmup: 5 },
    );
    return [
      ratioRow({
        benchmark: "Audit: single-row insert, audited ÷ unaudited (throughput)",
        numerator: single.audited!,
        denominator: single.plain!,
        target: { atLeast: 0.6 },
        names: ["audited", "unaudited"],
      }),
      ratioRow({
        benchmark: "Audit: 100-row insert, audited ÷ unaudited (throughput)",
        numerator: batch.audited!,
        denominator: batch.plain!,
        target: { atLeast: 0.35 },
        names: ["audited", "unaudited"],
        note: "statements of 100 rows",
      }),
    ];
  } finally {
    client.release();
  }
}

/**
 * p50 of a tenant admin's "last 50 events" as the log grows from ~10k to ~1M
 * events. The two sizes cannot be interleaved (the log only grows): each is
 * measured in its own rounds, and round i's ratio pairs the i-th round of each.
 */
export async function measureAuditQuery(ctx: BenchContext): Promise<Row[]> {
  const { owner, auth, small, large, sizes } = ctx;
  const client = await auth.connect();
  const begin = rlsBegin(tenantAdmin(ctx));
  const sql = "select tenant_id, id, occurred_at, table_name, operation, actor from authhub.audit_events order by tenant_id, occurred_at desc, id desc limit 50";
  const last50 = async () => {
    await client.query(begin);
    const r = await client.query({ name: statementName(sql), text: sql });
    await client.query("commit");
    if (r.rowCount !== 50) throw new Error(`expected 50 events, got ${r.rowCount}`);
  };
  const fill = async (events: number) => {
    // Synthetic history, spread over two tenants and the last 300 days.
    await owner.query(
      `insert into authhub.audit_events (tenant_id, occurred_at, table_name, operation, row_key, new, actor)
       select case when g % 2 = 0 then $1::uuid else $2::uuid end, now() - make_interval(secs => g * 25), 'users', 'UPDATE',
              jsonb_build_object('id', gen_random_uuid()), jsonb_build_object('display_name', 'n' || g), 'system:bench'
       from generate_series(1, $3) g`,
      [small.tenantId, large.tenantId, events],
    );
    await owner.query("analyze authhub.audit_events");
  };
  const rounds = async () => {
    for (let i = 0; i < 300; i++) await last50();
    const out: Sample[] = [];
    for (let round = 0; round < sizes.rounds; round++) {
      const s = emptySample();
      for (let i = 0; i < 400; i++) await timed(s, last50);
      out.push(s);
    }
    return out;
  };
  try {
    process.stderr.write("audit: the last 50 events at ~10k, then ~1M events…\n");
    await fill(10_000);
    const small10k = await rounds();
    await fill(sizes.auditEvents);
    const large1m = await rounds();
    const total = (await owner.query<{ n: number }>("select count(*)::int as n from authhub.audit_events")).rows[0]!.n;
    const p50 = (s: Sample) => percentile(s.ms, 50);
    return [
      figuresRow({
        benchmark: "Audit: last 50 events of a tenant, p50 at ~1M ÷ at ~10k events",
        perRound: large1m.map((s, i) => p50(s) / p50(small10k[i]!)),
        target: { atMost: 1.5 },
        detail: `p50 ${percentile(
          small10k.flatMap((s) => s.ms),
          50,
        ).toFixed(3)} ms at ~10k events; ${percentile(
          large1m.flatMap((s) => s.ms),
          50,
        ).toFixed(3)} ms at ${total} events (sizes measured one after the other, not interleaved)`,
      }),
    ];
  } finally {
    client.release();
  }
}
