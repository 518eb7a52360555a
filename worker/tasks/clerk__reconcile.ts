/**
 * Reconciliation with Clerk (issue 7): for every enabled endpoint with a Clerk
 * secret key, page through Clerk's Backend API (users, organizations, each
 * organization's memberships) and turn every object into a delivery of its
 * own (`reconcile:<run>:<n>`), applied by clerk_event__apply like a webhook:
 * what is unchanged is skipped by its version, what was missed is applied.
 * Entities the endpoint has applied that Clerk no longer lists become
 * deletions, but only when every page of that listing was read.
 */
import type { JobHelpers, Task } from "graphile-worker";
import { inJobTransaction } from "../jobTransaction.js";
import { workerMasterKey } from "../context.js";
import { entityOf } from "../../server/webhooks/clerk.js";

const PAGE = 100;
const MAX_PAGES = 1000;

interface Target {
  tenant_id: string;
  endpoint_id: string;
  clerk_api_url: string;
  clerk_secret_key_encrypted: string;
}

type ClerkObject = Record<string, unknown> & { id?: string };

async function list(url: string, key: string, path: string): Promise<ClerkObject[]> {
  const all: ClerkObject[] = [];
  for (let page = 0; page < MAX_PAGES; page++) {
    const res = await fetch(`${url.replace(/\/+$/, "")}${path}${path.includes("?") ? "&" : "?"}limit=${PAGE}&offset=${page * PAGE}`, {
      headers: { Authorization: `Bearer ${key}`, Accept: "application/json" },
      signal: AbortSignal.timeout(15_000),
    });
    if (!res.ok) throw new Error(`Clerk answered ${res.status} for ${path}`);
    const body = (await res.json()) as unknown;
    // Users come as an array; organizations and memberships as { data, total_count }.
    const items = Array.isArray(body) ? body : ((body as { data?: unknown }).data as unknown[] | undefined);
    if (!Array.isArray(items)) throw new Error(`Clerk's answer for ${path} is not a list`);
    all.push(...(items as ClerkObject[]));
    if (items.length < PAGE) return all;
  }
  throw new Error(`More than ${MAX_PAGES} pages of ${path}`);
}

async function reconcile(target: Target, helpers: JobHelpers) {
  const key = workerMasterKey().decrypt(target.clerk_secret_key_encrypted);
  const users = await list(target.clerk_api_url, key, "/v1/users");
  const orgs = await list(target.clerk_api_url, key, "/v1/organizations");
  const memberships: ClerkObject[] = [];
  for (const org of orgs) memberships.push(...(await list(target.clerk_api_url, key, `/v1/organizations/${encodeURIComponent(String(org.id))}/memberships`)));

  const now = Date.now();
  const events: { type: string; data: Record<string, unknown> }[] = [
    ...users.map((data) => ({ type: "user.updated", data })),
    ...orgs.map((data) => ({ type: "organization.updated", data })),
    ...memberships.map((data) => ({ type: "organizationMembership.updated", data })),
  ];
  const seen = new Set(events.map((e) => entityOf(e).entity));
  const live = await inJobTransaction(helpers, "clerk__reconcile", async (client) =>
    (await client.query<{ e: string }>("select authhub_private.clerk_live_entities($1) as e", [target.endpoint_id])).rows.map((r) => r.e),
  );
  // Every listing was read whole (list() throws otherwise): what Clerk no longer has was deleted there.
  for (const entity of live.filter((e) => !seen.has(e))) {
    const [kind, a, b] = entity.split(":");
    if (kind === "user") events.push({ type: "user.deleted", data: { id: a, deleted: true } });
    else if (kind === "organization") events.push({ type: "organization.deleted", data: { id: a, deleted: true } });
    else if (kind === "membership") events.push({ type: "organizationMembership.deleted", data: { organization: { id: a }, public_user_data: { user_id: b } } });
  }
  const run = `reconcile:${now.toString(36)}`;
  let queued = 0;
  await inJobTransaction(helpers, "clerk__reconcile", async (client) => {
    for (const [i, e] of events.entries()) {
      const body = { type: e.type, object: "event", timestamp: now, data: e.data };
      const { entity } = entityOf(body);
      const { rows } = await client.query<{ stored: boolean }>("select authhub_private.accept_webhook($1, $2, $3, $4, $5) as stored", [
        target.endpoint_id,
        `${run}:${i}`,
        e.type,
        entity,
        JSON.stringify(body),
      ]);
      if (rows[0]?.stored) queued++;
    }
  });
  helpers.logger.info(`reconciled endpoint ${target.endpoint_id}: ${users.length} users, ${orgs.length} organizations, ${memberships.length} memberships; ${queued} deliveries queued`);
}

export const clerk__reconcile: Task = async (_payload, helpers) => {
  const targets = await inJobTransaction(helpers, "clerk__reconcile", async (client) => (await client.query<Target>("select * from authhub_private.clerk_reconcile_targets()")).rows);
  const failures: string[] = [];
  for (const target of targets) {
    try {
      await reconcile(target, helpers);
    } catch (err) {
      // One endpoint's Clerk being down does not stop the others.
      failures.push(`${target.endpoint_id}: ${(err as Error).message}`);
    }
  }
  if (failures.length) throw new Error(`reconciliation failed for ${failures.join("; ")}`);
};
