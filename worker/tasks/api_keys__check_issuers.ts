/**
 * Flags the API keys whose issuer no longer holds the authority their scopes
 * need (a demotion, a removed role or membership), and clears the flag of keys
 * back within it: authhub_private.flag_keys_beyond_issuer_authority. The flag
 * is a change of the key, so the audit log records it as this job's. Revoking
 * such a key stays a tenant admin's explicit act.
 */
import type { Task } from "graphile-worker";
import { inJobTransaction } from "../jobTransaction.js";

export const api_keys__check_issuers: Task = async (_payload, helpers) => {
  const changed = await inJobTransaction(
    helpers,
    "api_keys__check_issuers",
    async (client) => (await client.query<{ n: number }>("select authhub_private.flag_keys_beyond_issuer_authority() as n")).rows[0]!.n,
  );
  if (changed > 0) helpers.logger.info(`flagged or cleared ${changed} API key(s) against their issuer's authority`);
};
