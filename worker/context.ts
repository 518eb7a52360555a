/**
 * What tasks need from the process beyond their payload: the master key (to
 * open the Clerk secret keys reconciliation uses) and where Clerk's Backend
 * API is (AUTHHUB_CLERK_API_URL, the operator's setting). Set once by the
 * runner (worker/runner.ts) or a test.
 */
import type { MasterKey } from "../server/auth/masterKey.js";

interface WorkerContext {
  masterKey: MasterKey;
  clerkApiUrl: string;
  /** NODE_ENV=production: events go over https to public addresses only. */
  production?: boolean;
}

let context: WorkerContext | null = null;

export function configureWorker(options: WorkerContext): void {
  context = options;
}

export function workerContext(): WorkerContext & { production: boolean } {
  if (!context) throw new Error("The worker is not configured (configureWorker was not called)");
  return { ...context, production: context.production ?? false };
}
