/**
 * Applies the committed graphile-migrate migrations programmatically, with the
 * same settings the DBA's `.gmrc` describes, and tells whether a database is
 * current (for /readyz).
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Logger, migrate } from "graphile-migrate";
import { makeWorkerUtils } from "graphile-worker";

export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "migrations");

export type LogFn = (level: string, message: string) => void;

export async function runMigrations(ownerUrl: string, log: LogFn = () => undefined): Promise<void> {
  const logger = new Logger(() => (level, message) => log(level, `[migrate] ${message}`));
  // Several instances starting at once (a rolling deploy, a scaled service):
  // one migrates, holding graphile-migrate's lock; the others wait for it and
  // then find nothing left to do.
  for (let attempt = 1; ; attempt++) {
    try {
      await migrate({ connectionString: ownerUrl, migrationsFolder: MIGRATIONS_DIR, afterReset: ["!afterReset.sql"], logger });
      break;
    } catch (err) {
      if (!/Failed to get exclusive lock/.test((err as Error).message) || attempt >= 120) throw err;
      if (attempt === 1) log("info", "[migrate] another instance is migrating; waiting for it");
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  // graphile-worker's schema too: the webhook receiver queues jobs in the same
  // transaction as it stores a delivery, even when no worker has started yet.
  const workerUtils = await makeWorkerUtils({ connectionString: ownerUrl });
  try {
    await workerUtils.migrate();
  } finally {
    await workerUtils.release();
  }
  // graphile-migrate keeps its pool for a moment after returning; let it close
  // before anyone stops the cluster or clones the database.
  await new Promise((resolve) => setTimeout(resolve, 250));
}

/** The hash of the newest committed migration shipped with this code. */
export function latestCommittedHash(): string | null {
  const dir = path.join(MIGRATIONS_DIR, "committed");
  const files = readdirSync(dir)
    .filter((f) => /^\d+(-[-_a-zA-Z0-9]*)?\.sql$/.test(f))
    .sort();
  const last = files.at(-1);
  if (!last) return null;
  const match = /^--! Hash: (\S+)$/m.exec(readFileSync(path.join(dir, last), "utf8"));
  return match?.[1] ?? null;
}
