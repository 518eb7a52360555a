/**
 * The entity a Clerk event is about (`user:<id>`, `organization:<id>`,
 * `membership:<org>:<user>`), which the inbox orders deliveries by. The webhook
 * receiver and reconciliation both compute it; SQL derives it again from the
 * stored body and fails a delivery where they differ
 * (authhub_private.clerk_entity_of). Here, without express, so the worker need
 * not load the receiver's router to use it.
 */
export function entityOf(event: unknown): { type: string | null; entity: string } {
  if (typeof event !== "object" || event === null) return { type: null, entity: "malformed" };
  const { type, data } = event as { type?: unknown; data?: Record<string, unknown> };
  const t = typeof type === "string" ? type.slice(0, 100) : null;
  const id = (v: unknown) => (typeof v === "string" && /^[A-Za-z0-9_-]{1,100}$/.test(v) ? v : "?");
  if (!t || !data || typeof data !== "object") return { type: t, entity: "malformed" };
  if (t.startsWith("user.")) return { type: t, entity: `user:${id(data.id)}` };
  if (t.startsWith("organization.")) return { type: t, entity: `organization:${id(data.id)}` };
  if (t.startsWith("organizationMembership.")) {
    const org = (data.organization as { id?: unknown } | undefined)?.id;
    const user = (data.public_user_data as { user_id?: unknown } | undefined)?.user_id;
    return { type: t, entity: `membership:${id(org)}:${id(user)}` };
  }
  return { type: t, entity: "other" };
}
