/**
 * The Open API's resources (issue 6): users, organizations, memberships, and
 * the calling key. Each route is declared once: its scope, the JSON Schemas of
 * its parameters, body and answer (which validate requests here and make the
 * OpenAPI document in document.ts), and a handler that runs SQL in the
 * request's transaction as authhub_api_client, under the ordinary policies.
 * Rows another tenant owns, or outside the key's subtree, are simply not there
 * (404); a visible row the key may not change is 403.
 */
import type pg from "pg";
import { AppError } from "../errors.js";
import type { ApiKeyRecord } from "./keys.js";

export type JsonSchema = Record<string, unknown>;
/** A row as SQL returns it, answered as JSON; the handlers read only the key columns named beside it. */
type Row = Record<string, unknown>;

export interface Ctx {
  client: pg.PoolClient;
  key: ApiKeyRecord;
  params: Record<string, string>;
  query: Record<string, string | undefined>;
  body: Record<string, unknown>;
  rateLimit: { limit: number; remaining: number; resetSeconds: number } | null;
}

export interface Route {
  method: "get" | "post" | "patch" | "delete";
  /** OpenAPI form, e.g. `/users/{id}`. */
  path: string;
  operationId: string;
  summary: string;
  tag: string;
  /** The scope the key needs (403 insufficient_scope without it); null: any key. */
  scope: string | null;
  params?: Record<string, JsonSchema>;
  query?: Record<string, JsonSchema>;
  body?: string;
  /** The answer: a component schema name, a list of one, or nothing (204). */
  response: { status: 200 | 201 | 204; schema?: string; list?: boolean };
  /** Writes that need an `Idempotency-Key` header (a retry answers the first answer; server/openapi/router.ts). */
  idempotent?: boolean;
  /** A body limit of its own (bytes), for batches; otherwise the API's. */
  maxBodyBytes?: number;
  handler(ctx: Ctx): Promise<unknown>;
}

const uuid: JsonSchema = { type: "string", format: "uuid" };
const timestamp: JsonSchema = { type: "string", format: "date-time" };
const nullable = (schema: JsonSchema): JsonSchema => ({ ...schema, type: [schema.type as string, "null"] });
/** Text without control characters (which no column takes). */
const text = (max: number): JsonSchema => ({ type: "string", minLength: 1, maxLength: max, pattern: "^[^\\u0000-\\u001f\\u007f]*$" });

export const identitySchemas: Record<string, JsonSchema> = {
  User: {
    type: "object",
    required: ["id", "email", "displayName", "externalId", "externalIssuer", "level", "status", "createdAt", "updatedAt"],
    properties: {
      id: uuid,
      email: { type: "string", format: "email" },
      displayName: nullable({ type: "string" }),
      externalId: nullable({ type: "string" }),
      externalIssuer: nullable({ type: "string" }),
      level: { type: "string", enum: ["USER", "TENANT_ADMIN", "SUPER_ADMIN"] },
      status: { type: "string", enum: ["active", "suspended"] },
      createdAt: timestamp,
      updatedAt: timestamp,
    },
  },
  UserCreate: {
    type: "object",
    additionalProperties: false,
    required: ["email"],
    properties: {
      email: text(320),
      displayName: text(200),
      externalId: text(255),
      externalIssuer: text(500),
      status: { type: "string", enum: ["active", "suspended"] },
    },
  },
  UserUpdate: {
    type: "object",
    additionalProperties: false,
    minProperties: 1,
    properties: { displayName: nullable(text(200)), status: { type: "string", enum: ["active", "suspended"] } },
  },
  Organization: {
    type: "object",
    required: ["id", "slug", "name", "parentId", "createdAt", "updatedAt"],
    properties: { id: uuid, slug: { type: "string" }, name: { type: "string" }, parentId: nullable(uuid), createdAt: timestamp, updatedAt: timestamp },
  },
  OrganizationCreate: {
    type: "object",
    additionalProperties: false,
    required: ["slug", "name"],
    properties: { slug: text(63), name: text(200), parentId: uuid },
  },
  OrganizationUpdate: {
    type: "object",
    additionalProperties: false,
    minProperties: 1,
    properties: { slug: text(63), name: text(200) },
  },
  Membership: {
    type: "object",
    required: ["organizationId", "userId", "level", "createdAt", "updatedAt"],
    properties: { organizationId: uuid, userId: uuid, level: { type: "string", enum: ["USER", "ORG_ADMIN"] }, createdAt: timestamp, updatedAt: timestamp },
  },
  MembershipCreate: {
    type: "object",
    additionalProperties: false,
    required: ["organizationId", "userId"],
    properties: { organizationId: uuid, userId: uuid, level: { type: "string", enum: ["USER", "ORG_ADMIN"] } },
  },
  MembershipUpdate: {
    type: "object",
    additionalProperties: false,
    required: ["level"],
    properties: { level: { type: "string", enum: ["USER", "ORG_ADMIN"] } },
  },
  Me: {
    type: "object",
    required: ["key", "tenant", "rateLimit"],
    properties: {
      key: {
        type: "object",
        required: ["id", "name", "organizationId", "scopes", "rateLimitPerMinute", "expiresAt"],
        properties: {
          id: { type: "string", pattern: "^ak_[0-9A-Za-z]{22}$" },
          name: { type: "string" },
          organizationId: nullable(uuid),
          scopes: { type: "array", items: { type: "string" } },
          rateLimitPerMinute: { type: "integer" },
          expiresAt: nullable(timestamp),
        },
      },
      tenant: {
        type: "object",
        required: ["id", "slug", "name", "apiRateLimitPerMinute"],
        properties: { id: uuid, slug: { type: "string" }, name: { type: "string" }, apiRateLimitPerMinute: nullable({ type: "integer" }) },
      },
      rateLimit: {
        type: "object",
        required: ["limit", "remaining", "reset"],
        properties: { limit: { type: "integer" }, remaining: { type: "integer" }, reset: { type: "integer", description: "Seconds until the window resets." } },
      },
    },
  },
  Error: {
    type: "object",
    required: ["error"],
    properties: {
      error: {
        type: "object",
        required: ["code", "message"],
        properties: {
          code: {
            type: "string",
            enum: ["unauthenticated", "forbidden", "insufficient_scope", "not_found", "invalid_input", "conflict", "payload_too_large", "rate_limited", "unavailable", "internal"],
          },
          message: { type: "string" },
          details: {
            type: "array",
            items: { type: "object", required: ["field", "message"], properties: { field: { type: "string" }, message: { type: "string" } } },
          },
        },
      },
    },
  },
};

export const PAGE_SIZE = { default: 50, max: 100 };
export const pageQuery: Record<string, JsonSchema> = {
  limit: { type: "string", pattern: "^[0-9]{1,3}$", description: `Page size, 1-${PAGE_SIZE.max} (default ${PAGE_SIZE.default}).` },
  cursor: { type: "string", pattern: "^[A-Za-z0-9_-]{1,200}$", description: "`nextCursor` of the previous page." },
};

/** A page of rows fetched with one extra to know whether another page follows. */
function page<R>(rows: R[], limit: number, cursorOf: (row: R) => string[]) {
  const more = rows.length > limit;
  const data = more ? rows.slice(0, limit) : rows;
  return { data, nextCursor: more ? Buffer.from(cursorOf(data[data.length - 1]!).join("/")).toString("base64url") : null };
}

function pageParams(ctx: Ctx, parts: number): { limit: number; after: (string | null)[] } {
  const limit = ctx.query.limit === undefined ? PAGE_SIZE.default : Number(ctx.query.limit);
  if (!(limit >= 1 && limit <= PAGE_SIZE.max)) {
    throw new AppError("invalid_input", "The page size is out of range.", { details: [{ field: "limit", message: `must be between 1 and ${PAGE_SIZE.max}` }] });
  }
  if (ctx.query.cursor === undefined) return { limit, after: Array<string | null>(parts).fill(null) };
  const after = Buffer.from(ctx.query.cursor, "base64url").toString("utf8").split("/");
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  if (after.length !== parts || !after.every((p) => UUID.test(p))) {
    throw new AppError("invalid_input", "The cursor is not one this API gave.", { details: [{ field: "cursor", message: "must be a nextCursor from a previous page" }] });
  }
  return { limit, after };
}

const notFound = (what: string) => new AppError("not_found", `No such ${what}.`);

const USER_COLUMNS = `id, email, display_name as "displayName", external_id as "externalId", external_issuer as "externalIssuer",
  level, status, created_at as "createdAt", updated_at as "updatedAt"`;
const ORG_COLUMNS = `id, slug, name, parent_id as "parentId", created_at as "createdAt", updated_at as "updatedAt"`;
const MEMBERSHIP_COLUMNS = `organization_id as "organizationId", user_id as "userId", level, created_at as "createdAt", updated_at as "updatedAt"`;

/** A table the API serves, by its key (the tenant comes from the key's claims, under RLS). */
interface Resource {
  what: string;
  table: string;
  /** The key: each column with the path parameter naming it. */
  key: [column: string, param: string][];
  columns: string;
}
const USERS: Resource = { what: "user", table: "authhub.users", key: [["id", "id"]], columns: USER_COLUMNS };
const ORGANIZATIONS: Resource = { what: "organization", table: "authhub.organizations", key: [["id", "id"]], columns: ORG_COLUMNS };
const MEMBERSHIPS: Resource = {
  what: "membership",
  table: "authhub.memberships",
  key: [
    ["organization_id", "organizationId"],
    ["user_id", "userId"],
  ],
  columns: MEMBERSHIP_COLUMNS,
};

/** `a = $1 and b = $2` for the resource's key, and the path's values for it. */
function byKey(res: Resource, params: Record<string, string>) {
  return { where: res.key.map(([column], i) => `${column} = $${i + 1}`).join(" and "), values: res.key.map(([, param]) => params[param]) };
}

/** One row by key, or 404 when the key cannot see it. */
async function getOne(client: pg.PoolClient, res: Resource, params: Record<string, string>) {
  const { where, values } = byKey(res, params);
  const { rows } = await client.query<Row>(`select ${res.columns} from ${res.table} where ${where}`, values);
  if (!rows[0]) throw notFound(res.what);
  return rows[0];
}

/**
 * Changes (`set`, with its values after the key's) or deletes (`set` null) one
 * row by key. When nothing was touched: 403 if the row is visible (the key may
 * see it but not change it), 404 if it is not.
 */
async function writeOne(client: pg.PoolClient, res: Resource, params: Record<string, string>, set: { sql: string; values: unknown[] } | null) {
  const { where, values } = byKey(res, params);
  const { rows } = set
    ? await client.query<Row>(`update ${res.table} set ${set.sql} where ${where} returning ${res.columns}`, [...values, ...set.values])
    : await client.query<Row>(`delete from ${res.table} where ${where} returning 1`, values);
  if (rows[0]) return rows[0];
  if ((await client.query(`select 1 from ${res.table} where ${where}`, values)).rowCount) {
    throw new AppError("forbidden", `This key may not change this ${res.what}.`);
  }
  throw notFound(res.what);
}

/** `set a = $2, b = $3` for the patch's fields (allowlisted by the schema), and their values. */
function assignments(body: Record<string, unknown>, columns: Record<string, string>, first: number) {
  const fields = Object.keys(body).filter((f) => f in columns);
  return { sql: fields.map((f, i) => `${columns[f]} = $${first + i}`).join(", "), values: fields.map((f) => body[f]) };
}

const idParam = { id: uuid };
const membershipParams = { organizationId: uuid, userId: uuid };

export const identityRoutes: Route[] = [
  {
    method: "get",
    path: "/me",
    operationId: "getMe",
    summary: "The calling key: its tenant, organization, scopes and limits.",
    tag: "Key",
    scope: null,
    response: { status: 200, schema: "Me" },
    async handler({ client, key, rateLimit }) {
      const { rows } = await client.query<Row>(`select id, slug, name, api_rate_limit_per_minute as "apiRateLimitPerMinute" from authhub.tenants where id = $1`, [key.tenantId]);
      return {
        key: {
          id: key.keyId,
          name: key.name,
          organizationId: key.organizationId,
          scopes: key.scopes,
          rateLimitPerMinute: key.rateLimitPerMinute,
          expiresAt: key.expiresAt?.toISOString() ?? null,
        },
        tenant: rows[0],
        rateLimit: rateLimit ? { limit: rateLimit.limit, remaining: rateLimit.remaining, reset: rateLimit.resetSeconds } : null,
      };
    },
  },
  // Users
  {
    method: "get",
    path: "/users",
    operationId: "listUsers",
    summary: "Users the key may read (an organization key: the members of its subtree), by id.",
    tag: "Users",
    scope: "user:read",
    query: { ...pageQuery, email: text(320) },
    response: { status: 200, schema: "User", list: true },
    async handler(ctx) {
      const { limit, after } = pageParams(ctx, 1);
      const { rows } = await ctx.client.query<Row & { id: string }>(
        `select ${USER_COLUMNS} from authhub.users
         where ($1::uuid is null or id > $1) and ($2::text is null or email = lower($2))
         order by tenant_id, id limit $3`,
        [after[0], ctx.query.email ?? null, limit + 1],
      );
      return page(rows, limit, (r) => [r.id]);
    },
  },
  {
    method: "get",
    path: "/users/{id}",
    operationId: "getUser",
    summary: "One user.",
    tag: "Users",
    scope: "user:read",
    params: idParam,
    response: { status: 200, schema: "User" },
    handler: ({ client, params }) => getOne(client, USERS, params),
  },
  {
    method: "post",
    path: "/users",
    operationId: "createUser",
    summary: "Create a user (at USER level) in the key's tenant.",
    tag: "Users",
    scope: "user:write",
    body: "UserCreate",
    response: { status: 201, schema: "User" },
    async handler({ client, key, body }) {
      const { rows } = await client.query<Row>(
        `insert into authhub.users (tenant_id, email, display_name, external_id, external_issuer, status)
         values ($1, $2, $3, $4, $5, coalesce($6, 'active')::authhub.user_status) returning ${USER_COLUMNS}`,
        [key.tenantId, body.email, body.displayName ?? null, body.externalId ?? null, body.externalIssuer ?? null, body.status ?? null],
      );
      return rows[0];
    },
  },
  {
    method: "patch",
    path: "/users/{id}",
    operationId: "updateUser",
    summary: "Rename, suspend or reactivate a user.",
    tag: "Users",
    scope: "user:write",
    params: idParam,
    body: "UserUpdate",
    response: { status: 200, schema: "User" },
    handler: ({ client, params, body }) => writeOne(client, USERS, params, assignments(body, { displayName: "display_name", status: "status" }, 2)),
  },
  {
    method: "delete",
    path: "/users/{id}",
    operationId: "deleteUser",
    summary: "Delete a user (with their memberships).",
    tag: "Users",
    scope: "user:write",
    params: idParam,
    response: { status: 204 },
    async handler({ client, params }) {
      await writeOne(client, USERS, params, null);
    },
  },
  // Organizations
  {
    method: "get",
    path: "/organizations",
    operationId: "listOrganizations",
    summary: "Organizations the key may read (an organization key: its subtree), by id.",
    tag: "Organizations",
    scope: "org:read",
    query: { ...pageQuery, parentId: uuid },
    response: { status: 200, schema: "Organization", list: true },
    async handler(ctx) {
      const { limit, after } = pageParams(ctx, 1);
      const { rows } = await ctx.client.query<Row & { id: string }>(
        `select ${ORG_COLUMNS} from authhub.organizations
         where ($1::uuid is null or id > $1) and ($2::uuid is null or parent_id = $2)
         order by tenant_id, id limit $3`,
        [after[0], ctx.query.parentId ?? null, limit + 1],
      );
      return page(rows, limit, (r) => [r.id]);
    },
  },
  {
    method: "get",
    path: "/organizations/{id}",
    operationId: "getOrganization",
    summary: "One organization.",
    tag: "Organizations",
    scope: "org:read",
    params: idParam,
    response: { status: 200, schema: "Organization" },
    handler: ({ client, params }) => getOne(client, ORGANIZATIONS, params),
  },
  {
    method: "post",
    path: "/organizations",
    operationId: "createOrganization",
    summary: "Create an organization (an organization key: below its organization).",
    tag: "Organizations",
    scope: "org:write",
    body: "OrganizationCreate",
    response: { status: 201, schema: "Organization" },
    async handler({ client, key, body }) {
      const { rows } = await client.query<Row>(`insert into authhub.organizations (tenant_id, slug, name, parent_id) values ($1, $2, $3, $4) returning ${ORG_COLUMNS}`, [
        key.tenantId,
        body.slug,
        body.name,
        body.parentId ?? null,
      ]);
      return rows[0];
    },
  },
  {
    method: "patch",
    path: "/organizations/{id}",
    operationId: "updateOrganization",
    summary: "Rename an organization or change its slug.",
    tag: "Organizations",
    scope: "org:write",
    params: idParam,
    body: "OrganizationUpdate",
    response: { status: 200, schema: "Organization" },
    handler: ({ client, params, body }) => writeOne(client, ORGANIZATIONS, params, assignments(body, { slug: "slug", name: "name" }, 2)),
  },
  {
    method: "delete",
    path: "/organizations/{id}",
    operationId: "deleteOrganization",
    summary: "Delete an organization without children (its memberships go with it).",
    tag: "Organizations",
    scope: "org:write",
    params: idParam,
    response: { status: 204 },
    async handler({ client, params }) {
      await writeOne(client, ORGANIZATIONS, params, null);
    },
  },
  // Memberships
  {
    method: "get",
    path: "/memberships",
    operationId: "listMemberships",
    summary: "Memberships the key may read, by organization then user.",
    tag: "Memberships",
    scope: "membership:read",
    query: { ...pageQuery, organizationId: uuid, userId: uuid },
    response: { status: 200, schema: "Membership", list: true },
    async handler(ctx) {
      const { limit, after } = pageParams(ctx, 2);
      const { rows } = await ctx.client.query<Row & { organizationId: string; userId: string }>(
        `select ${MEMBERSHIP_COLUMNS} from authhub.memberships
         where ($1::uuid is null or (organization_id, user_id) > ($1, $2::uuid))
           and ($3::uuid is null or organization_id = $3) and ($4::uuid is null or user_id = $4)
         order by tenant_id, organization_id, user_id limit $5`,
        [after[0], after[1], ctx.query.organizationId ?? null, ctx.query.userId ?? null, limit + 1],
      );
      return page(rows, limit, (r) => [r.organizationId, r.userId]);
    },
  },
  {
    method: "get",
    path: "/memberships/{organizationId}/{userId}",
    operationId: "getMembership",
    summary: "One membership.",
    tag: "Memberships",
    scope: "membership:read",
    params: membershipParams,
    response: { status: 200, schema: "Membership" },
    handler: ({ client, params }) => getOne(client, MEMBERSHIPS, params),
  },
  {
    method: "post",
    path: "/memberships",
    operationId: "createMembership",
    summary: "Add a user to an organization.",
    tag: "Memberships",
    scope: "membership:write",
    body: "MembershipCreate",
    response: { status: 201, schema: "Membership" },
    async handler({ client, key, body }) {
      const { rows } = await client.query<Row>(
        `insert into authhub.memberships (tenant_id, organization_id, user_id, level)
         values ($1, $2, $3, coalesce($4, 'USER')::authhub.role_level) returning ${MEMBERSHIP_COLUMNS}`,
        [key.tenantId, body.organizationId, body.userId, body.level ?? null],
      );
      return rows[0];
    },
  },
  {
    method: "patch",
    path: "/memberships/{organizationId}/{userId}",
    operationId: "updateMembership",
    summary: "Change a membership's level.",
    tag: "Memberships",
    scope: "membership:write",
    params: membershipParams,
    body: "MembershipUpdate",
    response: { status: 200, schema: "Membership" },
    handler: ({ client, params, body }) => writeOne(client, MEMBERSHIPS, params, assignments(body, { level: "level" }, 3)),
  },
  {
    method: "delete",
    path: "/memberships/{organizationId}/{userId}",
    operationId: "deleteMembership",
    summary: "Remove a user from an organization.",
    tag: "Memberships",
    scope: "membership:write",
    params: membershipParams,
    response: { status: 204 },
    async handler({ client, params }) {
      await writeOne(client, MEMBERSHIPS, params, null);
    },
  },
];
