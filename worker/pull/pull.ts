/**
 * One poll of a store's database by the pull connector (DESIGN §13; issue 17;
 * docs/sync.md). Per entity:
 *
 * 1. forward: rows after the keyset cursor (updated_at, external_id), in
 *    batches; each batch is applied by retail.sync and moves the cursor in the
 *    same hub transaction, so a batch and its cursor commit or fail together;
 * 2. lookback: the rows of the last `lookback_ms` behind the cursor read
 *    again, and those the hub does not hold yet applied (a row a long
 *    transaction committed after newer rows were read);
 * 3. reconciliation, when due: count and hash of (external_id, version) per id
 *    range on both sides; differing ranges are fetched, rows the store no
 *    longer has are deleted in the hub (a store that hard-deletes).
 *
 * The hub side runs as the source's own key (an API key bound to the store,
 * scope sync:write) through the authenticator, exactly as a pushing store's
 * requests do: the same role, the same policies, the same write path.
 */
import type pg from "pg";
import { pgSettingsForApiKey } from "../../db/claims.js";
import { KeySession } from "./keySession.js";
import { ENTITIES, RECONCILABLE, StoreDatabase, toSyncRow, type Entity, type StoreRow } from "./store.js";

export interface Source {
  tenant_id: string;
  id: string;
  store_id: string;
  url_encrypted: string;
  schema_name: string;
  api_key_id: string;
  poll_interval_ms: number;
  lookback_ms: number;
  batch_size: number;
  reconcile_every_ms: number;
  read_timeout_ms: number;
  enabled: boolean;
  failures: number;
}

export interface Cursor {
  entity: Entity;
  updated_at: string | null;
  external_id: string | null;
  reconciled_at: Date | null;
}

export interface PullReport {
  applied: number;
  rejected: number;
  /** Whether the forward read stopped at its time budget with rows left. */
  more: boolean;
  reconciled: Entity[];
}

interface SyncResult {
  status: "applied" | "unchanged" | "stale" | "rejected";
}

const HUB_TABLES: Partial<Record<Entity, string>> = { customers: "retail.customers", products: "retail.products", orders: "retail.orders" };

/** A failure on the hub's side (not the store's): reported as such. */
export class HubError extends Error {
  constructor(cause: unknown) {
    super("hub error", { cause });
  }
}

/** The hub, as the source's key: one authenticator connection for the poll. */
class Hub {
  private constructor(
    private readonly session: KeySession,
    private readonly source: Source,
  ) {}

  static async open(authUrl: string, source: Source): Promise<Hub> {
    const settings = pgSettingsForApiKey({ apiKeyId: source.api_key_id, tenantId: source.tenant_id, orgId: source.store_id }, `pull-${source.id}`);
    return new Hub(await KeySession.open(authUrl, "authhub-pull", settings), source);
  }

  async close(): Promise<void> {
    await this.session.close();
  }

  /** One transaction as the source's key, as a request of that key would be. */
  async tx<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
    try {
      return await this.session.tx(fn);
    } catch (err) {
      throw err instanceof HubError ? err : new HubError(err);
    }
  }

  static async sync(c: pg.Client, entity: Entity, rows: Record<string, unknown>[]): Promise<SyncResult[]> {
    if (rows.length === 0) return [];
    return (await c.query<{ r: SyncResult[] }>("select retail.sync($1, $2::jsonb) as r", [entity, JSON.stringify(rows)])).rows[0]!.r;
  }

  static async pending(c: pg.Client, entity: Entity, rows: Record<string, unknown>[]): Promise<number[]> {
    if (rows.length === 0) return [];
    return (await c.query<{ p: number[] }>("select retail_private.sync_pending($1, $2::jsonb) as p", [entity, JSON.stringify(rows)])).rows[0]!.p;
  }

  static async unheld(c: pg.Client, entity: Entity, keys: Record<string, unknown>[]): Promise<number[]> {
    if (keys.length === 0) return [];
    return (await c.query<{ p: number[] }>("select retail_private.sync_unheld($1, $2::jsonb) as p", [entity, JSON.stringify(keys)])).rows[0]!.p;
  }

  async advance(c: pg.Client, entity: Entity, last: StoreRow | null, lagMs: number | null): Promise<void> {
    await c.query("select retail_private.sync_source_advance($1, $2, $3::timestamptz, $4, $5::interval)", [
      this.source.id,
      entity,
      last?.updated_at ?? null,
      last?.external_id ?? null,
      lagMs === null ? null : `${Math.max(0, Math.round(lagMs))} milliseconds`,
    ]);
  }

  async digests(entity: Entity): Promise<Map<string, string>> {
    const table = HUB_TABLES[entity]!;
    const rows = await this.tx(
      async (c) =>
        (
          await c.query<{ bucket: string; digest: string }>(
            `select left(md5(external_id), 2) as bucket,
                    count(*)::text || ':' || md5(string_agg(external_id || ':' || source_version::text, ',' order by external_id collate "C")) as digest
             from ${table} where store_id = $1 and deleted_at is null and external_id is not null and source_version is not null group by 1`,
            [this.source.store_id],
          )
        ).rows,
    );
    return new Map(rows.map((r) => [r.bucket, r.digest]));
  }

  async versionsIn(entity: Entity, buckets: string[]): Promise<Map<string, string>> {
    const table = HUB_TABLES[entity]!;
    const rows = await this.tx(
      async (c) =>
        (
          await c.query<{ external_id: string; version: string }>(
            `select external_id, source_version::text as version from ${table}
             where store_id = $1 and deleted_at is null and external_id is not null and source_version is not null and left(md5(external_id), 2) = any ($2::text[])`,
            [this.source.store_id, buckets],
          )
        ).rows,
    );
    return new Map(rows.map((r) => [r.external_id, r.version]));
  }
}

const ms = (pgTimestamp: string) => Date.parse(pgTimestamp.replace(" ", "T").replace(/([+-]\d\d)$/, "$1:00"));

export interface PullOptions {
  authUrl: string;
  url: string;
  source: Source;
  cursors: Cursor[];
  /** Stop reading forward after this long (the job is requeued at once to go on). */
  budgetMs: number;
  /** Reconcile now whatever reconciled_at says (tests, the operator). */
  forceReconcile?: boolean;
}

export async function pullOnce(options: PullOptions): Promise<PullReport> {
  const { source } = options;
  const report: PullReport = { applied: 0, rejected: 0, more: false, reconciled: [] };
  const started = Date.now();
  const store = await StoreDatabase.open(options.url, source.schema_name, { connectMs: Math.min(10_000, source.read_timeout_ms), statementMs: source.read_timeout_ms });
  let hub: Hub | null = null;
  try {
    hub = await Hub.open(options.authUrl, source).catch((err: unknown) => {
      throw new HubError(err);
    });
    for (const entity of ENTITIES) {
      const shape = await store.describe(entity);
      if (!shape) continue;
      const cursor = options.cursors.find((c) => c.entity === entity) ?? { entity, updated_at: null, external_id: null, reconciled_at: null };
      let after = cursor.updated_at !== null && cursor.external_id !== null ? { updatedAt: cursor.updated_at, externalId: cursor.external_id } : null;

      // 1. Forward, batch by batch, each batch with its cursor in one transaction.
      for (;;) {
        const { rows, storeNow } = await store.changes(entity, shape.deleted, after, source.batch_size);
        if (rows.length === 0) {
          // Nothing new: the pull is current (lag 0), its success recorded.
          await hub.tx((c) => hub!.advance(c, entity, null, 0));
          break;
        }
        const applyStarted = Date.now();
        const last = rows[rows.length - 1]!;
        const results = await hub.tx(async (c) => {
          const r = await Hub.sync(c, entity, rows.map(toSyncRow));
          await hub!.advance(c, entity, last, ms(storeNow) - ms(last.updated_at) + (Date.now() - applyStarted));
          return r;
        });
        report.applied += results.filter((r) => r.status === "applied").length;
        report.rejected += results.filter((r) => r.status === "rejected").length;
        after = { updatedAt: last.updated_at, externalId: last.external_id ?? "" };
        if (rows.length < source.batch_size) break;
        if (Date.now() - started > options.budgetMs) {
          report.more = true;
          break;
        }
      }

      // 2. Lookback: what committed late behind the cursor. Only the keys are
      // re-read and compared; the rows the hub lacks are then read whole.
      if (after && source.lookback_ms > 0) {
        const from = new Date(ms(after.updatedAt) - source.lookback_ms).toISOString();
        let page: { updatedAt: string; externalId: string } = { updatedAt: from, externalId: "" };
        for (;;) {
          const keys = await store.keys(entity, page, after, source.batch_size);
          if (keys.length === 0) break;
          const unheld = await hub.tx((c) =>
            Hub.unheld(
              c,
              entity,
              keys.map((k) => ({ externalId: k.external_id, version: k.version, ...(k.location === null ? {} : { location: k.location }) })),
            ),
          );
          if (unheld.length > 0) {
            const ids = [...new Set(unheld.map((i) => keys[i - 1]!.external_id).filter((id): id is string => id !== null))];
            const rows = (await store.byIds(entity, shape.deleted, ids)).map(toSyncRow);
            const results = await hub.tx(async (c) => {
              const pending = await Hub.pending(c, entity, rows);
              return Hub.sync(
                c,
                entity,
                pending.map((ord) => rows[ord - 1]!),
              );
            });
            report.applied += results.filter((r) => r.status === "applied").length;
            report.rejected += results.filter((r) => r.status === "rejected").length;
          }
          const last = keys[keys.length - 1]!;
          page = { updatedAt: last.updated_at, externalId: last.external_id ?? "" };
          if (keys.length < source.batch_size) break;
        }
      }

      // 3. Reconciliation, when due.
      const due = options.forceReconcile || cursor.reconciled_at === null || Date.now() - cursor.reconciled_at.getTime() >= source.reconcile_every_ms;
      if (due && RECONCILABLE.includes(entity) && !report.more) {
        const counts = await reconcile(store, hub, source, entity, shape.deleted);
        report.applied += counts.applied;
        report.rejected += counts.rejected;
        report.reconciled.push(entity);
      }
    }
  } finally {
    await hub?.close();
    await store.close();
  }
  return report;
}

/**
 * Compares the store's live rows with the hub's per id range; for the ranges
 * that differ, sends the store's rows the hub lacks (or holds at another
 * version) and deletes what the store no longer has, at the version after the
 * hub's (a hard delete carries no version of its own).
 */
async function reconcile(store: StoreDatabase, hub: Hub, source: Source, entity: Entity, hasDeleted: boolean): Promise<{ applied: number; rejected: number }> {
  const [theirs, ours] = [await store.digests(entity, hasDeleted), await hub.digests(entity)];
  const differing = [...new Set([...theirs.keys(), ...ours.keys()])].filter((b) => theirs.get(b) !== ours.get(b));
  const counts = { applied: 0, rejected: 0 };
  if (differing.length > 0) {
    const storeVersions = await store.versionsIn(entity, hasDeleted, differing);
    const hubVersions = await hub.versionsIn(entity, differing);
    const deletions = [...hubVersions].filter(([id]) => !storeVersions.has(id)).map(([id, v]) => ({ externalId: id, version: Number(v) + 1, deleted: true }));
    const changed = [...storeVersions].filter(([id, v]) => hubVersions.get(id) !== v).map(([id]) => id);
    const rows: Record<string, unknown>[] = [...deletions];
    for (let i = 0; i < changed.length; i += source.batch_size) rows.push(...(await store.byIds(entity, hasDeleted, changed.slice(i, i + source.batch_size))).map(toSyncRow));
    for (let i = 0; i < rows.length; i += source.batch_size) {
      const chunk = rows.slice(i, i + source.batch_size);
      // Only what the hub lacks: a row rejected before is not rejected again at every reconciliation.
      const results = await hub.tx(async (c) =>
        Hub.sync(
          c,
          entity,
          (await Hub.pending(c, entity, chunk)).map((ord) => chunk[ord - 1]!),
        ),
      );
      counts.applied += results.filter((r) => r.status === "applied").length;
      counts.rejected += results.filter((r) => r.status === "rejected").length;
    }
  }
  await hub.tx((c) => c.query("select retail_private.sync_source_reconciled($1, $2)", [source.id, entity]));
  return counts;
}
