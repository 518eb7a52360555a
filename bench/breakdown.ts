/**
 * Where a request's time goes under RLS (issue 14, item 1): the tenant admin's
 * 20-user page timed as the server runs it and with one piece taken away at a
 * time, interleaved in the same rounds; each piece's cost is the difference of
 * two sides' median time per request, per round, reported as the median of the
 * rounds and their spread (medians, not means: on a shared machine the mean is
 * mostly other processes' preemptions, which land on every side alike). Beside it, the server-side cost of each helper a
 * policy calls (µs per call, measured in SQL, no round trip) and the plans.
 *
 * Sides (each on its own connection; "3 trips": the opening statement, the
 * page, commit):
 *  - server: begin + claims + begin_request() in one trip; the page, prepared
 *    (its plan cached); commit. What GraphQL does.
 *  - preresolved: the same, with begin_request's answers (authority settings,
 *    role) set as literals: what resolving authority costs.
 *  - explicit: as the owner with the same claims and a role switch, the filter
 *    written out: what the policies cost at query time (preresolved − explicit).
 *  - explicitBare: the explicit page after a bare `begin`: what the settings
 *    and role switch statement costs.
 *  - explicitJson: the claims set from a JSON document (json_each_text, the
 *    earlier design) instead of set_config literals: JSON parsing.
 *  - serverUnprepared / explicitUnprepared: the page planned on every
 *    execution (an unnamed statement): planning, under RLS and without.
 *  - explicitOneTrip: begin, the settings, the page (literal tenant) and commit
 *    as one simple query: what two round trips cost (explicitUnprepared −
 *    explicitOneTrip), beside one trivial round trip (roundTrip: `select`).
 *  - openLiteralRole / openResolveOnce / openResolveTwice: the opening round
 *    trip alone (then rollback) with a literal role, begin_request once, and
 *    twice: its first call in a transaction against a further one; and
 *    ownerSelect / ownerUserAuthority: user_authority's first call, as the owner.
 *  - roleSwitching vs dedicated: the tenant admin's and the org admin's pages
 *    alternating on one connection (a cached plan that depends on RLS is
 *    replanned when the role changes) vs each on its own connection.
 */
import pg from "pg";
import { RESOLVE_ROLE, settingsStatement } from "../db/claims.js";
import type { BenchContext } from "./context.js";
import {
  checkouts,
  explicitBegin,
  orgAdmin,
  PAGE_EXPLICIT,
  PAGE_EXPLICIT_ORGS,
  PAGE_SEEDS_ONCE,
  PAGE_RLS,
  request,
  rlsBegin,
  settingsOf,
  tenantAdmin,
  customRoleHolder,
  COLUMNS,
  type Subtree,
} from "./rls.js";
import { interleave, median, percentile, type RoundSamples, type Side } from "./stats.js";

export interface Piece {
  piece: string;
  /** Median over rounds of the per-round difference, µs per request. */
  us: number;
  spread: [number, number];
}

export interface Breakdown {
  /** Median time per request of each side, µs (median of rounds). */
  sides: Record<string, number>;
  pieces: Piece[];
  /** Server-side µs per call of each helper (no round trip). */
  perCall: Record<string, number>;
  plans: Record<string, { initPlans: number; subPlans: number; text: string }>;
}

/** Per round, the side's median time per request (µs): on a loaded machine the mean is mostly other processes' preemptions. */
const p50Us = (s: RoundSamples, name: string) => s[name]!.map((x) => percentile(x.ms, 50) * 1000);

function piece(label: string, s: RoundSamples, a: string, b: string, divide = 1): Piece {
  const A = p50Us(s, a);
  const B = p50Us(s, b);
  const d = A.map((x, i) => (x - B[i]!) / divide);
  return { piece: label, us: median(d), spread: [Math.min(...d), Math.max(...d)] };
}

/** The authority settings begin_request leaves for `begin` (read back once), to set as literals. */
async function resolvedSettings(client: pg.PoolClient, begin: string): Promise<Record<string, string>> {
  await client.query(begin);
  const { rows } = await client.query<Record<string, string>>(
    `select current_setting('authhub.level') as "authhub.level", current_setting('authhub.permissions') as "authhub.permissions",
            current_setting('authhub.org_scope') as "authhub.org_scope", current_setting('authhub.managed') as "authhub.managed",
            current_setting('authhub.member_of') as "authhub.member_of", current_user as role`,
  );
  await client.query("rollback");
  return rows[0]!;
}

/** Median wall time of `sql` over three runs, ms. */
async function timeStatement(client: pg.PoolClient, sql: string): Promise<number> {
  const ms: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    await client.query(sql);
    ms.push(performance.now() - t);
  }
  return median(ms);
}

/** µs per call of `expr`, evaluated once per row of generate_series(1, n) (its argument made row-dependent, so nothing is hoisted). */
async function perCall(client: pg.PoolClient, expr: string, n: number): Promise<number> {
  const base = await timeStatement(client, `select count(*) from generate_series(1, ${n}) g where g > 0`);
  const t = await timeStatement(client, `select count(*) from generate_series(1, ${n}) g where (${expr}) is not null`);
  return ((t - base) / n) * 1000;
}

async function plan(client: pg.PoolClient, begin: string | null, sql: string, params: unknown[] = []) {
  await client.query(begin ?? "begin");
  const { rows } = await client.query<{ "QUERY PLAN": string }>(`explain (costs off) ${sql}`, params);
  await client.query("rollback");
  const text = rows.map((r) => r["QUERY PLAN"]).join("\n");
  // Count the nodes (`InitPlan 1` heading a subtree), not their mentions in conditions (`(InitPlan 1).col1`).
  return { initPlans: (text.match(/^\s*InitPlan \d+/gm) ?? []).length, subPlans: (text.match(/^\s*SubPlan \d+/gm) ?? []).length, text };
}

export async function measureBreakdown(ctx: BenchContext, subtree: Subtree): Promise<Breakdown> {
  const { auth, owner, small, sizes } = ctx;
  const ta = tenantAdmin(ctx);
  const oa = orgAdmin(ctx, subtree);
  const cr = customRoleHolder(ctx, subtree);
  const { connect, releaseAll } = checkouts();
  try {
    const [a, o] = [() => connect(auth), () => connect(owner)];
    const [cServer, cPre, cUnprep, cSwitch, cDedTa, cDedOa, cOa, cOaOnce] = [await a(), await a(), await a(), await a(), await a(), await a(), await a(), await a()];
    const [eExp, eBare, eJson, eUnprep, eOne, eTrip, eOa] = [await o(), await o(), await o(), await o(), await o(), await o(), await o()];
    const [cLiteral, cOnce, cTwice, eSelect, eAuthority] = [await a(), await a(), await a(), await o(), await o()];
    const claims = settingsStatement(settingsOf(ta));
    const opening = (client: pg.PoolClient, body: string) => async () => {
      await client.query(`begin; ${claims}; ${body}`);
      await client.query("rollback");
    };
    const resolved = await resolvedSettings(cPre, rlsBegin(ta));
    const preBegin = `begin; ${settingsStatement({ ...settingsOf(ta), ...resolved })}`;
    const jsonBegin = `begin; select set_config(key, value, true) from json_each_text(${pg.escapeLiteral(JSON.stringify({ ...settingsOf(ta), role: "authhub_owner" }))}::json)`;
    const literalPage = PAGE_EXPLICIT.replace("$1", `'${small.tenantId}'`);
    const oneTrip = `${explicitBegin(ta)}; ${literalPage}; commit`;
    const sides: Side[] = [
      { name: "server", run: () => request(cServer, rlsBegin(ta), PAGE_RLS) },
      { name: "preresolved", run: () => request(cPre, preBegin, PAGE_RLS) },
      { name: "explicit", run: () => request(eExp, explicitBegin(ta), PAGE_EXPLICIT, [small.tenantId]) },
      { name: "explicitBare", run: () => request(eBare, "begin", PAGE_EXPLICIT, [small.tenantId]) },
      { name: "explicitJson", run: () => request(eJson, jsonBegin, PAGE_EXPLICIT, [small.tenantId]) },
      { name: "serverUnprepared", run: () => request(cUnprep, rlsBegin(ta), PAGE_RLS, [], false) },
      { name: "explicitUnprepared", run: () => request(eUnprep, explicitBegin(ta), PAGE_EXPLICIT, [small.tenantId], false) },
      { name: "explicitOneTrip", run: () => eOne.query(oneTrip) },
      { name: "roundTrip", run: () => eTrip.query("select") },
      // The opening alone (then rollback): a literal role, begin_request once, twice; user_authority as the owner.
      { name: "openLiteralRole", run: opening(cLiteral, `select pg_catalog.set_config('role', ${pg.escapeLiteral(resolved.role!)}, true)`) },
      { name: "openResolveOnce", run: opening(cOnce, RESOLVE_ROLE) },
      { name: "openResolveTwice", run: opening(cTwice, `select authhub_private.begin_request(); ${RESOLVE_ROLE}`) },
      { name: "ownerSelect", run: opening(eSelect, "select 1") },
      {
        name: "ownerUserAuthority",
        run: opening(eAuthority, `select authhub_private.user_authority(${pg.escapeLiteral(ta.tenantId)}, ${pg.escapeLiteral(ta.userId)}, 'TENANT_ADMIN')`),
      },
      { name: "orgAdmin", run: () => request(cOa, rlsBegin(oa), PAGE_RLS) },
      { name: "orgAdminSeedsOnce", run: () => request(cOaOnce, rlsBegin(oa), PAGE_SEEDS_ONCE) },
      { name: "orgAdminExplicit", run: () => request(eOa, explicitBegin(oa), PAGE_EXPLICIT_ORGS, [small.tenantId, subtree.orgIds]) },
      {
        name: "roleSwitching",
        run: async () => {
          await request(cSwitch, rlsBegin(ta), PAGE_RLS);
          await request(cSwitch, rlsBegin(oa), PAGE_RLS);
        },
      },
      {
        name: "dedicated",
        run: async () => {
          await request(cDedTa, rlsBegin(ta), PAGE_RLS);
          await request(cDedOa, rlsBegin(oa), PAGE_RLS);
        },
      },
    ];
    const once = await request(cOaOnce, rlsBegin(oa), PAGE_SEEDS_ONCE);
    const real = await request(cOa, rlsBegin(oa), PAGE_RLS);
    if (once.length !== 20 || JSON.stringify(once) !== JSON.stringify(real)) throw new Error("breakdown: the what-if copy answers other rows than authhub.users");
    process.stderr.write("breakdown: the same page with pieces taken away…\n");
    const s = await interleave(sizes.rounds, sides, { calls: Math.max(50, Math.round(sizes.queriesPerRound / 2)), warmup: 50 });
    const pieces: Piece[] = [
      piece("RLS in all (server − explicit)", s, "server", "explicit"),
      piece("begin_request(): resolving authority (server − preresolved)", s, "server", "preresolved"),
      piece("policies at query time: helpers' InitPlans, filter, plan (preresolved − explicit)", s, "preresolved", "explicit"),
      piece("claims + role switch statement (explicit − explicitBare)", s, "explicit", "explicitBare"),
      piece("claims parsed from JSON (json_each_text) instead of set_config literals", s, "explicitJson", "explicit"),
      piece("planning on every execution, under RLS (unprepared − prepared)", s, "serverUnprepared", "server"),
      piece("planning on every execution, explicit (unprepared − prepared)", s, "explicitUnprepared", "explicit"),
      piece("two round trips (3 trips − the same sent as 1)", s, "explicitUnprepared", "explicitOneTrip"),
      piece("replanning when a connection's role changes (per request)", s, "roleSwitching", "dedicated", 2),
      piece("org admin's page: RLS in all (RLS − explicit filter on the org ids)", s, "orgAdmin", "orgAdminExplicit"),
      piece("begin_request(), its first call in a transaction (opening: resolved − literal role)", s, "openResolveOnce", "openLiteralRole"),
      piece("begin_request(), a further call in the same transaction", s, "openResolveTwice", "openResolveOnce"),
      piece("user_authority(), its first call in a transaction (as the owner: call − select 1)", s, "ownerUserAuthority", "ownerSelect"),
      piece("org admin's page: scoped_user_ids() (one array) − the set-returning pair it replaced (what-if copy)", s, "orgAdmin", "orgAdminSeedsOnce"),
    ];
    const trip = p50Us(s, "roundTrip");
    pieces.push({ piece: "one trivial round trip (select)", us: median(trip), spread: [Math.min(...trip), Math.max(...trip)] });

    // Server-side cost per call of the helpers, and of begin_request per kind of caller.
    const c = cServer;
    const per: Record<string, number> = {};
    for (const [label, who] of [
      ["tenant admin", ta],
      ["org admin", oa],
      ["custom role", cr],
    ] as const) {
      await c.query(`begin; ${settingsStatement(settingsOf(who))}`);
      per[`begin_request(), ${label}`] = await perCall(c, "case when g > 0 then authhub_private.begin_request() end", 500);
      await c.query("rollback");
    }
    await c.query(rlsBegin(oa));
    per["authhub.current_tenant_id()"] = await perCall(c, "case when g > 0 then authhub.current_tenant_id() end", 20_000);
    per["has_tenant_permission('user:read') (text[] setting)"] = await perCall(c, "authhub_private.has_tenant_permission(case when g > 0 then 'user:read' end)", 20_000);
    per["permission_seeds('user:read') (jsonb setting)"] = await perCall(c, "authhub_private.permission_seeds(case when g > 0 then 'user:read' end)", 5_000);
    per["scoped_user_ids('user:read'), 300 members as one array"] = await perCall(
      c,
      "pg_catalog.cardinality(authhub_private.scoped_user_ids(case when g > 0 then 'user:read' end))",
      200,
    );
    per["the set-returning helper it replaced, two nested definer functions (what-if copy, seeds read once)"] = await perCall(
      c,
      "(select count(*) from bench_rbac.users_in_organizations_with_permission(case when g > 0 then 'user:read' end))",
      200,
    );
    per["organizations_with_permission('user:read'), 4 organizations"] = await perCall(
      c,
      "(select count(*) from authhub_private.organizations_with_permission(case when g > 0 then 'user:read' end))",
      1000,
    );
    await c.query("rollback");
    // The members query the scoped helpers run, written inline, as the owner: what the definer wrapping adds.
    per["the same members query inline (owner, no function)"] = await perCall(
      eExp,
      `(select count(distinct m.user_id) from authhub.memberships m where m.tenant_id = ${pg.escapeLiteral(small.tenantId)}::uuid and m.organization_id = any (${pg.escapeLiteral(`{${subtree.orgIds.join(",")}}`)}::uuid[]) and g > 0)`,
      200,
    );

    const plans = {
      "tenant admin, RLS": await plan(cServer, rlsBegin(ta), PAGE_RLS),
      "tenant admin, explicit": await plan(eExp, null, PAGE_EXPLICIT, [small.tenantId]),
      "org admin, RLS": await plan(cServer, rlsBegin(oa), PAGE_RLS),
      "custom role, RLS": await plan(cServer, rlsBegin(cr), PAGE_RLS),
      "org admin, explicit": await plan(
        eExp,
        null,
        `select ${COLUMNS} from authhub.users where tenant_id = $1 and id in (select m.user_id from authhub.memberships m where m.tenant_id = $1 and m.organization_id = any ($2::uuid[])) order by tenant_id, id limit 20`,
        [small.tenantId, subtree.orgIds],
      ),
    };
    const sideUs = Object.fromEntries(sides.map((x) => [x.name, median(p50Us(s, x.name))]));
    return { sides: sideUs, pieces, perCall: per, plans };
  } finally {
    releaseAll();
  }
}

/** The breakdown as printed. */
export function printBreakdown(b: Breakdown): void {
  console.log("\nWhere the time goes (tenant admin's 20-user page; µs per request, median of rounds, min–max):\n");
  console.table(Object.fromEntries(b.pieces.map((p) => [p.piece, { µs: p.us.toFixed(0), spread: `${p.spread[0].toFixed(0)}–${p.spread[1].toFixed(0)}` }])));
  console.log("Median time per request of each side (µs, median of rounds):", Object.fromEntries(Object.entries(b.sides).map(([k, v]) => [k, Math.round(v)])));
  console.log("\nServer-side cost per call (µs, no round trip):");
  console.table(Object.fromEntries(Object.entries(b.perCall).map(([k, v]) => [k, { µs: v.toFixed(2) }])));
  for (const [name, p] of Object.entries(b.plans)) console.log(`\nPlan, ${name} (${p.initPlans} InitPlans, ${p.subPlans} SubPlans):\n${p.text}`);
}
