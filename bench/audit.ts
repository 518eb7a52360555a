/**
 * Audit benchmarks (issue 4), run by bench/run.ts on the same database:
 *  - single-row and 100-row inserts into an audited table ÷ the same table
 *    unaudited (two identical copies, one enrolled), targets ≥ 0.6 and ≥ 0.35;
 *  - "last 50 events of a tenant" p50 with 10k and with 1M events in the log.
 * The GraphQL mutation comparison needs the HTTP server and lives in run.ts.
 */
import type pg from "pg";

export interface Sample {
  ms: number[];
  totalMs: number;
  count: number;
}

type Interleave = (n: number, contenders: [() => Promise<unknown>, Sample][]) => Promise<void>;

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

export async function measureAuditInserts(owner: pg.Pool, tenantId: string, rounds: number, interleave: Interleave, empty: () => Sample) {
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
    await interleave(100, [
      [one("audited"), empty()],
      [one("plain"), empty()],
    ]);
    const single = { audited: empty(), plain: empty() };
    await interleave(rounds * 400, [
      [one("audited"), single.audited],
      [one("plain"), single.plain],
    ]);
    const batch = { audited: empty(), plain: empty() };
    await interleave(rounds * 20, [
      [hundred("audited"), batch.audited],
      [hundred("plain"), batch.plain],
    ]);
    return { single, batch };
  } finally {
    client.release();
  }
}

/** p50 of a tenant admin's "last 50 events" as the log grows from ~10k to ~1M events. */
export async function measureAuditQuery(
  owner: pg.Pool,
  auth: pg.Pool,
  settings: Record<string, string>,
  tenantId: string,
  otherTenantId: string,
  interleave: Interleave,
  empty: () => Sample,
) {
  const client = await auth.connect();
  const last50 = () =>
    (async () => {
      await client.query("begin");
      await client.query("select set_config(key, value, true) from json_each_text($1::json)", [JSON.stringify(settings)]);
      const r = await client.query({
        name: "bench_audit_last50",
        text: "select tenant_id, id, occurred_at, table_name, operation, actor from authhub.audit_events order by tenant_id, occurred_at desc, id desc limit 50",
      });
      await client.query("commit");
      if (r.rowCount !== 50) throw new Error(`expected 50 events, got ${r.rowCount}`);
    })();
  const fill = async (events: number) => {
    // Synthetic history, spread over two tenants and the last 300 days.
    await owner.query(
      `insert into authhub.audit_events (tenant_id, occurred_at, table_name, operation, row_key, new, actor)
       select case when g % 2 = 0 then $1::uuid else $2::uuid end, now() - make_interval(secs => g * 25), 'users', 'UPDATE',
              jsonb_build_object('id', gen_random_uuid()), jsonb_build_object('display_name', 'n' || g), 'system:bench'
       from generate_series(1, $3) g`,
      [tenantId, otherTenantId, events],
    );
    await owner.query("analyze authhub.audit_events");
  };
  try {
    await fill(10_000);
    const small = empty();
    await interleave(300, [[last50, empty()]]);
    await interleave(2000, [[last50, small]]);
    await fill(1_000_000);
    const large = empty();
    await interleave(300, [[last50, empty()]]);
    await interleave(2000, [[last50, large]]);
    const total = (await owner.query<{ n: number }>("select count(*)::int as n from authhub.audit_events")).rows[0]!.n;
    return { small, large, total };
  } finally {
    client.release();
  }
}
