/**
 * Audit retention and tamper evidence: expired events are purged in batches and
 * nothing younger can be deleted; the worker's seals form a hash chain that
 * `authhub audit verify` recomputes, catching an edited, a deleted and an
 * inserted event made by the database superuser.
 */
import { jest } from "@jest/globals";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { runCli } from "../../server/cli.js";
import { attemptAs, type TestDatabase } from "../helpers/db.js";
import { useFixtureDatabase, type Fixtures } from "../helpers/fixtures.js";
import { runTask as runTaskOnce } from "../helpers/worker.js";

let db: TestDatabase;
let f: Fixtures;
let superuser: pg.Pool;

useFixtureDatabase((database, fixtures) => {
  db = database;
  f = fixtures;
  const url = new URL(process.env.AUTHHUB_TEST_ROOT_URL!);
  url.pathname = `/${db.name}`;
  superuser = new pg.Pool({ connectionString: url.toString(), max: 1 });
  superuser.on("error", () => undefined);
});
afterAll(async () => {
  await superuser.end();
});

const runTask = (identifier: string) => runTaskOnce(db, identifier);

async function cli(...args: string[]) {
  let stdout = "";
  const out = jest.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout += chunk.toString();
    return true;
  });
  const err = jest.spyOn(process.stderr, "write").mockImplementation(() => true);
  try {
    const env = { NODE_ENV: "test", DATABASE_URL: db.ownerUrl, AUTHHUB_MASTER_KEY: randomBytes(32).toString("base64") };
    return { code: await runCli(args, env), stdout };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

/**
 * Runs the seal job until every event of both tenants is sealed. A seal covers
 * the transactions that finished before every transaction then running in the
 * cluster (other test files' included), so under load one pass can leave the
 * newest events for the next.
 */
async function sealBoth(fixtures: Fixtures) {
  const unsealed = async () =>
    (
      await db.owner.query(
        `select count(*)::int as n from authhub.audit_events e
         where e.tenant_id in ($1, $2)
           and e.transaction_id >= coalesce((select max(s.to_transaction) from authhub_private.audit_seals s where s.tenant_id = e.tenant_id), 0)`,
        [fixtures.a.id, fixtures.b.id],
      )
    ).rows[0].n as number;
  for (let i = 0; i < 100 && (await unsealed()) > 0; i++) {
    await runTask("audit_events__seal");
    if ((await unsealed()) > 0) await new Promise((r) => setTimeout(r, 50));
  }
  expect(await unsealed()).toBe(0);
}

describe("retention", () => {
  test("the purge job deletes whole expired seals, records them, and keeps everything younger", async () => {
    await db.owner.query("update authhub.tenants set audit_retention_days = 30 where id = $1", [f.b.id]);
    // Seal today's fixture events, then old history, then recent history: three seals per tenant.
    await sealBoth(f);
    const seed = (days: number) =>
      db.owner.query(
        `insert into authhub.audit_events (tenant_id, occurred_at, table_name, operation, actor)
         select t, now() - make_interval(days => $3), 'users', 'UPDATE', 'system:seed'
         from (values ($1::uuid), ($2::uuid)) v(t), generate_series(1, 3)`,
        [f.a.id, f.b.id, days],
      );
    await seed(400);
    await sealBoth(f);
    await seed(20);
    await sealBoth(f);
    await runTask("audit_events__purge");
    const left = await db.owner.query(
      "select tenant_id = $1 as a, floor(extract(epoch from now() - occurred_at) / 86400)::int as days, count(*)::int as n from authhub.audit_events where actor = 'system:seed' group by 1, 2 order by 1, 2",
      [f.a.id],
    );
    // 400 days is past both retentions (365 for A, 30 for B); 20 days is within both.
    expect(left.rows).toEqual([
      { a: false, days: 20, n: 3 },
      { a: true, days: 20, n: 3 },
    ]);
    const purges = await db.owner.query("select count(*)::int as n from authhub_private.audit_seal_purges");
    expect(purges.rows[0].n).toBe(2);
    // Verify knows those ranges were emptied on purpose.
    expect((await cli("audit", "verify", "--json")).code).toBe(0);
  });

  test("an unexpired event cannot be deleted, even by the owner", async () => {
    await expect(db.owner.query("delete from authhub.audit_events where tenant_id = $1", [f.a.id])).rejects.toMatchObject({ code: "AH403" });
  });

  test("retention is validated tenant configuration that only a tenant admin changes", async () => {
    await expect(db.owner.query("update authhub.tenants set audit_retention_days = 7 where id = $1", [f.a.id])).rejects.toMatchObject({ code: "23514" });
    // tenant:config alone (name, branding) does not reach retention: shortening it erases history.
    const { rows } = await db.owner.query<{ id: string }>("insert into authhub.roles (tenant_id, key, name, level) values ($1, 'brand', 'Brand', 'TENANT_ADMIN') returning id", [
      f.a.id,
    ]);
    await db.owner.query("insert into authhub.role_permissions (tenant_id, role_id, permission_key) values ($1, $2, 'tenant:config')", [f.a.id, rows[0]!.id]);
    await db.owner.query("insert into authhub.role_assignments (tenant_id, user_id, role_id) values ($1, $2, $3)", [f.a.id, f.a.users.member, rows[0]!.id]);
    const branding = { userId: f.a.users.member, tenantId: f.a.id, level: "USER" as const };
    const forged = { ...branding, level: "TENANT_ADMIN" as const };
    expect(await attemptAs(db, branding, "update authhub.tenants set primary_color = '#010203' where id = $1", [f.a.id])).toBe(1);
    expect(await attemptAs(db, branding, "update authhub.tenants set audit_retention_days = 30 where id = $1", [f.a.id])).toBe("42501");
    expect(await attemptAs(db, forged, "update authhub.tenants set audit_retention_days = 30 where id = $1", [f.a.id])).toBe("42501");
    expect(
      await attemptAs(db, { userId: f.a.users.tenantAdmin, tenantId: f.a.id, level: "TENANT_ADMIN" }, "update authhub.tenants set audit_retention_days = 90 where id = $1", [
        f.a.id,
      ]),
    ).toBe(1);
    await db.owner.query("delete from authhub.roles where id = $1", [rows[0]!.id]);
  });
});

describe("tamper evidence", () => {
  test("sealing through the worker, then verify holds", async () => {
    await sealBoth(f);
    const { rows } = await db.owner.query("select tenant_id, seq, event_count from authhub_private.audit_seals order by tenant_id, seq");
    expect(rows.length).toBeGreaterThanOrEqual(2);
    const verified = await cli("audit", "verify", "--json");
    expect(verified.code).toBe(0);
    expect(JSON.parse(verified.stdout)).toMatchObject({ ok: true });
    // New events, a second seal chained to the first.
    await db.owner.query("update authhub.users set display_name = 'Again' where id = $1", [f.a.users.member]);
    await db.owner.query("update authhub.users set display_name = 'Again' where id = $1", [f.b.users.member]);
    await sealBoth(f);
    const chained = await db.owner.query<{ seq: string; previous_hash: string | null }>(
      "select seq, previous_hash from authhub_private.audit_seals where tenant_id = $1 order by seq",
      [f.a.id],
    );
    expect(chained.rows.length).toBeGreaterThanOrEqual(2);
    expect(chained.rows.slice(1).every((r) => r.previous_hash !== null)).toBe(true);
    expect((await cli("audit", "verify", "--tenant", "tenant-a")).code).toBe(0);
  });

  /** As the database superuser, past the append-only trigger: how an attacker with full access would edit history. */
  async function asSuperuser(sql: string, params: unknown[]) {
    await superuser.query("alter table authhub.audit_events disable trigger _100_append_only");
    try {
      await superuser.query(sql, params);
    } finally {
      await superuser.query("alter table authhub.audit_events enable always trigger _100_append_only");
    }
  }
  const verify = async () => {
    const result = await cli("audit", "verify", "--json");
    return { code: result.code, body: JSON.parse(result.stdout) as { ok: boolean; first_broken?: { tenant_id: string; seal: number } } };
  };
  const firstEvent = async (tenantId: string) =>
    (await superuser.query("select tenant_id, id, actor from authhub.audit_events where tenant_id = $1 order by id limit 1", [tenantId])).rows[0] as {
      tenant_id: string;
      id: string;
      actor: string;
    };

  test("verify catches an edited event", async () => {
    const e = await firstEvent(f.a.id);
    await asSuperuser("update authhub.audit_events set actor = 'user:someone-else' where tenant_id = $1 and id = $2", [e.tenant_id, e.id]);
    const result = await verify();
    await asSuperuser("update authhub.audit_events set actor = $3 where tenant_id = $1 and id = $2", [e.tenant_id, e.id, e.actor]);
    expect(result.code).toBe(1);
    expect(result.body).toMatchObject({ ok: false, first_broken: { tenant_id: f.a.id, seal: 1 } });
    expect((await verify()).code).toBe(0);
  });

  test("verify catches a deleted event", async () => {
    const e = await firstEvent(f.b.id);
    // Keep the row exactly (in the superuser's session) to put it back afterwards.
    await superuser.query("create temp table if not exists saved_events as select * from authhub.audit_events where false");
    await superuser.query("insert into saved_events select * from authhub.audit_events where tenant_id = $1 and id = $2", [e.tenant_id, e.id]);
    await asSuperuser("delete from authhub.audit_events where tenant_id = $1 and id = $2", [e.tenant_id, e.id]);
    const result = await verify();
    await asSuperuser("insert into authhub.audit_events overriding system value select * from saved_events", []);
    await superuser.query("truncate saved_events");
    expect(result.code).toBe(1);
    expect(result.body.first_broken).toMatchObject({ tenant_id: f.b.id, seal: 1 });
    expect((await verify()).code).toBe(0);
  });

  test("verify catches a seal that does not continue the chain", async () => {
    const { rows } = await db.owner.query<{ seq: string; to_transaction: string; hash: string }>(
      "select seq, to_transaction, hash from authhub_private.audit_seals where tenant_id = $1 order by seq desc limit 1",
      [f.b.id],
    );
    const last = rows[0]!;
    // A seal far in the future would stop sealing for the tenant: refused by verify.
    await superuser.query(
      "insert into authhub_private.audit_seals (tenant_id, seq, from_transaction, to_transaction, event_count, last_occurred_at, previous_hash, hash) values ($1, $2, $3, $4, 0, now(), $5, 'x')",
      [f.b.id, Number(last.seq) + 1, "9223372036854775000", "9223372036854775806", last.hash],
    );
    const result = await verify();
    await superuser.query("alter table authhub_private.audit_seals disable trigger _100_append_only");
    await superuser.query("delete from authhub_private.audit_seals where tenant_id = $1 and seq = $2", [f.b.id, Number(last.seq) + 1]);
    await superuser.query("alter table authhub_private.audit_seals enable always trigger _100_append_only");
    expect(result.code).toBe(1);
    expect(result.body.first_broken).toMatchObject({ tenant_id: f.b.id, seal: Number(last.seq) + 1 });
    expect((await verify()).code).toBe(0);
  });

  test("verify catches an inserted event", async () => {
    const e = await firstEvent(f.a.id);
    await asSuperuser(
      `insert into authhub.audit_events overriding system value
       select tenant_id, 999999, occurred_at, table_name, operation, row_key, organization_id, old, new, changed_columns,
              'user:forged', actor_user_id, trace_id, transaction_id
       from authhub.audit_events where tenant_id = $1 and id = $2`,
      [e.tenant_id, e.id],
    );
    const result = await verify();
    await asSuperuser("delete from authhub.audit_events where tenant_id = $1 and id = 999999", [e.tenant_id]);
    expect(result.code).toBe(1);
    expect(result.body.first_broken).toMatchObject({ tenant_id: f.a.id, seal: 1 });
    expect((await verify()).code).toBe(0);
  });
});
