/**
 * Runs one request's SQL the way PostGraphile does for /graphql: one
 * transaction on the authenticator's pool with the request's role, claims and
 * trace id set locally (db/claims.ts), committed on success, rolled back on error.
 */
import type pg from "pg";
import { pgSettingsFor } from "../db/claims.js";
import type { RequestState } from "./requestState.js";

export async function withRequestTransaction<T>(
  pool: pg.Pool,
  state: RequestState,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("begin");
    await client.query({
      name: "authhub_set_request_settings",
      text: "select set_config(key, value, true) from json_each_text($1::json)",
      values: [JSON.stringify(pgSettingsFor(state.identity, state.traceId))],
    });
    const result = await fn(client);
    await client.query("commit");
    return result;
  } catch (err) {
    await client.query("rollback").catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
