/**
 * The one place where failures become public errors (DESIGN.md §9): a stable
 * code, a safe message, an HTTP status and, for invalid input, the fields at
 * fault. SQLSTATEs raised by the database (custom `AH…` codes and the standard
 * constraint classes) are mapped here for GraphQL and REST alike. docs/errors.md
 * lists every code.
 */
import { isConnectionError } from "../db/pools.js";

export type ErrorCode =
  | "unauthenticated"
  | "forbidden"
  | "insufficient_scope"
  | "not_found"
  | "invalid_input"
  | "conflict"
  | "idempotency_mismatch"
  | "payload_too_large"
  | "query_too_deep"
  | "rate_limited"
  | "invalid_signature"
  | "unavailable"
  | "internal";

const STATUS: Record<ErrorCode, number> = {
  unauthenticated: 401,
  forbidden: 403,
  insufficient_scope: 403,
  not_found: 404,
  invalid_input: 400,
  conflict: 409,
  idempotency_mismatch: 422,
  payload_too_large: 413,
  query_too_deep: 400,
  rate_limited: 429,
  invalid_signature: 400,
  unavailable: 503,
  internal: 500,
};

export interface FieldProblem {
  field: string;
  message: string;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details?: FieldProblem[];
  /** Seconds a client should wait before trying again (sent as Retry-After). */
  readonly retryAfter?: number;

  constructor(code: ErrorCode, message: string, options?: { details?: FieldProblem[]; cause?: unknown; retryAfter?: number }) {
    super(message, { cause: options?.cause });
    this.name = "AppError";
    this.code = code;
    this.status = STATUS[code];
    if (options?.details) this.details = options.details;
    if (options?.retryAfter !== undefined) this.retryAfter = options.retryAfter;
  }

  toJSON(): { error: { code: ErrorCode; message: string; details?: FieldProblem[] } } {
    return { error: { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) } };
  }
}

/** What node-postgres exposes of a server error. */
interface PgErrorFields {
  code?: unknown;
  constraint?: unknown;
  column?: unknown;
  table?: unknown;
  dataType?: unknown;
  message?: unknown;
  severity?: unknown;
}

/** Named checks (constraints and domain checks) → the public field and message. */
const CHECKS: Record<string, FieldProblem> = {
  slug_format: { field: "slug", message: "must be 1-63 lowercase letters, digits or inner hyphens" },
  display_text_format: { field: "name", message: "must be 1-200 characters with no control characters or surrounding spaces" },
  email_format: { field: "email", message: "must be a valid e-mail address of at most 320 characters" },
  https_url_format: { field: "logoUrl", message: "must be an absolute https:// URL of at most 2048 characters" },
  hex_color_format: { field: "primaryColor", message: "must be a colour as #RRGGBB" },
  hostname_format: { field: "allowedDomains", message: "must be lowercase DNS names such as example.com" },
  external_id_format: { field: "externalId", message: "must be 1-255 characters without spaces" },
  webhook_deliveries_svix_id_format: { field: "svixId", message: "must be 1-100 letters, digits, _ . : or -" },
  webhook_endpoints_role_mapping: { field: "roleMapping", message: "must map at most 20 Clerk roles (org:…) to USER or ORG_ADMIN" },
  issuer_format: { field: "externalIssuer", message: "must be 1-500 characters without spaces (a token issuer)" },
  tenants_allowed_domains_size: { field: "allowedDomains", message: "must list at most 50 domains" },
  users_level_tenant_wide: { field: "level", message: "must be USER, TENANT_ADMIN or SUPER_ADMIN" },
  memberships_level_org_wide: { field: "level", message: "must be USER or ORG_ADMIN" },
  organizations_parent_not_self: { field: "parentId", message: "cannot be the organization itself" },
  permission_key_format: { field: "permission", message: "must be <resource>:<action> in lowercase" },
  roles_level_allowed: { field: "level", message: "must be ORG_ADMIN or TENANT_ADMIN" },
  roles_description_length: { field: "description", message: "must be at most 1000 characters" },
  tenants_audit_retention_days_range: { field: "auditRetentionDays", message: "must be between 30 and 3650 days" },
  tenants_api_rate_limit_range: { field: "apiRateLimitPerMinute", message: "must be between 1 and 1000000 requests per minute" },
  api_keys_rate_limit_range: { field: "rateLimitPerMinute", message: "must be between 1 and 1000000 requests per minute" },
  api_keys_scopes_size: { field: "scopes", message: "must list 1-20 scopes" },
  // Retail (issue 16).
  stores_timezone_known: { field: "timezone", message: "must be an IANA time zone such as Europe/Berlin" },
  stores_status: { field: "status", message: "must be active or closed" },
  sku_format: { field: "sku", message: "must be 1-64 letters, digits or . _ / - (starting with a letter or digit)" },
  money_minor_range: { field: "priceMinor", message: "must be a whole number of minor units, at least 0" },
  products_status: { field: "status", message: "must be draft, active or archived" },
  products_attributes_object: { field: "attributes", message: "must be an object of at most 16 kB" },
  products_source_version_range: { field: "sourceVersion", message: "must be at least 0" },
  products_synced_variants_array: { field: "variants", message: "must be a list" },
  event_endpoints_url: { field: "url", message: "must be an http(s) URL of at most 2000 characters, without spaces" },
  sync_sources_poll_interval_range: { field: "pollInterval", message: "must be between 100 and 3600000 milliseconds" },
  sync_sources_lookback_range: { field: "lookback", message: "must be between 0 and 86400000 milliseconds" },
  event_endpoints_event_types: {
    field: "eventTypes",
    message: "must be 1 to 50 event types such as retail.order.created, or patterns such as retail.* or * (one to three dot-separated segments)",
  },
  inventory_levels_on_hand_range: { field: "onHand", message: "must be a whole number between -1000000000 and 1000000000" },
  inventory_levels_reserved_range: { field: "reserved", message: "must be a whole number between 0 and 1000000000" },
  inventory_levels_source_version_range: { field: "sourceVersion", message: "must be at least 0" },
  customers_source_version_range: { field: "sourceVersion", message: "must be at least 0" },
  orders_number_format: { field: "number", message: "must be 1-64 letters, digits or . _ # / -" },
  orders_status: { field: "status", message: "must be pending, paid, fulfilled, cancelled or refunded" },
  orders_placed_at_range: { field: "placedAt", message: "must be between 2000 and 2100" },
  orders_source_version_range: { field: "sourceVersion", message: "must be at least 0" },
  order_lines_line_no_range: { field: "lineNo", message: "must be between 1 and 10000" },
  order_lines_quantity_positive: { field: "quantity", message: "must be a whole number from 1 to 1000000" },
  order_lines_discount_within: { field: "discountMinor", message: "must not exceed quantity × unit price" },
};

/** The named checks mapped above (test/server/errors.test.ts holds them to the catalog and docs/errors.md). */
export const NAMED_CHECKS: readonly string[] = Object.keys(CHECKS);

/** Unique keys → the field a duplicate was found in. */
const UNIQUE: Record<string, string> = {
  tenants_slug_key: "slug",
  users_email_key: "email",
  users_external_id_key: "externalId",
  organizations_slug_key: "slug",
  memberships_pkey: "userId",
  roles_key_key: "key",
  role_assignments_unique: "roleId",
  role_permissions_pkey: "permissionKey",
  stores_code_key: "code",
  products_external_id_key: "externalId",
  variants_sku_key: "sku",
  customers_external_id_key: "externalId",
  orders_external_id_key: "externalId",
  orders_number_key: "number",
  order_lines_pkey: "lineNo",
  inventory_levels_pkey: "sku",
};

/** Foreign keys → the field whose reference does not exist (or is another tenant's, which looks the same). */
const REFERENCES: Record<string, string> = {
  organizations_parent_fkey: "parentId",
  memberships_organization_fkey: "organizationId",
  memberships_user_fkey: "userId",
  organizations_tenant_id_fkey: "tenantId",
  users_tenant_id_fkey: "tenantId",
  memberships_tenant_id_fkey: "tenantId",
  role_permissions_role_fkey: "roleId",
  role_permissions_permission_fkey: "permissionKey",
  role_assignments_user_fkey: "userId",
  role_assignments_role_fkey: "roleId",
  role_assignments_organization_fkey: "organizationId",
  stores_currency_fkey: "currency",
  stores_organization_fkey: "id",
  variants_currency_fkey: "currency",
  orders_currency_fkey: "currency",
  variants_product_fkey: "productId",
  orders_customer_fkey: "customerId",
  order_lines_order_fkey: "orderId",
  products_store_fkey: "storeId",
  inventory_levels_store_fkey: "storeId",
  customers_store_fkey: "storeId",
  orders_store_fkey: "storeId",
};

const camel = (s: string) => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

function pgFields(err: unknown): PgErrorFields | null {
  if (typeof err !== "object" || err === null) return null;
  const e = err as PgErrorFields;
  return typeof e.code === "string" && /^[0-9A-Z]{5}$/.test(e.code) && typeof e.severity === "string" ? e : null;
}

/** How long a client is asked to wait when the database cannot be reached (seconds). */
export const UNAVAILABLE_RETRY_AFTER = 2;

/** The database is down, restarting, out of connections, or dropped this request's connection. */
export function unavailable(cause?: unknown): AppError {
  return new AppError("unavailable", "The service is temporarily unavailable; try again shortly.", { cause, retryAfter: UNAVAILABLE_RETRY_AFTER });
}

/**
 * A database error as a public error, or null when the error did not come from
 * the database. Messages never include SQL text or internal names.
 */
export function fromDatabaseError(err: unknown): AppError | null {
  // Checked first: a lost connection, a refused connect or a full pool are not the statement's fault.
  if (isConnectionError(err)) return unavailable(err);
  const e = pgFields(err);
  if (!e) return null;
  const code = e.code as string;
  const constraint = typeof e.constraint === "string" ? e.constraint : undefined;
  const column = typeof e.column === "string" ? camel(e.column) : undefined;
  const raw = typeof e.message === "string" ? e.message : "";
  switch (code) {
    // AuthHub's own SQLSTATEs: the message was written to be shown.
    case "AH401":
      return new AppError("unauthenticated", raw, { cause: err });
    case "AH403":
      return new AppError("forbidden", raw, { cause: err });
    case "AH404":
      return new AppError("not_found", raw, { cause: err });
    case "AH409":
      return new AppError("conflict", raw, { cause: err });
    case "AH422":
      return new AppError("invalid_input", raw, { cause: err, ...(column ? { details: [{ field: column, message: raw }] } : {}) });
    case "42501": // insufficient_privilege, including "new row violates row-level security policy"
      return new AppError("forbidden", "You are not allowed to do this.", { cause: err });
    case "23505": {
      const field = (constraint && UNIQUE[constraint]) ?? "id";
      return new AppError("conflict", `Another record already has this ${field}.`, {
        cause: err,
        details: [{ field, message: "is already taken" }],
      });
    }
    case "23503": {
      // Raised both when a reference is missing and when a referenced row still has dependants.
      if (/still referenced|update or delete on table/.test(raw)) {
        return new AppError("conflict", "This record is still referenced by others; remove those first.", { cause: err });
      }
      const field = (constraint && REFERENCES[constraint]) ?? "id";
      return new AppError("invalid_input", `The referenced ${field} does not exist.`, {
        cause: err,
        details: [{ field, message: "does not exist" }],
      });
    }
    case "23001": // restrict_violation: the row still has dependants (e.g. child organizations)
      return new AppError("conflict", "This record is still referenced by others; remove those first.", { cause: err });
    case "23514": {
      const known = constraint ? CHECKS[constraint] : undefined;
      const problem = known ?? { field: column ?? "input", message: "is not valid" };
      return new AppError("invalid_input", `Invalid ${problem.field}: ${problem.message}.`, { cause: err, details: [problem] });
    }
    case "23502":
      return new AppError("invalid_input", `${column ?? "A required field"} is required.`, {
        cause: err,
        details: [{ field: column ?? "input", message: "is required" }],
      });
    case "22021": // character_not_in_repertoire: a NUL byte in a string
    case "22P05": // untranslatable_character: \u0000 in JSON
      return new AppError("invalid_input", "A value contains a character that cannot be stored (such as a NUL byte).", { cause: err });
    case "22001":
    case "22003":
    case "22007":
    case "22008":
    case "22P02":
    case "22023":
      return new AppError("invalid_input", "A value has the wrong format or is out of range.", { cause: err });
    case "40001":
    case "40P01":
      return new AppError("conflict", "The change collided with another one; retry it.", { cause: err });
    case "57014":
      return new AppError("unavailable", "The request took too long and was cancelled.", { cause: err, retryAfter: UNAVAILABLE_RETRY_AFTER });
    default:
      return null;
  }
}

/** Any thrown value as a public error: known ones keep their code, the rest are `internal`. */
export function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  return fromDatabaseError(err) ?? new AppError("internal", "An internal error occurred.", { cause: err });
}
