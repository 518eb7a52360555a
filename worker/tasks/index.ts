/**
 * Every task the worker runs, one per file (`<noun>__<verb>.ts`), registered
 * here by identifier. Identity sync, audit sealing and retention add theirs in
 * their own issues; the foundation ships the runner with none.
 */
import type { TaskList } from "graphile-worker";

export const tasks: TaskList = {};
