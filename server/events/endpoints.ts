/**
 * Registering event endpoints (issue 17, DESIGN.md §14): the URL is checked
 * against the sending rules (https; plain http to loopback only outside
 * production; in production no private, loopback or link-local address, the
 * host resolved and every address checked), the signing secret (`whsec_` and
 * 32 random bytes, base64) is made here, encrypted under the master key before
 * SQL sees it, and returned once. One path for GraphQL's createEventEndpoint
 * and `npx authhub events endpoint add`.
 */
import { randomBytes } from "node:crypto";
import type pg from "pg";
import type { MasterKey } from "../auth/masterKey.js";
import { AppError } from "../errors.js";
import { checkEventUrl, EventUrlRefused, resolveChecked } from "../../worker/events/address.js";

export interface EventEndpointInput {
  url: string;
  /** Patterns of the types to send (`retail.order.*`, `identity.*`, `*`); default everything. */
  eventTypes?: string[] | null;
  description?: string | null;
  /** A store's system: only that store's retail events, none its own sync made. */
  storeId?: string | null;
  /** Only for the operator (the CLI); a tenant admin creates in its own tenant. */
  tenantId?: string | null;
}

export interface CreatedEventEndpoint {
  id: string;
  tenantId: string;
  url: string;
  eventTypes: string[];
  secret: string;
}

export async function checkEndpointUrl(url: string, production: boolean): Promise<void> {
  try {
    const parsed = checkEventUrl(url, production);
    // In production the name is resolved now too, so a private target is refused at once (and again at every attempt).
    if (production) await resolveChecked(parsed, production);
  } catch (err) {
    if (err instanceof EventUrlRefused) throw new AppError("invalid_input", err.message, { details: [{ field: "url", message: err.message }] });
    throw err;
  }
}

export async function createEventEndpoint(
  client: Pick<pg.PoolClient, "query">,
  masterKey: MasterKey,
  input: EventEndpointInput,
  options: { production: boolean },
): Promise<CreatedEventEndpoint> {
  await checkEndpointUrl(input.url, options.production);
  // The patterns are checked by the table (event_endpoints_event_types, mapped in server/errors.ts), for creation and updates alike.
  const eventTypes = input.eventTypes ?? ["*"];
  const secret = `whsec_${randomBytes(32).toString("base64")}`;
  const { rows } = await client.query<{ id: string; tenant_id: string; url: string; event_types: string[] }>(
    `select (e).id, (e).tenant_id, (e).url, (e).event_types
     from (select authhub_private.create_event_endpoint($1, $2, $3, $4, $5, $6) as e) created`,
    [input.url, eventTypes, input.description ?? null, input.storeId ?? null, masterKey.encrypt(secret), input.tenantId ?? null],
  );
  const row = rows[0]!;
  return { id: row.id, tenantId: row.tenant_id, url: row.url, eventTypes: row.event_types, secret };
}
