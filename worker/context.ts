/**
 * What tasks need from the process beyond their payload: the master key (to
 * open the Clerk secret keys reconciliation uses). Set once by the runner
 * (worker/runner.ts) or a test.
 */
import type { MasterKey } from "../server/auth/masterKey.js";

let masterKey: MasterKey | null = null;

export function configureWorker(options: { masterKey: MasterKey }): void {
  masterKey = options.masterKey;
}

export function workerMasterKey(): MasterKey {
  if (!masterKey) throw new Error("The worker has no master key (configureWorker was not called)");
  return masterKey;
}
