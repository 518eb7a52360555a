/**
 * Creating webhook endpoints (issue 7): the Svix signing secret (`whsec_…`,
 * given, or made here) is encrypted under the master key before SQL sees it,
 * and shown once. One path for GraphQL's createWebhookEndpoint and
 * `npx authhub webhook create`.
 */
import { randomBytes } from "node:crypto";
import type pg from "pg";
import type { MasterKey } from "../auth/masterKey.js";
import { AppError } from "../errors.js";

const WHSEC_RE = /^whsec_[A-Za-z0-9+/]{24,}={0,2}$/;

export interface EndpointInput {
  name: string;
  /** The Clerk instance's token issuer (required: it decides which users the endpoint may change). */
  issuer: string;
  roleMapping?: Record<string, string> | null;
  /** A secret to use (one Clerk shows for an existing endpoint); default: a new one. */
  secret?: string | null;
  /** A Clerk secret key (sk_…): with it, reconciliation reads Clerk's Backend API for this endpoint. */
  clerkSecretKey?: string | null;
  /** Only for the operator (the CLI); a tenant admin creates in its own tenant. */
  tenantId?: string | null;
}

const CLERK_KEY_RE = /^sk_(test|live)_[A-Za-z0-9]{10,200}$/;

export async function createWebhookEndpoint(client: Pick<pg.PoolClient, "query">, masterKey: MasterKey, input: EndpointInput) {
  const secret = input.secret ?? `whsec_${randomBytes(24).toString("base64")}`;
  if (!WHSEC_RE.test(secret)) {
    throw new AppError("invalid_input", "The signing secret must look like whsec_ followed by base64.", { details: [{ field: "secret", message: "must be whsec_…" }] });
  }
  if (input.clerkSecretKey && !CLERK_KEY_RE.test(input.clerkSecretKey)) {
    throw new AppError("invalid_input", "The Clerk secret key must look like sk_test_… or sk_live_….", {
      details: [{ field: "clerkSecretKey", message: "must be sk_test_… or sk_live_…" }],
    });
  }
  const { rows } = await client.query<{ id: string; tenant_id: string }>(
    "select (e).id, (e).tenant_id from (select authhub_private.create_webhook_endpoint($1, $2, $3, $4, $5) as e) created",
    [input.name, input.issuer, input.roleMapping ? JSON.stringify(input.roleMapping) : null, masterKey.encrypt(secret), input.tenantId ?? null],
  );
  const row = rows[0]!;
  if (input.clerkSecretKey) {
    await client.query("select authhub_private.set_webhook_clerk_key($1, $2)", [row.id, masterKey.encrypt(input.clerkSecretKey)]);
  }
  return { id: row.id, tenantId: row.tenant_id, path: `/webhooks/clerk/${row.id}`, secret };
}
