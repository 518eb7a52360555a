/**
 * Every job touches AuthHub's tables the same way: one transaction, as the
 * worker role (never the owner the worker connects as), with the job named as
 * the actor the audit log records (`system:<task>`).
 */
import type { JobHelpers } from "graphile-worker";
import type { PoolClient } from "pg";

export async function inJobTransaction<T>(helpers: JobHelpers, task: string, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  return helpers.withPgClient(async (client) => {
    await client.query("begin");
    try {
      await client.query("select set_config('role', 'authhub_worker', true), set_config('authhub.actor', $1, true)", [`system:${task}`]);
      const result = await fn(client as unknown as PoolClient);
      await client.query("commit");
      return result;
    } catch (err) {
      await client.query("rollback").catch(() => undefined);
      throw err;
    }
  });
}
