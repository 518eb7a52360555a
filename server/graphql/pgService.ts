/**
 * PostGraphile's connection to PostgreSQL: @dataplan/pg's `pg` adaptor, with
 * the start of each transaction made ours. @dataplan/pg would send `begin`, then
 * the settings as a second statement; here one round trip opens the transaction,
 * sets the claims and resolves the caller's authority and role
 * (db/claims.ts beginRequestStatement, authhub_private.begin_request), and
 * PostGraphile's own queries then run inside it (the adaptor's in-transaction
 * client: a mutation's nested transaction becomes a savepoint).
 *
 * Behind a transaction-mode pooler (AUTHHUB_DB_POOLER=transaction) the
 * adaptor's named prepared statements are turned off: a named statement lives on
 * one server connection, and the pooler hands the next transaction another.
 */
import type pg from "pg";
import type { WithPgClient } from "postgraphile/@dataplan/pg";
import { makePgService, makeWithPgClientViaPgClientAlreadyInTransaction, type NodePostgresPgClient } from "postgraphile/adaptors/pg";
import { beginRequestStatement } from "../../db/claims.js";
import { releaseClient, rollbackAndRelease } from "../../db/pools.js";

/**
 * The client PostGraphile's queries see. Without prepared statements it hides
 * the connection's statement cache, which is what the adaptor looks for before
 * naming a statement, so every statement goes unnamed.
 */
function queryClient(client: pg.PoolClient, preparedStatements: boolean): pg.PoolClient {
  if (preparedStatements) return client;
  return new Proxy(client, {
    get(target, property) {
      if (property === "connection") return undefined;
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

export function requestWithPgClient(pool: pg.Pool, options: { preparedStatements: boolean }): WithPgClient<NodePostgresPgClient> {
  const withPgClient = (async (pgSettings, callback) => {
    const settings: Record<string, string> = {};
    for (const [key, value] of Object.entries(pgSettings ?? {})) if (value != null) settings[key] = String(value);
    const client = await pool.connect();
    try {
      await client.query(beginRequestStatement(settings));
      const inTransaction = makeWithPgClientViaPgClientAlreadyInTransaction(queryClient(client, options.preparedStatements), true);
      const result = await inTransaction(null, callback);
      await client.query("commit");
      releaseClient(client);
      return result;
    } catch (err) {
      await rollbackAndRelease(client, err);
      throw err;
    }
  }) as WithPgClient<NodePostgresPgClient>;
  withPgClient.release = () => undefined;
  return withPgClient;
}

/** The `authhub` and `retail` schemas' service, its transactions begun by requestWithPgClient. */
export function makeRequestPgService(pool: pg.Pool, options: { preparedStatements: boolean }): GraphileConfig.PgServiceConfiguration {
  const service = makePgService({
    pool,
    schemas: ["authhub", "retail"],
    // The schema shows what the most powerful request role may do; each
    // request's own role (begin_request's) and RLS then decide what it gets.
    pgSettingsForIntrospection: { role: "authhub_super_admin" },
    pubsub: false,
  });
  const withPgClient = requestWithPgClient(pool, options);
  return { ...service, adaptor: { ...service.adaptor, createWithPgClient: () => withPgClient } };
}
