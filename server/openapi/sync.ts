/**
 * The Data Sync API (DESIGN §13; issue 16): a store's system pushes its rows,
 * signed as every Open API request, with the scope sync:write and an
 * Idempotency-Key. The rows are validated, versioned and applied by SQL
 * (retail.sync, as the key, under its RLS: a key bound to a store writes that
 * store only); here only the envelope is checked, so one bad row is rejected
 * with its reasons while the others apply. Rejected rows are kept and listed
 * by GET /sync/rejects.
 */
import type { Ctx, JsonSchema, Route } from "./resources.js";
import { pageQuery, PAGE_SIZE } from "./resources.js";
import { AppError } from "../errors.js";

export const SYNC_ENTITIES = ["products", "inventory", "customers", "orders"] as const;
export const MAX_SYNC_ROWS = 1000;

const problem: JsonSchema = {
  type: "object",
  required: ["field", "message"],
  properties: { field: { type: "string" }, message: { type: "string" } },
};

export const syncSchemas: Record<string, JsonSchema> = {
  SyncBatch: {
    type: "object",
    additionalProperties: false,
    required: ["rows"],
    properties: {
      rows: {
        type: "array",
        maxItems: MAX_SYNC_ROWS,
        description: "Rows of one entity: {externalId, version, deleted?, data, store?}. Each row is checked on its own; see DESIGN §13 for the data of each entity.",
        items: { type: "object" },
      },
    },
  },
  SyncResults: {
    type: "object",
    required: ["results"],
    properties: {
      results: {
        type: "array",
        items: {
          type: "object",
          required: ["externalId", "status"],
          properties: {
            externalId: {},
            status: { type: "string", enum: ["applied", "unchanged", "stale", "rejected"] },
            error: { type: "object", properties: { code: { type: "string" }, message: { type: "string" }, details: { type: "array", items: problem } } },
          },
        },
      },
    },
  },
  SyncBulkJob: {
    type: "object",
    required: ["id", "entity", "state", "received", "applied", "unchanged", "stale", "rejected", "createdAt"],
    properties: {
      id: { type: "string", format: "uuid" },
      entity: { type: "string" },
      state: { type: "string", enum: ["receiving", "queued", "applying", "done", "failed"] },
      received: { type: "integer" },
      applied: { type: "integer" },
      unchanged: { type: "integer" },
      stale: { type: "integer" },
      rejected: { type: "integer" },
      error: { type: ["string", "null"] },
      createdAt: { type: "string", format: "date-time" },
      finishedAt: { type: ["string", "null"], format: "date-time" },
    },
  },
  SyncReject: {
    type: "object",
    required: ["id", "entity", "externalId", "version", "error", "receivedAt"],
    properties: {
      id: { type: "string" },
      store: { type: ["string", "null"] },
      entity: { type: "string" },
      externalId: { type: ["string", "null"] },
      version: { type: ["integer", "null"] },
      error: { type: "object" },
      row: {},
      receivedAt: { type: "string", format: "date-time" },
    },
  },
};

/** Batches are larger than the API's other bodies: 1,000 orders of many lines. */
export const SYNC_MAX_BODY_BYTES = 10_000_000;

export const syncRoutes: Route[] = [
  {
    // The load itself (POST /sync/{entity}/bulk, NDJSON, streamed) is served by server/openapi/bulk.ts.
    method: "get",
    path: "/sync/jobs/{jobId}",
    operationId: "getSyncBulkJob",
    summary: "A bulk load's progress: rows received, applied, unchanged, stale and rejected, and its state (issue 17). Rejected rows are listed by /sync/rejects.",
    tag: "Data Sync",
    scope: "sync:write",
    params: { jobId: { type: "string", format: "uuid" } },
    response: { status: 200, schema: "SyncBulkJob" },
    async handler({ client, params }: Ctx) {
      const { rows } = await client.query<Record<string, unknown>>(
        `select id, entity, state, received::int as received, applied::int as applied, unchanged::int as unchanged, stale::int as stale, rejected::int as rejected,
                error, created_at as "createdAt", finished_at as "finishedAt"
         from retail_private.sync_bulk_jobs where id = $1`,
        [params.jobId],
      );
      if (!rows[0]) throw new AppError("not_found", "No such bulk job.");
      return rows[0];
    },
  },
  {
    method: "post",
    path: "/sync/{entity}",
    operationId: "syncRows",
    summary: "Push a batch of one entity's rows (products, inventory, customers, orders); each row's outcome in order.",
    tag: "Data Sync",
    scope: "sync:write",
    params: { entity: { type: "string", enum: [...SYNC_ENTITIES] } },
    body: "SyncBatch",
    response: { status: 200, schema: "SyncResults" },
    idempotent: true,
    maxBodyBytes: SYNC_MAX_BODY_BYTES,
    async handler({ client, params, body }: Ctx) {
      const { rows } = await client.query<{ results: unknown[] }>("select retail.sync($1, $2::jsonb) as results", [params.entity, JSON.stringify(body.rows)]);
      return { results: rows[0]!.results };
    },
  },
  {
    method: "get",
    path: "/sync/rejects",
    operationId: "listSyncRejects",
    summary: "Rows the sync rejected, newest first, with their reasons (kept 30 days).",
    tag: "Data Sync",
    scope: "sync:write",
    query: {
      limit: pageQuery.limit!,
      cursor: { type: "string", pattern: "^[0-9]{1,19}$", description: "`nextCursor` of the previous page." },
      entity: { type: "string", enum: [...SYNC_ENTITIES] },
    },
    response: { status: 200, schema: "SyncReject", list: true },
    async handler({ client, query }: Ctx) {
      const limit = query.limit === undefined ? PAGE_SIZE.default : Number(query.limit);
      if (!(limit >= 1 && limit <= PAGE_SIZE.max)) {
        throw new AppError("invalid_input", "The page size is out of range.", { details: [{ field: "limit", message: `must be between 1 and ${PAGE_SIZE.max}` }] });
      }
      const { rows } = await client.query<{ id: string }>(
        `select r.id::text as id, s.code as store, r.entity, r.external_id as "externalId", r.version, r.error, r.row, r.received_at as "receivedAt"
         from retail.sync_rejects r left join retail.stores s on s.tenant_id = r.tenant_id and s.id = r.store_id
         where ($1::bigint is null or r.id < $1) and ($2::text is null or r.entity = $2)
         order by r.id desc limit $3`,
        [query.cursor ?? null, query.entity ?? null, limit + 1],
      );
      const more = rows.length > limit;
      const data = more ? rows.slice(0, limit) : rows;
      return { data, nextCursor: more ? data[data.length - 1]!.id : null };
    },
  },
];
