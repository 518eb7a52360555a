/**
 * Every task the worker runs, one per file (`<noun>__<verb>.ts`), registered
 * here by identifier, and the schedule of the recurring ones.
 */
import type { TaskList } from "graphile-worker";
import { api_keys__check_issuers } from "./api_keys__check_issuers.js";
import { auth__cleanup } from "./auth__cleanup.js";
import { clerk__reconcile } from "./clerk__reconcile.js";
import { clerk_deliveries__sweep } from "./clerk_deliveries__sweep.js";
import { clerk_event__apply } from "./clerk_event__apply.js";
import { event_deliveries__purge } from "./event_deliveries__purge.js";
import { event_deliveries__send } from "./event_deliveries__send.js";
import { event_deliveries__sweep } from "./event_deliveries__sweep.js";
import { audit_events__purge } from "./audit_events__purge.js";
import { audit_events__seal } from "./audit_events__seal.js";
import { open_api__cleanup } from "./open_api__cleanup.js";
import { retail_rollups__fold } from "./retail_rollups__fold.js";
import { retail_rollups__sweep } from "./retail_rollups__sweep.js";
import { webhook_deliveries__purge } from "./webhook_deliveries__purge.js";

export const tasks: TaskList = {
  api_keys__check_issuers,
  audit_events__seal,
  audit_events__purge,
  auth__cleanup,
  open_api__cleanup,
  clerk_event__apply,
  clerk_deliveries__sweep,
  webhook_deliveries__purge,
  clerk__reconcile,
  retail_rollups__fold,
  retail_rollups__sweep,
  // Outbound events (issue 17).
  event_deliveries__send,
  event_deliveries__sweep,
  event_deliveries__purge,
};

/** graphile-worker crontab: sealing every five minutes, retention nightly, Auth API cleanup hourly, nonces every ten minutes, the webhook inbox nightly, overdue webhook deliveries every minute, Clerk reconciliation hourly, keys against their issuers' authority every five minutes. */
export const crontab = [
  "*/5 * * * * api_keys__check_issuers ?max=1",
  "*/5 * * * * audit_events__seal ?max=1",
  "17 3 * * * audit_events__purge ?max=1",
  "41 * * * * auth__cleanup ?max=1",
  "*/10 * * * * open_api__cleanup ?max=1",
  "37 4 * * * webhook_deliveries__purge ?max=1",
  "* * * * * clerk_deliveries__sweep ?max=1",
  // One queue: a slow run and the next hour's (or a retry) never overlap.
  "23 * * * * clerk__reconcile ?max=1&queue=clerk-reconcile",
  // Outbound events: overdue sends every minute, retention nightly.
  "* * * * * event_deliveries__sweep ?max=1",
  // Store-days a failed or superseded fold left dirty.
  "* * * * * retail_rollups__sweep ?max=1",
  "53 4 * * * event_deliveries__purge ?max=1",
].join("\n");
