/**
 * What one GraphQL request may ask for, decided before any planning or SQL
 * (issue 12: 800 aliased aggregates in four requests slowed another tenant's
 * 9 ms query to 6 s; 1,200 aliased renames ran 19 s in one request):
 * - validation rules, the same for every caller (grafserv caches validation by
 *   query text): at most so many aliases, root fields and mutation fields; every
 *   validation error carries `extensions.code` (`invalid_query`, or its own);
 *   in production no "Did you mean …?" suggestions;
 * - per caller, in grafast's execute middleware: a cost estimate against the
 *   caller's ceiling, and introspection only for callers allowed it.
 * Per-caller rate limits are counted before the request reaches PostGraphile
 * (graphqlRateLimit, mounted in server/app.ts).
 */
import type { NextFunction, Request, Response } from "express";
import { GraphQLError, Kind, NoSchemaIntrospectionCustomRule, OperationTypeNode, validate } from "postgraphile/graphql";
import type {
  DocumentNode,
  FieldNode,
  FragmentDefinitionNode,
  OperationDefinitionNode,
  SelectionSetNode,
  ValidationContext,
  ValidationRule,
  ValueNode,
} from "postgraphile/graphql";
import { isAsyncIterable } from "postgraphile/grafast";
import { isConnectionError } from "../../db/pools.js";
import { clientAddress } from "../auth/authApi.js";
import type { Config } from "../config.js";
import { AppError } from "../errors.js";
import type { RateLimits } from "../rateLimit.js";
import { graphqlOperations } from "../metrics.js";
import { requestState, type RequestState } from "../requestState.js";

export type GraphQLLimits = Config["graphql"];

/** Every validation error gets a code: the first rule wraps the shared context's reporter. */
const codeValidationErrors: ValidationRule = (context: ValidationContext) => {
  const report = context.reportError.bind(context);
  context.reportError = (error: GraphQLError) =>
    report(
      error.extensions?.code
        ? error
        : new GraphQLError(error.message, {
            nodes: error.nodes,
            source: error.source,
            positions: error.positions,
            path: error.path,
            extensions: { ...error.extensions, code: "invalid_query" },
          }),
    );
  return {};
};

/** graphql-js's rules read `hideSuggestions` from their context (graphql 16.10+). */
const hideSuggestions: ValidationRule = (context: ValidationContext) => {
  Object.defineProperty(context, "hideSuggestions", { value: true });
  return {};
};

interface Counts {
  aliases: number;
  rootFields: number;
}

function fragmentsOf(document: DocumentNode): Map<string, FragmentDefinitionNode> {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const def of document.definitions) if (def.kind === Kind.FRAGMENT_DEFINITION) fragments.set(def.name.value, def);
  return fragments;
}

/** Every field selected under `set`, fragments expanded once each (cycles are graphql-js's to report). */
function* fieldsOf(set: SelectionSetNode, fragments: Map<string, FragmentDefinitionNode>, visiting = new Set<string>()): Generator<FieldNode> {
  for (const sel of set.selections) {
    if (sel.kind === Kind.FIELD) yield sel;
    else if (sel.kind === Kind.INLINE_FRAGMENT) yield* fieldsOf(sel.selectionSet, fragments, visiting);
    else {
      const fragment = fragments.get(sel.name.value);
      if (!fragment || visiting.has(sel.name.value)) continue;
      visiting.add(sel.name.value);
      yield* fieldsOf(fragment.selectionSet, fragments, visiting);
      visiting.delete(sel.name.value);
    }
  }
}

function countSelections(op: OperationDefinitionNode, fragments: Map<string, FragmentDefinitionNode>): Counts {
  let aliases = 0;
  const walk = (set: SelectionSetNode) => {
    for (const field of fieldsOf(set, fragments)) {
      if (field.alias) aliases++;
      if (field.selectionSet) walk(field.selectionSet);
    }
  };
  walk(op.selectionSet);
  const rootFields = [...fieldsOf(op.selectionSet, fragments)].filter((f) => !f.name.value.startsWith("__")).length;
  return { aliases, rootFields };
}

/** Aliases, root fields and (for mutations) mutation fields per operation. */
export function operationShapeRule(limits: GraphQLLimits): ValidationRule {
  return (context: ValidationContext) => ({
    OperationDefinition(node) {
      const { aliases, rootFields } = countSelections(node, fragmentsOf(context.getDocument()));
      const refuse = (message: string) => context.reportError(new GraphQLError(message, { nodes: [node], extensions: { code: "query_too_large" } }));
      if (aliases > limits.maxAliases) refuse(`The operation uses ${aliases} aliases; at most ${limits.maxAliases} are allowed.`);
      if (node.operation === OperationTypeNode.MUTATION && rootFields > limits.maxMutations) {
        refuse(`The operation runs ${rootFields} mutations; at most ${limits.maxMutations} are allowed per request.`);
      } else if (rootFields > limits.maxRootFields) {
        refuse(`The operation selects ${rootFields} root fields; at most ${limits.maxRootFields} are allowed.`);
      }
    },
  });
}

/** Fields that compute over a whole (RLS-filtered) set rather than a page. */
const SET_WIDE = new Set(["totalCount", "aggregates", "groupedAggregates"]);
const SET_WIDE_COST = 10;

function intArg(field: FieldNode, name: string, variables: Record<string, unknown>): number | null {
  const arg = field.arguments?.find((a) => a.name.value === name);
  if (!arg) return null;
  const value: ValueNode = arg.value;
  const raw = value.kind === Kind.VARIABLE ? variables[value.name.value] : value.kind === Kind.INT ? Number(value.value) : null;
  return typeof raw === "number" && Number.isFinite(raw) ? raw : null;
}

/**
 * An estimate of the rows and work an operation asks for: every field costs 1;
 * a field with a page (`first`/`last`, else the default page size when it
 * selects `nodes`/`edges`) multiplies what is under it by that size; set-wide
 * computations (totalCount, aggregates) cost 10.
 */
export function estimateCost(document: DocumentNode, operationName: string | null | undefined, variables: Record<string, unknown>, defaultPageSize: number): number {
  const fragments = fragmentsOf(document);
  const ops = document.definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
  const op = operationName ? ops.find((o) => o.name?.value === operationName) : ops[0];
  if (!op) return 0;
  const costOf = (set: SelectionSetNode): number => {
    let total = 0;
    for (const field of fieldsOf(set, fragments)) {
      const name = field.name.value;
      if (name.startsWith("__")) continue;
      if (SET_WIDE.has(name)) {
        total += SET_WIDE_COST + (field.selectionSet ? costOf(field.selectionSet) : 0);
        continue;
      }
      if (!field.selectionSet) {
        total += 1;
        continue;
      }
      const page = intArg(field, "first", variables) ?? intArg(field, "last", variables);
      const paged = page !== null || [...fieldsOf(field.selectionSet, fragments)].some((f) => f.name.value === "nodes" || f.name.value === "edges");
      total += 1 + (paged ? Math.max(1, page ?? defaultPageSize) : 1) * costOf(field.selectionSet);
    }
    return total;
  };
  return costOf(op.selectionSet);
}

/** The cost a caller may spend on one operation: admins the most, anonymous callers the least. */
export function costCeiling(state: Pick<RequestState, "identity" | "apiKey"> | null, maxCost: number): number {
  if (state?.identity) {
    return state.identity.level === "TENANT_ADMIN" || state.identity.level === "SUPER_ADMIN"
      ? maxCost
      : state.identity.level === "ORG_ADMIN"
        ? Math.ceil(maxCost / 2)
        : Math.ceil(maxCost / 5);
  }
  if (state?.apiKey) return Math.ceil(maxCost / 5);
  return Math.ceil(maxCost / 50);
}

function mayIntrospect(state: Pick<RequestState, "identity" | "apiKey"> | null, setting: GraphQLLimits["introspection"]): boolean {
  return setting === "on" || (setting === "authenticated" && Boolean(state?.identity || state?.apiKey));
}

/** The type of the operation a request runs (for metrics). */
function operationType(document: DocumentNode, operationName: string | null | undefined): string {
  const ops = document.definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
  return (operationName ? ops.find((o) => o.name?.value === operationName) : ops[0])?.operation ?? "unknown";
}

function refusal(message: string, code: string, extra: Record<string, unknown> = {}) {
  return { errors: [new GraphQLError(message, { extensions: { code, ...extra } })] };
}

export function OperationLimitsPlugin(limits: GraphQLLimits): GraphileConfig.Plugin {
  return {
    name: "AuthHubOperationLimitsPlugin",
    version: "1.0.0",
    grafserv: {
      middleware: {
        setPreset(next, event) {
          event.validationRules.unshift(codeValidationErrors);
          if (!limits.suggestions) event.validationRules.push(hideSuggestions);
          event.validationRules.push(operationShapeRule(limits));
          return next();
        },
      },
    },
    grafast: {
      middleware: {
        execute(next, event) {
          const { args } = event;
          if (!limits.suggestions) (args as { hideSuggestions?: boolean }).hideSuggestions = true;
          const ctx = args.requestContext as { expressv4?: { req: Request }; node?: { req: Request } } | undefined;
          const req = ctx?.expressv4?.req ?? ctx?.node?.req;
          const state = req ? requestState(req) : null;
          const type = operationType(args.document, args.operationName);
          if (!mayIntrospect(state, limits.introspection) && validate(args.schema, args.document, [NoSchemaIntrospectionCustomRule]).length > 0) {
            graphqlOperations.inc({ type, outcome: "refused" });
            return refusal("Introspection is not allowed for this caller.", "introspection_disabled");
          }
          const cost = estimateCost(args.document, args.operationName, args.variableValues ?? {}, limits.defaultPageSize);
          const ceiling = costCeiling(state, limits.maxCost);
          if (cost > ceiling) {
            graphqlOperations.inc({ type, outcome: "refused" });
            return refusal(`The operation would cost about ${cost}; at most ${ceiling} is allowed for this caller. Ask for smaller pages or fewer fields.`, "query_too_costly", {
              cost,
              ceiling,
            });
          }
          // A request whose statements failed because the database could not be reached is
          // answered 503 with Retry-After (server/app.ts), not 200 with errors alone.
          return Promise.resolve(next()).then((result) => {
            const errors = isAsyncIterable(result) ? undefined : result.errors;
            if (state && errors?.some((e) => isConnectionError(e.originalError))) state.unavailable = true;
            graphqlOperations.inc({ type, outcome: errors?.length ? "errors" : "ok" });
            return result;
          });
        },
      },
    },
  };
}

/**
 * Requests per minute per caller: per user (or API key) and per tenant, and
 * per client address for anonymous callers, counted across servers
 * (server/rateLimit.ts). Mounted after authentication, before PostGraphile.
 */
export function graphqlRateLimit(rateLimits: RateLimits, limits: Pick<GraphQLLimits, "rateLimitPerUser" | "rateLimitPerTenant" | "rateLimitAnonymous">) {
  return async (req: Request, res: Response, next: NextFunction) => {
    try {
      const state = requestState(req);
      const caller = state.identity?.userId ?? state.apiKey?.apiKeyId ?? null;
      const tenant = state.identity?.tenantId ?? state.apiKey?.tenantId ?? null;
      // The tenant's ceiling is counted only for requests the caller's own limit lets through.
      let refused = caller
        ? await rateLimits.hitBatched("graphql-caller", caller, limits.rateLimitPerUser)
        : await rateLimits.hitBatched("graphql-anonymous", clientAddress(req), limits.rateLimitAnonymous);
      if (refused.allowed && tenant) refused = await rateLimits.hitBatched("graphql-tenant", tenant, limits.rateLimitPerTenant);
      if (!refused.allowed) {
        res.setHeader("Retry-After", String(refused.resetSeconds));
        throw new AppError("rate_limited", "Too many GraphQL requests; try again later.");
      }
      next();
    } catch (err) {
      next(err);
    }
  };
}
