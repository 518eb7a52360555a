/**
 * The PostGraphile V5 preset: amber, simplified inflection and aggregates over
 * the `authhub` schema, with AuthHub's limits, error masking and per-request
 * Postgres settings. Authentication happened before this (server/auth); here
 * the request's identity only becomes `pgSettings`.
 */
import { PgAggregatesPreset } from "@graphile/pg-aggregates";
import { PgSimplifyInflectionPreset } from "@graphile/simplify-inflection";
import { randomUUID } from "node:crypto";
import type pg from "pg";
import { SafeError } from "postgraphile/grafast";
import { GraphQLError } from "postgraphile/graphql";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { pgSettingsForCaller } from "../../db/claims.js";
import { makeRequestPgService } from "./pgService.js";
import { transactionLimits, type Config } from "../config.js";
import { AppError, fromDatabaseError } from "../errors.js";
import type { Logger } from "../logger.js";
import { requestState } from "../requestState.js";
import type { MasterKey } from "../auth/masterKey.js";
import { makeApiKeysPlugin } from "./apiKeys.js";
import { makeWebhooksPlugin } from "./webhooks.js";
import { makeEventsPlugin } from "./events.js";
import { DepthLimitPlugin, PageSizePlugin } from "./limits.js";
import { OperationLimitsPlugin } from "./operations.js";

/**
 * PostGraphile's own refusals that are a caller's, not a bug: deleting a row
 * that is absent or that the caller cannot see (@dataplan/pg's pgDeleteSingle
 * finds nothing to delete). Same answer either way, so nothing tells the two apart.
 */
function fromPostGraphileError(err: Error): AppError | null {
  if (/^No values were deleted in collection '[^']*' because no values you can delete were found/.test(err.message)) {
    return new AppError("not_found", "No such record, or not one you may delete.", { cause: err });
  }
  return null;
}

export function makeMaskError(config: Config, logger: Logger) {
  const development = config.env === "development";
  return (error: GraphQLError): GraphQLError => {
    const original = error.originalError;
    // Parse/validation errors and errors already written for clients pass through.
    if (!original || original instanceof GraphQLError) return error;
    const known = original instanceof AppError ? original : (fromDatabaseError(original) ?? fromPostGraphileError(original));
    const rebuild = (message: string, extensions: Record<string, unknown>) =>
      new GraphQLError(message, { nodes: error.nodes, source: error.source, positions: error.positions, path: error.path, extensions });
    if (known) {
      return rebuild(known.message, { code: known.code, ...(known.details ? { details: known.details } : {}) });
    }
    if (original instanceof SafeError) {
      return rebuild(original.message, { code: "invalid_input", ...((original.extensions as Record<string, unknown> | undefined) ?? {}) });
    }
    const errorId = randomUUID();
    logger.error("graphql: unexpected error", { errorId, err: original, path: error.path });
    return rebuild("An internal error occurred.", development ? { code: "internal", errorId, debug: original.message } : { code: "internal", errorId });
  };
}

/**
 * One namespace of names: the `retail` schema's tables and functions are
 * `orders`, `createStore`, `dailyStoreTotals` (DESIGN §12), not `retailOrders`.
 * PostGraphile prefixes every schema but the first; the two schemas share no
 * name, so no prefix is needed (a clash would fail the schema build).
 */
const OneNamespacePlugin: GraphileConfig.Plugin = {
  name: "AuthHubOneNamespacePlugin",
  version: "1.0.0",
  inflection: {
    replace: {
      _schemaPrefix() {
        return "";
      },
    },
  },
};

export function makePreset(config: Config, pool: pg.Pool, logger: Logger, masterKey: MasterKey): GraphileConfig.Preset {
  const development = config.env === "development";
  return {
    extends: [PostGraphileAmberPreset, PgSimplifyInflectionPreset, PgAggregatesPreset],
    plugins: [
      OneNamespacePlugin,
      DepthLimitPlugin(config.graphql.maxDepth),
      OperationLimitsPlugin(config.graphql),
      PageSizePlugin({ max: config.graphql.maxPageSize, default: config.graphql.defaultPageSize }),
      makeApiKeysPlugin(masterKey),
      makeWebhooksPlugin(masterKey),
      makeEventsPlugin(masterKey, config.env === "production"),
    ],
    pgServices: [makeRequestPgService(pool, { preparedStatements: config.database.pooler !== "transaction" })],
    grafast: {
      explain: development,
      context(requestContext) {
        const req = requestContext.expressv4?.req ?? requestContext.node?.req;
        const state = req ? requestState(req) : null;
        // No state means the request skipped authentication: treat it as anonymous.
        return { pgSettings: pgSettingsForCaller(state ?? { identity: null }, state?.traceId, transactionLimits(config)) };
      },
    },
    grafserv: {
      graphqlPath: "/graphql",
      graphiql: development,
      graphiqlOnGraphQLGET: development,
      graphiqlPath: "/graphiql",
      graphqlOverGET: false,
      websockets: false,
      maxRequestLength: config.graphql.maxRequestBytes,
      maskError: makeMaskError(config, logger),
    },
    schema: {
      // Rows are found by `node(id:)` and by primary key; no table is ordered
      // or filtered by a column without an index (amber's default).
      pgForbidSetofFunctionsToReturnNull: true,
    },
  };
}
