/**
 * `npx authhub seed demo` (DESIGN.md §10, §12): a tenant to try AuthHub with.
 * Steps, in one transaction as the operator (the caller names the audit actor):
 *
 *   1. identity: organizations, a user at every level, a custom role
 *      (db/seed/identity.ts, plain SQL);
 *   2. credentials: an Open API key and a Clerk webhook endpoint, through the
 *      same issueApiKey and createWebhookEndpoint as `apikey create` and
 *      `webhook create`.
 *
 * A later retail step (stores, products, customers, orders, sized by flags)
 * goes between the two, as set-based SQL under db/seed/, filling the store
 * organizations step 1 made; its options join SeedDemoOptions.
 *
 * Idempotent: step 1 by natural keys (see its module). The key and the
 * endpoint have no natural key, so the demo's are known by their name: an
 * active key named DEMO_API_KEY_NAME (revoked or expired: a new one is issued)
 * and an endpoint named DEMO_WEBHOOK_NAME. Their secrets are shown once, when
 * they are made; a rerun reports them without secrets (AuthHub never shows a
 * stored secret again).
 */
import type pg from "pg";
import { demoIdentityPlan, seedIdentity, type IdentityCounts, type SeededIdentity } from "../../db/seed/identity.js";
import { seedRetail, type RetailSeedCounts, type RetailSeedOptions } from "../../db/seed/retail.js";
import type { MasterKey } from "../auth/masterKey.js";
import { issueApiKey } from "../openapi/issue.js";
import { createWebhookEndpoint } from "../webhooks/endpoints.js";

type Queryable = Pick<pg.PoolClient, "query">;

export const DEMO_API_KEY_NAME = "Demo partner";
export const DEMO_API_KEY_SCOPES = ["org:read", "user:read"];
export const DEMO_WEBHOOK_NAME = "Demo Clerk";

export interface SeedDemoOptions {
  /** The tenant's slug (default `demo`). */
  tenant: string;
  /** The retail data: stores, and orders over them (default 4 stores, 200 orders). */
  retail?: RetailSeedOptions;
}

export const DEMO_RETAIL: RetailSeedOptions = { stores: 4, orders: 200 };

export interface DemoApiKey {
  id: string;
  keyId: string;
  scopes: string[];
  created: boolean;
  /** Only when this run issued the key. */
  secret: string | null;
}

export interface DemoWebhookEndpoint {
  id: string;
  path: string;
  issuer: string;
  created: boolean;
  /** Only when this run created the endpoint. */
  secret: string | null;
}

export interface DemoSeed {
  identity: SeededIdentity;
  apiKey: DemoApiKey;
  webhookEndpoint: DemoWebhookEndpoint;
  /** Retail rows this run added. */
  retail: RetailSeedCounts;
  /** Rows this run created (or, for admins, promoted), per table: all zero on a rerun. */
  changed: IdentityCounts & {
    api_keys: number;
    webhook_endpoints: number;
    stores: number;
    products: number;
    variants: number;
    customers: number;
    orders: number;
    order_lines: number;
  };
}

/** The demo key: the tenant's active key of that name, or a new one. */
async function ensureDemoApiKey(client: Queryable, masterKey: MasterKey, tenantId: string): Promise<DemoApiKey> {
  const { rows } = await client.query<{ id: string; key_id: string; scopes: string[] }>(
    `select id, key_id, scopes::text[] as scopes from authhub.api_keys
     where tenant_id = $1 and name = $2 and revoked_at is null and (expires_at is null or expires_at > now())
     order by created_at limit 1`,
    [tenantId, DEMO_API_KEY_NAME],
  );
  const found = rows[0];
  if (found) return { id: found.id, keyId: found.key_id, scopes: found.scopes, created: false, secret: null };
  const issued = await issueApiKey(client, masterKey, { name: DEMO_API_KEY_NAME, scopes: DEMO_API_KEY_SCOPES, tenantId });
  return { id: issued.id, keyId: issued.keyId, scopes: issued.scopes, created: true, secret: issued.secret };
}

/** The demo's Clerk endpoint: the tenant's endpoint of that name, or a new one (its issuer a placeholder to edit). */
async function ensureDemoWebhookEndpoint(client: Queryable, masterKey: MasterKey, tenantId: string, slug: string): Promise<DemoWebhookEndpoint> {
  const { rows } = await client.query<{ id: string; issuer: string }>(
    "select id, issuer from authhub.webhook_endpoints where tenant_id = $1 and name = $2 order by created_at limit 1",
    [tenantId, DEMO_WEBHOOK_NAME],
  );
  const found = rows[0];
  if (found) return { id: found.id, path: `/webhooks/clerk/${found.id}`, issuer: found.issuer, created: false, secret: null };
  const issuer = `https://clerk.${slug}.example`;
  const created = await createWebhookEndpoint(client, masterKey, { name: DEMO_WEBHOOK_NAME, issuer, tenantId });
  return { id: created.id, path: created.path, issuer, created: true, secret: created.secret };
}

/** Seeds the demo tenant on `client`, as the owner, in the caller's transaction. */
export async function seedDemo(client: Queryable, masterKey: MasterKey, options: SeedDemoOptions): Promise<DemoSeed> {
  const identity = await seedIdentity(client, demoIdentityPlan(options.tenant));
  const tenantId = identity.tenant.id;
  const retail = await seedRetail(client, tenantId, options.retail ?? DEMO_RETAIL);
  const apiKey = await ensureDemoApiKey(client, masterKey, tenantId);
  const webhookEndpoint = await ensureDemoWebhookEndpoint(client, masterKey, tenantId, options.tenant);
  return {
    identity,
    apiKey,
    webhookEndpoint,
    retail,
    changed: {
      ...identity.changed,
      organizations: identity.changed.organizations + retail.organizations,
      api_keys: apiKey.created ? 1 : 0,
      webhook_endpoints: webhookEndpoint.created ? 1 : 0,
      stores: retail.stores,
      products: retail.products,
      variants: retail.variants,
      customers: retail.customers,
      orders: retail.orders,
      order_lines: retail.lines,
    },
  };
}
