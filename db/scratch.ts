/**
 * A throwaway PostgreSQL for the test suite and the benchmarks: the server a
 * superuser URL names (TEST_DATABASE_URL, BENCH_DATABASE_URL), or a fresh
 * embedded cluster in a temporary directory, with generated passwords for the
 * login roles (the embedded cluster uses scram authentication).
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { startEmbeddedPostgres } from "./embedded.js";

export interface ScratchCluster {
  rootUrl: string;
  /** Null: leave the roles' passwords as they are (an external server that trusts local roles). */
  ownerPassword: string | null;
  authenticatorPassword: string | null;
  stop(): Promise<void>;
}

export async function startScratchCluster(rootUrl: string | null, prefix: string): Promise<ScratchCluster> {
  if (rootUrl) return { rootUrl, ownerPassword: null, authenticatorPassword: null, stop: async () => undefined };
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  const cluster = await startEmbeddedPostgres({ dir, durable: false, whenRunning: "own" });
  return {
    rootUrl: cluster.rootUrl,
    ownerPassword: randomBytes(18).toString("base64url"),
    authenticatorPassword: randomBytes(18).toString("base64url"),
    async stop() {
      await cluster.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
