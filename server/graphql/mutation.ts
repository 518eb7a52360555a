/**
 * The shape shared by the mutations that make secrets (createApiKey,
 * rotateApiKeySecret, createWebhookEndpoint): the shared server function runs
 * in the request's transaction, as the caller (so SQL decides who may), and
 * the payload echoes clientMutationId beside what it returned.
 */
import { sideEffectWithPgClientTransaction, type PgExecutor } from "postgraphile/@dataplan/pg";
import { get, type FieldArgs, type Step } from "postgraphile/grafast";
import type pg from "pg";
import { queryable } from "./queryable.js";

type Input = Record<string, unknown>;

export function inRequestTransaction(executor: PgExecutor, fieldArgs: FieldArgs, run: (client: Pick<pg.PoolClient, "query">, input: Input) => Promise<object>) {
  const $input = fieldArgs.getRaw("input") as Step<Input>;
  return sideEffectWithPgClientTransaction(executor, $input, async (client, input) => ({
    ...(await run(queryable(client), input)),
    clientMutationId: input.clientMutationId ?? null,
  }));
}

/** Payload fields read straight from the result, clientMutationId among them. */
export function resultFields(...names: string[]): Record<string, ($result: Step) => Step> {
  return Object.fromEntries(["clientMutationId", ...names].map((name) => [name, ($result: Step) => get($result, name)]));
}
