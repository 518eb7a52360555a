/**
 * Reconciliation with Clerk (issue 7): deliveries can be missed, so for every
 * enabled endpoint with a Clerk secret key this job reads Clerk's Backend API
 * (AUTHHUB_CLERK_API_URL: the operator's, never a tenant's) and queues what
 * changed as deliveries of its own (`reconcile:<run>:<n>`, refused from outside
 * by the receiver), applied by clerk_event__apply like webhooks.
 *
 * Safeguards: answers are size-capped and redirects refused; only changed or
 * unknown objects are queued, and only the fields the apply job reads are kept.
 * A deletion is inferred only when a listing was read whole (every page, its
 * ids matching Clerk's own count, which did not change while it was read), for
 * an entity applied before this run began, and only after Clerk confirms it
 * directly (404 for a user or organization; for a membership, the user's own
 * membership list without it, or the user gone). A run infers at most 10 % of
 * what the endpoint knows (and at least 10). Inferred deletions are deletions
 * like any other: users and organizations keep a tombstone.
 */
import type { JobHelpers, Task } from "graphile-worker";
import { entityOf } from "../../db/clerkEntity.js";
import { workerContext } from "../context.js";
import { inJobTransaction } from "../jobTransaction.js";

const PAGE = 100;
const MAX_PAGES = 200;
const MAX_ANSWER_BYTES = 5_000_000;
const MAX_OBJECTS = 100_000;

interface Target {
  tenant_id: string;
  endpoint_id: string;
  clerk_secret_key_encrypted: string;
}

type Obj = Record<string, unknown>;

class Clerk {
  objects = 0;
  constructor(
    private readonly base: string,
    private readonly key: string,
  ) {}

  /** One GET: the parsed answer, or null for 404. The answer is read up to a byte cap, never whole first. */
  async get(path: string): Promise<unknown> {
    const res = await fetch(`${this.base}${path}`, {
      headers: { Authorization: `Bearer ${this.key}`, Accept: "application/json" },
      redirect: "error",
      signal: AbortSignal.timeout(15_000),
    });
    const where = path.split("?")[0];
    if (res.status === 404) {
      await res.body?.cancel();
      return null;
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new Error(`Clerk answered ${res.status} for ${where}`);
    }
    if (Number(res.headers.get("content-length") ?? 0) > MAX_ANSWER_BYTES) {
      await res.body?.cancel();
      throw new Error(`Clerk's answer for ${where} is too large`);
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    const reader = res.body?.getReader();
    for (let next = await reader?.read(); reader && next && !next.done; next = await reader.read()) {
      size += next.value.byteLength;
      if (size > MAX_ANSWER_BYTES) {
        await reader.cancel();
        throw new Error(`Clerk's answer for ${where} is too large`);
      }
      chunks.push(next.value);
    }
    return JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown;
  }

  /**
   * Every page of a listing, and whether it was read whole: Clerk's count was the
   * same on every page (and, for users, before and after), and the distinct ids
   * read match it. Offset paging over a list that changed meanwhile fails this.
   */
  async list(path: string, countPath?: string): Promise<{ items: Obj[]; whole: boolean; found: boolean }> {
    const items: Obj[] = [];
    const counts = new Set<number>();
    const count = async () => counts.add(Number(((await this.get(countPath!)) as { total_count?: unknown } | null)?.total_count ?? NaN));
    if (countPath) await count();
    for (let page = 0; page < MAX_PAGES; page++) {
      const body = await this.get(`${path}?limit=${PAGE}&offset=${page * PAGE}`);
      if (body === null && page === 0) return { items: [], whole: false, found: false };
      // Users come as an array; organizations and memberships as { data, total_count }.
      const pageItems = Array.isArray(body) ? body : (body as { data?: unknown } | null)?.data;
      if (!Array.isArray(pageItems)) throw new Error(`Clerk's answer for ${path} is not a list`);
      if (!Array.isArray(body)) counts.add(Number((body as { total_count?: unknown }).total_count ?? NaN));
      items.push(...(pageItems as Obj[]));
      this.objects += pageItems.length;
      if (this.objects > MAX_OBJECTS) throw new Error("Clerk listed more objects than reconciliation reads");
      if (pageItems.length < PAGE) break;
    }
    if (countPath) await count();
    const ids = new Set(items.map((o) => (typeof o.id === "string" ? o.id : JSON.stringify([(o.organization as Obj)?.id, (o.public_user_data as Obj)?.user_id]))));
    const [total] = counts;
    return { items, whole: counts.size === 1 && ids.size === total && ids.size === items.length, found: true };
  }

  /** Whether Clerk says, directly, that the user is no longer a member of the organization (or is gone). */
  async membershipGone(orgId: string, userId: string): Promise<boolean> {
    const mine = await this.list(`/v1/users/${encodeURIComponent(userId)}/organization_memberships`);
    if (!mine.found) return true; // 404: the user is gone, and its memberships with it
    return mine.whole && !mine.items.some((m) => (m.organization as Obj | undefined)?.id === orgId);
  }
}

/** Only what clerk_apply reads, so nothing else Clerk (or a look-alike) answers is stored. */
function trim(type: string, o: Obj): Obj {
  if (type.startsWith("user.")) {
    const emails = Array.isArray(o.email_addresses) ? (o.email_addresses as Obj[]).map((e) => ({ id: e.id, email_address: e.email_address })) : [];
    return { id: o.id, primary_email_address_id: o.primary_email_address_id, email_addresses: emails, first_name: o.first_name, last_name: o.last_name, updated_at: o.updated_at };
  }
  if (type.startsWith("organizationMembership.")) {
    return {
      organization: { id: (o.organization as Obj | undefined)?.id },
      public_user_data: { user_id: (o.public_user_data as Obj | undefined)?.user_id },
      role: o.role,
      updated_at: o.updated_at,
    };
  }
  return { id: o.id, name: o.name, slug: o.slug, updated_at: o.updated_at };
}

async function reconcile(target: Target, helpers: JobHelpers) {
  const { masterKey, clerkApiUrl } = workerContext();
  const runStart = Date.now();
  const clerk = new Clerk(clerkApiUrl, masterKey.decrypt(target.clerk_secret_key_encrypted));
  const known = new Map(
    (
      await inJobTransaction(
        helpers,
        "clerk__reconcile",
        async (client) =>
          (await client.query<{ entity: string; version: string }>("select entity, version from authhub_private.clerk_known_entities($1)", [target.endpoint_id])).rows,
      )
    ).map((r) => [r.entity, Number(r.version)]),
  );

  const users = await clerk.list("/v1/users", "/v1/users/count");
  const orgs = await clerk.list("/v1/organizations");
  const memberships: Obj[] = [];
  let membershipsWhole = orgs.whole;
  for (const org of orgs.items) {
    const listed = await clerk.list(`/v1/organizations/${encodeURIComponent(String(org.id))}/memberships`);
    memberships.push(...listed.items);
    membershipsWhole &&= listed.whole;
  }

  const events: { type: string; data: Obj; at: number }[] = [];
  const listed = new Set<string>();
  for (const [type, items] of [
    ["user.updated", users.items],
    ["organization.updated", orgs.items],
    ["organizationMembership.updated", memberships],
  ] as const) {
    for (const item of items) {
      const data = trim(type, item);
      const { entity } = entityOf({ type, data });
      listed.add(entity);
      // Unchanged (the version applied is as new): nothing to queue.
      const version = Number(data.updated_at);
      const applied = known.get(entity);
      if (applied !== undefined && Number.isFinite(version) && version <= applied) continue;
      events.push({ type, data, at: runStart });
    }
  }

  // What the endpoint knows and Clerk did not list, from listings read whole, applied before this run.
  const whole = { user: users.whole, organization: orgs.whole, membership: membershipsWhole };
  const gone = [...known.entries()].filter(([entity, version]) => {
    const kind = entity.split(":")[0] as keyof typeof whole;
    return whole[kind] && !listed.has(entity) && version < runStart;
  });
  const cap = Math.max(10, Math.floor(known.size / 10));
  if (gone.length > cap) {
    helpers.logger.warn(`endpoint ${target.endpoint_id}: Clerk no longer lists ${gone.length} known entities (more than ${cap}); no deletions inferred this run`);
  } else {
    for (const [entity] of gone) {
      const [kind, a, b] = entity.split(":");
      if (kind === "user" && (await clerk.get(`/v1/users/${encodeURIComponent(a!)}`)) === null) {
        events.push({ type: "user.deleted", data: { id: a, deleted: true }, at: runStart });
      } else if (kind === "organization" && (await clerk.get(`/v1/organizations/${encodeURIComponent(a!)}`)) === null) {
        events.push({ type: "organization.deleted", data: { id: a, deleted: true }, at: runStart });
      } else if (kind === "membership" && (await clerk.membershipGone(a!, b!))) {
        events.push({ type: "organizationMembership.deleted", data: { organization: { id: a }, public_user_data: { user_id: b } }, at: runStart });
      }
    }
  }

  const run = `reconcile:${runStart.toString(36)}`;
  // One statement: a drain of this endpoint that finishes meanwhile waits for this transaction (its look), so it stays short.
  const bodies = events.map((e) => ({ type: e.type, object: "event", timestamp: e.at, data: e.data }));
  await inJobTransaction(helpers, "clerk__reconcile", async (client) => {
    await client.query(
      "select authhub_private.accept_reconciled_delivery($1, e.id, e.type, e.entity, e.body) from unnest($2::text[], $3::text[], $4::text[], $5::text[]) as e(id, type, entity, body)",
      [target.endpoint_id, bodies.map((_, i) => `${run}:${i}`), bodies.map((b) => b.type), bodies.map((b) => entityOf(b).entity), bodies.map((b) => JSON.stringify(b))],
    );
  });
  helpers.logger.info(`reconciled endpoint ${target.endpoint_id}: ${events.length} change(s) queued`);
}

export const clerk__reconcile: Task = async (_payload, helpers) => {
  const targets = await inJobTransaction(
    helpers,
    "clerk__reconcile",
    async (client) => (await client.query<Target>("select * from authhub_private.clerk_reconcile_targets()")).rows,
  );
  const failures: string[] = [];
  for (const target of targets) {
    try {
      await reconcile(target, helpers);
    } catch (err) {
      // One endpoint's trouble does not stop the others.
      failures.push(`${target.endpoint_id}: ${(err as Error).message}`);
    }
  }
  if (failures.length) throw new Error(`reconciliation failed for ${failures.join("; ")}`);
};
