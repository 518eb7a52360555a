/**
 * Reading a store's own PostgreSQL (the pull connector, DESIGN §13): one view
 * per entity in the sync shape `external_id, version, deleted, data,
 * updated_at` (`deleted` optional: a store that hard-deletes has none, and
 * reconciliation finds its deletions). Read-only, bounded by timeouts, with
 * `updated_at` kept as PostgreSQL's own text so the keyset cursor loses no
 * microseconds.
 */
import pg from "pg";

export const ENTITIES = ["customers", "products", "inventory", "orders"] as const;
export type Entity = (typeof ENTITIES)[number];

/** Entities whose hub rows are keyed by the store's external_id alone (reconcilable). */
export const RECONCILABLE: readonly Entity[] = ["customers", "products", "orders"];

export interface StoreRow {
  external_id: string | null;
  version: string | null;
  deleted: boolean | null;
  data: unknown;
  updated_at: string;
}

export interface StoreTimeouts {
  connectMs: number;
  statementMs: number;
}

export const DEFAULT_STORE_TIMEOUTS: StoreTimeouts = { connectMs: 10_000, statementMs: 30_000 };

const ident = (name: string) => pg.escapeIdentifier(name);

/** The store's database, opened read-only for one poll. */
export class StoreDatabase {
  private constructor(
    private readonly client: pg.Client,
    private readonly schema: string,
  ) {}

  static async open(url: string, schema: string, timeouts: StoreTimeouts = DEFAULT_STORE_TIMEOUTS): Promise<StoreDatabase> {
    const client = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: timeouts.connectMs,
      statement_timeout: timeouts.statementMs,
      query_timeout: timeouts.statementMs + 5_000,
      application_name: "authhub-pull",
    });
    // A connection the store ends under us fails the query in flight, not the process.
    client.on("error", () => undefined);
    try {
      await client.connect();
      await client.query("set session characteristics as transaction read only; set timezone = 'UTC'; set datestyle = 'ISO'");
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
    return new StoreDatabase(client, schema);
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => undefined);
  }

  private view(entity: Entity): string {
    return `${ident(this.schema)}.${ident(entity)}`;
  }

  /** The entity's view and whether it has a `deleted` column; null when the store exposes no such view. */
  async describe(entity: Entity): Promise<{ deleted: boolean } | null> {
    const { rows } = await this.client.query<{ attname: string }>(
      `select a.attname from pg_catalog.pg_attribute a
       where a.attrelid = to_regclass($1) and a.attnum > 0 and not a.attisdropped`,
      [this.view(entity)],
    );
    if (rows.length === 0) return null;
    return { deleted: rows.some((r) => r.attname === "deleted") };
  }

  private columns(hasDeleted: boolean): string {
    return `external_id::text as external_id, version::text as version, ${hasDeleted ? "deleted::boolean" : "false"} as deleted, data::jsonb as data, updated_at::timestamptz::text as updated_at`;
  }

  /**
   * Rows after the cursor, in keyset order, and the store's clock at the read
   * (for the lag). `after` null: from the beginning. `upTo`: inclusive upper bound.
   */
  async changes(
    entity: Entity,
    hasDeleted: boolean,
    after: { updatedAt: string; externalId: string } | null,
    limit: number,
    upTo: { updatedAt: string; externalId: string } | null = null,
  ): Promise<{ rows: StoreRow[]; storeNow: string }> {
    const params: unknown[] = [limit];
    const where: string[] = ["updated_at is not null"];
    if (after) {
      params.push(after.updatedAt, after.externalId);
      where.push(`(updated_at, external_id::text collate "C") > ($${params.length - 1}::timestamptz, $${params.length}::text collate "C")`);
    }
    if (upTo) {
      params.push(upTo.updatedAt, upTo.externalId);
      where.push(`(updated_at, external_id::text collate "C") <= ($${params.length - 1}::timestamptz, $${params.length}::text collate "C")`);
    }
    const { rows } = await this.client.query<StoreRow>(
      `select ${this.columns(hasDeleted)} from ${this.view(entity)} where ${where.join(" and ")}
       order by updated_at, external_id::text collate "C" limit $1`,
      params,
    );
    const storeNow = (await this.client.query<{ now: string }>("select clock_timestamp()::text as now")).rows[0]!.now;
    return { rows, storeNow };
  }

  /**
   * Only the keys (external_id, version, and for inventory the location) of
   * the rows in a keyset range: what a lookback re-read compares with the hub.
   */
  async keys(
    entity: Entity,
    after: { updatedAt: string; externalId: string },
    upTo: { updatedAt: string; externalId: string },
    limit: number,
  ): Promise<{ external_id: string | null; version: string | null; location: string | null; updated_at: string }[]> {
    return (
      await this.client.query(
        `select external_id::text as external_id, version::text as version, ${entity === "inventory" ? "data ->> 'location'" : "null::text"} as location,
                updated_at::timestamptz::text as updated_at
         from ${this.view(entity)}
         where updated_at is not null
           and (updated_at, external_id::text collate "C") > ($2::timestamptz, $3::text collate "C")
           and (updated_at, external_id::text collate "C") <= ($4::timestamptz, $5::text collate "C")
         order by updated_at, external_id::text collate "C" limit $1`,
        [limit, after.updatedAt, after.externalId, upTo.updatedAt, upTo.externalId],
      )
    ).rows as { external_id: string | null; version: string | null; location: string | null; updated_at: string }[];
  }

  /** Rows by external id (the ranges reconciliation found different). */
  async byIds(entity: Entity, hasDeleted: boolean, ids: string[]): Promise<StoreRow[]> {
    if (ids.length === 0) return [];
    return (await this.client.query<StoreRow>(`select ${this.columns(hasDeleted)} from ${this.view(entity)} where external_id::text = any ($1::text[])`, [ids])).rows;
  }

  /** Count and hash of (external_id, version) of the live rows per id range (the first two hex digits of md5(external_id)). */
  async digests(entity: Entity, hasDeleted: boolean): Promise<Map<string, string>> {
    const { rows } = await this.client.query<{ bucket: string; digest: string }>(
      `select left(md5(external_id::text), 2) as bucket,
              count(*)::text || ':' || md5(string_agg(external_id::text || ':' || version::text, ',' order by external_id::text collate "C")) as digest
       from ${this.view(entity)} where external_id is not null ${hasDeleted ? "and not coalesce(deleted, false)" : ""} group by 1`,
    );
    return new Map(rows.map((r) => [r.bucket, r.digest]));
  }

  /** (external_id, version) of the live rows in some id ranges. */
  async versionsIn(entity: Entity, hasDeleted: boolean, buckets: string[]): Promise<Map<string, string>> {
    const { rows } = await this.client.query<{ external_id: string; version: string }>(
      `select external_id::text as external_id, version::text as version from ${this.view(entity)}
       where external_id is not null ${hasDeleted ? "and not coalesce(deleted, false)" : ""} and left(md5(external_id::text), 2) = any ($1::text[])`,
      [buckets],
    );
    return new Map(rows.map((r) => [r.external_id, r.version]));
  }
}

/** A row as the sync's write path takes it (a version that is no integer is sent as it came, and rejected there). */
export function toSyncRow(row: StoreRow): Record<string, unknown> {
  const version = row.version !== null && /^[0-9]{1,15}$/.test(row.version) ? Number(row.version) : row.version;
  return { externalId: row.external_id, version, deleted: row.deleted === true, data: row.data };
}

/**
 * What may be said about a failure to read a store: its kind and code, never
 * the URL (which holds the password) nor a stack.
 */
export function safeStoreError(err: unknown): string {
  const hub = err instanceof Error && err.message === "hub error" && "cause" in err;
  if (hub) return `hub error: ${safeStoreError((err as { cause: unknown }).cause).replace(/^store database /, "")}`;
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === "string" ? e.code : null;
  const message = typeof e?.message === "string" ? e.message : "";
  if (code && /^[0-9A-Z]{5}$/.test(code)) return `store database error ${code}: ${message.replace(/postgres(ql)?:\/\/\S+/gi, "[url]").slice(0, 200)}`;
  if (code && /^E[A-Z]+$/.test(code)) return `store database unreachable (${code})`;
  if (/timeout/i.test(message)) return "store database timed out";
  if (/terminated|Connection terminated/i.test(message)) return "store database connection ended";
  return "store database error";
}
