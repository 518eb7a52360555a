/**
 * A mutation's PostGraphile client (the request's transaction, with its role
 * and claims) in the node-postgres shape the shared server code takes, so a
 * GraphQL mutation and the CLI call the same functions.
 */
import type pg from "pg";
import type { PgClient } from "postgraphile/@dataplan/pg";

export const queryable = (client: PgClient): Pick<pg.PoolClient, "query"> =>
  ({ query: (text: string, values: unknown[]) => client.query({ text, values }) }) as unknown as Pick<pg.PoolClient, "query">;
