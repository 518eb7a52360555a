/**
 * Limits that hold in every mode: a maximum selection depth (a validation rule,
 * so a too-deep document is refused before any planning or SQL), and a cap and
 * default for `first`/`last` on every connection (so no request can ask for an
 * unbounded page). Aggregates are computed over the whole filtered set and are
 * bounded by RLS (one tenant), not by these.
 */
import "graphile-build-pg";
import { access, ConnectionStep, constant, lambda, SafeError, type FieldPlanResolver } from "postgraphile/grafast";
import { GraphQLError, Kind } from "postgraphile/graphql";
import type { FragmentDefinitionNode, SelectionSetNode, ValidationContext, ValidationRule } from "postgraphile/graphql";

export function depthLimitRule(maxDepth: number): ValidationRule {
  return (context: ValidationContext) => {
    const fragments = new Map<string, FragmentDefinitionNode>();
    for (const def of context.getDocument().definitions) {
      if (def.kind === Kind.FRAGMENT_DEFINITION) fragments.set(def.name.value, def);
    }
    const depthOf = (set: SelectionSetNode, visiting: Set<string>): number => {
      let deepest = 0;
      for (const sel of set.selections) {
        if (sel.kind === Kind.FIELD) {
          // Introspection (`__schema`, `__type`) reads the schema, never data: GraphiQL and codegen need it whole.
          if (sel.name.value.startsWith("__")) continue;
          deepest = Math.max(deepest, sel.selectionSet ? 1 + depthOf(sel.selectionSet, visiting) : 1);
        } else if (sel.kind === Kind.INLINE_FRAGMENT) {
          deepest = Math.max(deepest, depthOf(sel.selectionSet, visiting));
        } else {
          const fragment = fragments.get(sel.name.value);
          // Unknown or cyclic fragments are reported by graphql-js's own rules.
          if (!fragment || visiting.has(sel.name.value)) continue;
          visiting.add(sel.name.value);
          deepest = Math.max(deepest, depthOf(fragment.selectionSet, visiting));
          visiting.delete(sel.name.value);
        }
      }
      return deepest;
    };
    return {
      OperationDefinition(node) {
        const depth = depthOf(node.selectionSet, new Set());
        if (depth > maxDepth) {
          context.reportError(
            new GraphQLError(`The query is ${depth} levels deep; at most ${maxDepth} are allowed.`, {
              nodes: [node],
              extensions: { code: "query_too_deep" },
            }),
          );
        }
      },
    };
  };
}

export function DepthLimitPlugin(maxDepth: number): GraphileConfig.Plugin {
  return {
    name: "AuthHubDepthLimitPlugin",
    version: "1.0.0",
    grafserv: {
      middleware: {
        setPreset(next, event) {
          event.validationRules.push(depthLimitRule(maxDepth));
          return next();
        },
      },
    },
  };
}

export function PageSizePlugin(options: { max: number; default: number }): GraphileConfig.Plugin {
  const { max, default: fallback } = options;
  return {
    name: "AuthHubPageSizePlugin",
    version: "1.0.0",
    after: ["PgFirstLastBeforeAfterArgsPlugin"],
    schema: {
      hooks: {
        // `first`/`last` are applied below, together, once validated: drop their own appliers.
        GraphQLObjectType_fields_field_args(args, _build, context) {
          if (!context.scope.isPgFieldConnection) return args;
          const out = { ...args };
          for (const name of ["first", "last"] as const) {
            const arg = out[name];
            if (arg) {
              const { applyPlan: _replaced, ...rest } = arg;
              out[name] = {
                ...rest,
                description: `${rest.description ?? ""} At most ${max}; ${fallback} when neither \`first\` nor \`last\` is given.`.trim(),
              };
            }
          }
          return out;
        },
        GraphQLObjectType_fields_field(field, _build, context) {
          if (!context.scope.isPgFieldConnection || !field.plan) return field;
          const inner = field.plan as FieldPlanResolver;
          const plan: FieldPlanResolver = ($parent, fieldArgs, info) => {
            const $connection = inner($parent, fieldArgs, info);
            if (!($connection instanceof ConnectionStep)) return $connection;
            const has = (name: string) => info.field.args.some((a) => a.name === name);
            const $first = has("first") ? fieldArgs.getRaw("first") : constant(null);
            const $last = has("last") ? fieldArgs.getRaw("last") : constant(null);
            const $limits = lambda([$first, $last], ([first, last]: readonly [unknown, unknown]) => {
              for (const [name, value] of [
                ["first", first],
                ["last", last],
              ] as const) {
                if (value != null && (typeof value !== "number" || value < 0 || value > max)) {
                  throw new SafeError(`\`${name}\` must be between 0 and ${max}.`, {
                    code: "invalid_input",
                    details: [{ field: name, message: `must be between 0 and ${max}` }],
                  });
                }
              }
              return first == null && last == null ? { first: fallback, last: null } : { first: (first as number | null) ?? null, last: (last as number | null) ?? null };
            });
            $connection.setFirst(access($limits, "first"));
            $connection.setLast(access($limits, "last"));
            return $connection;
          };
          return { ...field, plan };
        },
      },
    },
  };
}
