/**
 * Where each of AuthHub's tables would live on a Citus cluster, and whether its
 * keys let it: the plan behind docs/scale-out.md (db/scaleOut.ts) and
 * test/db/distribution.test.ts. Citus is not packaged for our machines, so the
 * rules Citus enforces when a table is distributed are checked here against the
 * catalog instead (each rule cites the Citus source or docs it comes from in
 * db/scaleOut.limits.md).
 *
 * A table with a tenant_id column is distributed by it, colocated with
 * authhub.tenants; every other table is listed in PLACEMENTS with its reason.
 * What breaks a rule today is listed by name: the two global lookups the design
 * accepts (GLOBAL_LOOKUPS) and what a migration still has to fix (PENDING_FIXES).
 */
import type pg from "pg";
import { DUMPED_SCHEMAS } from "./schemaDump.js";

/** The schemas AuthHub owns: a schema added to the dump is covered here too. */
export const DISTRIBUTION_SCHEMAS: readonly string[] = DUMPED_SCHEMAS;

/** The distribution column of every tenant table. */
export const TENANT_COLUMN = "tenant_id";

/** The colocation group's first table: every distributed table is colocated with it. */
export const COLOCATION_ANCHOR = "authhub.tenants";

export type Placement =
  /** Hash-distributed by `column`, colocated with COLOCATION_ANCHOR. */
  | { kind: "distributed"; column: string; why: string }
  /** One shard, copied to every node. */
  | { kind: "reference"; why: string }
  /** A plain PostgreSQL table on the coordinator, unknown to Citus. */
  | { kind: "coordinator"; why: string };

/**
 * Every table that is not "has tenant_id, so distributed by it". A new table
 * without tenant_id fails test/db/distribution.test.ts until it is listed here.
 */
export const PLACEMENTS: Readonly<Record<string, Placement>> = {
  "authhub.tenants": {
    kind: "distributed",
    column: "id",
    why: "The tenant itself: its id is every other table's tenant_id, so its row lives on the shard with its tenant's data and anchors the colocation group.",
  },
  "authhub.permissions": {
    kind: "reference",
    why: "The permission catalogue: global, a few dozen rows, changed only by migrations, referenced by role_permissions and read by permission checks on every node.",
  },
  "authhub.level_permissions": {
    kind: "reference",
    why: "Each built-in level's fixed permissions: global, small, changed only by migrations, read when a request's authority is resolved.",
  },
  "authhub_private.audit_exemptions": {
    kind: "coordinator",
    why: "Read only when tables are enrolled in the audit log and by the catalog test (DDL, on the coordinator). Its regclass column holds OIDs, which differ on every node, so it must not be copied to the workers.",
  },
  "authhub_private.audit_secret_columns": {
    kind: "coordinator",
    why: "Read only by audit_table() when a table is enrolled (DDL, on the coordinator); the columns are then fixed in the audit trigger's arguments, which travel with the trigger to the shards.",
  },
  "authhub_private.api_nonces": {
    kind: "coordinator",
    why: "The Open API's replay cache, keyed by API key without tenant_id: written by begin_api_request in a commit of its own before each signed request, on the coordinator every server connects to; short-lived and unlogged. Distribute it (with tenant_id added) only if that write becomes the coordinator's limit.",
  },
  "authhub_private.api_nonce_epoch": {
    kind: "coordinator",
    why: "One row: when the coordinator's unlogged nonce store last started empty. It must live where api_nonces lives.",
  },
  "authhub_private.rate_limits": {
    kind: "coordinator",
    why: "rate-limiter-flexible's counters, written by the login role outside any request's transaction; keyed by hashed subjects and client addresses, not tenants; unlogged scratch state of the servers.",
  },
  "authhub_private.audit_personal_columns": {
    kind: "reference",
    why: "Which columns hold personal data: global, a few rows, changed only by migrations, read by the audit read policy (personal_audit_tables) on every node.",
  },
  "retail.currencies": {
    kind: "reference",
    why: "ISO 4217 currencies: global, ~160 rows, changed only by migrations, referenced by stores, variants and orders on every node.",
  },
  "retail.field_ownership": {
    kind: "reference",
    why: "Which fields a store's system owns: global, a few dozen rows, changed only by migrations, read by the trigger that records hub edits of store-owned fields.",
  },
  "authhub_private.signing_keys": {
    kind: "coordinator",
    why: "AuthHub's own token signing keys: a handful of global rows, read and rotated only through definer functions called by the server's login role and the CLI. Kept on the coordinator, the encrypted private keys stay on one node; a rotation is still audited (its trigger runs on the coordinator and writes audit_events under the all-zero tenant).",
  },
};

/**
 * Unique keys without tenant_id that the design accepts (DESIGN.md, "Departures
 * accepted"): a request names these before any tenant is known. Citus cannot
 * keep them as they are; `citus` says what replaces them before distributing.
 */
export const GLOBAL_LOOKUPS: Readonly<Record<string, { why: string; citus: string }>> = {
  "authhub.api_keys api_keys_key_id_key": {
    why: "An Open API request names its key by key_id before any tenant is known (api_key_for_request(key_id)); key ids are random, so unique across tenants anyway.",
    citus:
      "A distributed table cannot keep this constraint. Before distributing, move the global lookup to a table of its own distributed by key_id, authhub_private.api_key_ids (key_id primary key, tenant_id, api_key_id), colocate_with => 'none', written by issue_api_key in the key's transaction; api_keys keeps unique (tenant_id, key_id). The lookup is then one single-shard read, and the rest of the request routes by tenant_id. (Key ids that carry their tenant would avoid the table, but partners hold today's ids.)",
  },
  "authhub_private.refresh_tokens refresh_tokens_by_hash": {
    why: "A refresh presents only the token (refresh_token_family(hash), rotate_refresh_token(hash, …)); hashes are SHA-256 of random tokens, so unique across tenants anyway.",
    citus:
      "A distributed table cannot keep this index. Refresh tokens are opaque to clients, so new ones can carry their tenant id: the server passes tenant_id and the primary key (tenant_id, token_hash) serves the lookup; drop the index once the tokens issued before have expired. (A lookup table distributed by token_hash would add a second cross-node write to every refresh.)",
  },
};

/**
 * What breaks a Citus rule today and needs a migration (described precisely in
 * docs/scale-out.md, from here). The test fails when one is fixed and still
 * listed, so the list and the schema move together.
 */
export const PENDING_FIXES: Readonly<Record<string, { problem: string; migration: string }>> = {
  "authhub.tenants tenants_slug_key unique-key": {
    problem: "Slugs are unique across tenants, but tenants is distributed by id: Citus refuses a unique key without the distribution column.",
    migration:
      "Create the reference table authhub.tenant_slugs (slug authhub.slug primary key, tenant_id uuid not null unique), filled from tenants; add to tenants the foreign key (slug) references authhub.tenant_slugs (slug) on update cascade (allowed: it does not include the distribution column); drop tenants_slug_key. tenant_branding(slug) and start_session(tenant, …) resolve the slug there (a local read on every node) and route by tenant_id. Creating a tenant inserts its slug first and renaming one updates tenant_slugs (cascading into tenants), through definer functions (create_tenant, rename_tenant) that replace the super admin's INSERT and UPDATE (slug) grants on tenants: a GraphQL change. RLS, policies, grants and audit enrolment of tenant_slugs as for tenants.",
  },
  "authhub.api_keys api_keys_created_by_fkey fk-action": {
    problem:
      "ON DELETE SET NULL (created_by): Citus refuses SET NULL and SET DEFAULT on delete for any foreign key that includes the distribution column, even when the column list nulls only created_by (it checks the action, not the list).",
    migration:
      "Recreate api_keys_created_by_fkey as foreign key (tenant_id, created_by) references authhub.users (tenant_id, id) with no action, and clear created_by where a user is deleted: authhub_private.tg_users__revoke_issued_keys(), already fired by the BEFORE DELETE trigger _400_revoke_issued_keys_on_delete, also runs update authhub.api_keys set created_by = null where tenant_id = old.tenant_id and created_by = old.id. NO ACTION is checked at the end of the statement, after the trigger; the audit log then shows that update.",
  },
};

// ---------------------------------------------------------------- catalog facts

export interface ColumnFacts {
  name: string;
  type: string;
  notNull: boolean;
  identity: boolean;
}

export interface UniqueKeyFacts {
  name: string;
  kind: "primary key" | "unique constraint" | "exclusion constraint" | "unique index";
  /** Key columns in order; null for an expression. */
  columns: (string | null)[];
  partial: boolean;
}

export interface ForeignKeyFacts {
  name: string;
  columns: string[];
  references: string;
  referencedColumns: string[];
  /** pg_constraint.confdeltype / confupdtype: a no action, r restrict, c cascade, n set null, d set default. */
  onDelete: string;
  onUpdate: string;
}

export interface TriggerFacts {
  name: string;
  function: string;
  rowLevel: boolean;
  transitionTables: boolean;
}

export interface TableFacts {
  /** schema.table, quoted where SQL needs it. */
  name: string;
  unlogged: boolean;
  columns: ColumnFacts[];
  keys: UniqueKeyFacts[];
  foreignKeys: ForeignKeyFacts[];
  triggers: TriggerFacts[];
}

export interface FunctionFacts {
  /** schema.name(identity arguments). */
  signature: string;
  securityDefiner: boolean;
  /** Input argument names, "" where unnamed. */
  argumentNames: string[];
  source: string;
}

export interface DistributionFacts {
  tables: TableFacts[];
  functions: FunctionFacts[];
  /** Every policy's USING and WITH CHECK expression, to tell which functions policies call. */
  policyExpressions: string[];
}

/** The tables and functions of `schemas` as the distribution rules need them. */
export async function readDistributionFacts(client: pg.ClientBase, schemas: readonly string[] = DISTRIBUTION_SCHEMAS): Promise<DistributionFacts> {
  const attname = (rel: string, num: string) => `(select a.attname::text from pg_attribute a where a.attrelid = ${rel} and a.attnum = ${num})`;
  const tables = await client.query<TableFacts>(
    `select format('%I.%I', n.nspname, c.relname) as name, c.relpersistence = 'u' as unlogged,
            (select coalesce(json_agg(json_build_object(
                'name', a.attname, 'type', format_type(a.atttypid, a.atttypmod), 'notNull', a.attnotnull, 'identity', a.attidentity <> '')
              order by a.attnum), '[]')
             from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as columns,
            (select coalesce(json_agg(json_build_object(
                'name', ic.relname,
                'kind', case k.contype when 'p' then 'primary key' when 'u' then 'unique constraint' when 'x' then 'exclusion constraint' else 'unique index' end,
                'columns', array(select case when x.n = 0 then null else ${attname("i.indrelid", "x.n")} end
                                 from unnest(i.indkey::int2[]) with ordinality x(n, o) where x.o <= i.indnkeyatts order by x.o),
                'partial', i.indpred is not null)
              order by ic.relname), '[]')
             from pg_index i join pg_class ic on ic.oid = i.indexrelid
             left join pg_constraint k on k.conindid = i.indexrelid and k.conrelid = i.indrelid and k.contype in ('p', 'u', 'x')
             where i.indrelid = c.oid and (i.indisunique or i.indisexclusion)) as keys,
            (select coalesce(json_agg(json_build_object(
                'name', k.conname,
                'columns', array(select ${attname("k.conrelid", "x.n")} from unnest(k.conkey) with ordinality x(n, o) order by x.o),
                'references', format('%I.%I', rn.nspname, rc.relname),
                'referencedColumns', array(select ${attname("k.confrelid", "x.n")} from unnest(k.confkey) with ordinality x(n, o) order by x.o),
                'onDelete', k.confdeltype, 'onUpdate', k.confupdtype)
              order by k.conname), '[]')
             from pg_constraint k join pg_class rc on rc.oid = k.confrelid join pg_namespace rn on rn.oid = rc.relnamespace
             where k.conrelid = c.oid and k.contype = 'f') as "foreignKeys",
            (select coalesce(json_agg(json_build_object(
                'name', t.tgname, 'function', format('%I.%I', pn.nspname, p.proname),
                'rowLevel', (t.tgtype & 1) = 1, 'transitionTables', t.tgoldtable is not null or t.tgnewtable is not null)
              order by t.tgname), '[]')
             from pg_trigger t join pg_proc p on p.oid = t.tgfoid join pg_namespace pn on pn.oid = p.pronamespace
             where t.tgrelid = c.oid and not t.tgisinternal) as triggers
     from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = any($1) and c.relkind in ('r', 'p') and not c.relispartition
     order by 1`,
    [schemas],
  );
  const functions = await client.query<FunctionFacts>(
    `select format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) as signature,
            p.prosecdef as "securityDefiner",
            array(select coalesce(p.proargnames[x.o], '') from unnest(coalesce(p.proargmodes, array_fill('i'::"char", array[p.pronargs]))) with ordinality x(m, o)
                  where x.m in ('i', 'b', 'v') order by x.o) as "argumentNames",
            p.prosrc as source
     from pg_proc p join pg_namespace n on n.oid = p.pronamespace
     where n.nspname = any($1) and p.prokind = 'f'
     order by 1`,
    [schemas],
  );
  const policies = await client.query<{ expression: string }>(
    `select e.expression
     from pg_policy p join pg_class c on c.oid = p.polrelid join pg_namespace n on n.oid = c.relnamespace,
          lateral (values (pg_get_expr(p.polqual, p.polrelid)), (pg_get_expr(p.polwithcheck, p.polrelid))) e(expression)
     where n.nspname = any($1) and e.expression is not null
     order by 1`,
    [schemas],
  );
  return { tables: tables.rows, functions: functions.rows, policyExpressions: policies.rows.map((r) => r.expression) };
}

// ---------------------------------------------------------------- classification and rules

/** A table's placement: listed in PLACEMENTS, or distributed by tenant_id when it has one, or null (unclassified). */
export function placementOf(table: TableFacts): Placement | null {
  const listed = PLACEMENTS[table.name];
  if (listed) return listed;
  if (table.columns.some((c) => c.name === TENANT_COLUMN)) {
    return { kind: "distributed", column: TENANT_COLUMN, why: "Tenant data: distributed by tenant_id." };
  }
  return null;
}

export type Rule =
  /** The distribution column is missing. */
  | "no-column"
  /** The distribution column allows NULL. */
  | "nullable"
  /** The distribution column's type differs from the anchor's, so the tables cannot be colocated. */
  | "column-type"
  /** No primary key: the rebalancer moves shards by logical replication, which needs one. */
  | "no-primary-key"
  /** A unique key (or exclusion constraint) without the distribution column. */
  | "unique-key"
  /** A foreign key between distributed tables not on the distribution columns at the same position. */
  | "fk-columns"
  /** An ON DELETE SET NULL/SET DEFAULT or ON UPDATE action on a foreign key that includes the distribution column. */
  | "fk-action"
  /** A foreign key from a reference or coordinator table into a distributed one. */
  | "fk-into-distributed"
  /** A foreign key between a Citus table and a coordinator table (either way). */
  | "fk-coordinator";

export interface Finding {
  table: string;
  /** The constraint, index or column concerned. */
  object: string;
  rule: Rule;
  detail: string;
}

/** How PENDING_FIXES names a finding; GLOBAL_LOOKUPS names its unique keys as "schema.table key". */
export const findingKey = (f: Pick<Finding, "table" | "object" | "rule">): string => `${f.table} ${f.object} ${f.rule}`;

export interface FindingsByStatus {
  /** The global lookups the design accepts. */
  accepted: Finding[];
  /** Listed in PENDING_FIXES: a migration is described. */
  pending: Finding[];
  /** Neither: a new break of the rules. */
  unexpected: Finding[];
  /** GLOBAL_LOOKUPS and PENDING_FIXES entries no finding matches any more. */
  stale: string[];
}

/** Sorts findings into accepted, pending and unexpected, and names the list entries that match none. */
export function sortFindings(findings: Finding[]): FindingsByStatus {
  const result: FindingsByStatus = { accepted: [], pending: [], unexpected: [], stale: [] };
  const seen = new Set<string>();
  for (const f of findings) {
    const lookup = `${f.table} ${f.object}`;
    if (f.rule === "unique-key" && lookup in GLOBAL_LOOKUPS) {
      result.accepted.push(f);
      seen.add(lookup);
    } else if (findingKey(f) in PENDING_FIXES) {
      result.pending.push(f);
      seen.add(findingKey(f));
    } else {
      result.unexpected.push(f);
    }
  }
  result.stale = [...Object.keys(GLOBAL_LOOKUPS), ...Object.keys(PENDING_FIXES)].filter((k) => !seen.has(k)).sort();
  return result;
}

const ACTION = { a: "NO ACTION", r: "RESTRICT", c: "CASCADE", n: "SET NULL", d: "SET DEFAULT" } as Record<string, string>;

export interface Classified {
  table: TableFacts;
  placement: Placement;
}

export interface DistributionReport {
  classified: Classified[];
  /** Tables no placement covers: the message says how to classify each. */
  unclassified: string[];
  /** PLACEMENTS entries naming no table. */
  staleEntries: string[];
  findings: Finding[];
}

/** Applies the rules Citus enforces when tables are distributed. Pure: the same facts give the same report. */
export function checkDistribution(facts: DistributionFacts): DistributionReport {
  const byName = new Map(facts.tables.map((t) => [t.name, t]));
  const classified: Classified[] = [];
  const unclassified: string[] = [];
  for (const table of facts.tables) {
    const placement = placementOf(table);
    if (placement) classified.push({ table, placement });
    else unclassified.push(table.name);
  }
  const placements = new Map(classified.map((c) => [c.table.name, c.placement]));
  // A table outside AuthHub's schemas (graphile_worker's) is a plain coordinator table.
  const placementByName = (name: string): Placement => placements.get(name) ?? { kind: "coordinator", why: "outside AuthHub's schemas" };
  const anchor = byName.get(COLOCATION_ANCHOR);
  const anchorPlacement = anchor ? placements.get(anchor.name) : undefined;
  const anchorType = anchor && anchorPlacement?.kind === "distributed" ? anchor.columns.find((c) => c.name === anchorPlacement.column)?.type : undefined;

  const findings: Finding[] = [];
  const add = (table: TableFacts, object: string, rule: Rule, detail: string) => findings.push({ table: table.name, object, rule, detail });
  for (const { table, placement } of classified) {
    if (placement.kind !== "coordinator" && !table.keys.some((k) => k.kind === "primary key")) {
      add(table, table.name, "no-primary-key", "no primary key: Citus's rebalancer moves shards by logical replication, which needs one");
    }
    if (placement.kind === "distributed") {
      const column = table.columns.find((c) => c.name === placement.column);
      if (!column) {
        add(table, placement.column, "no-column", `no ${placement.column} column to distribute by`);
      } else {
        if (!column.notNull) add(table, column.name, "nullable", `${column.name} allows NULL: a row without a tenant has no shard`);
        if (anchorType !== undefined && column.type !== anchorType) {
          add(
            table,
            column.name,
            "column-type",
            `${column.name} is ${column.type}, ${COLOCATION_ANCHOR}'s distribution column is ${anchorType}: tables are colocated only by columns of one type`,
          );
        }
      }
      for (const key of table.keys) {
        if (!key.columns.includes(placement.column)) {
          add(
            table,
            key.name,
            "unique-key",
            `${key.kind} (${key.columns.map((c) => c ?? "expression").join(", ")}) lacks ${placement.column}: a distributed table's unique keys must include its distribution column`,
          );
        }
      }
    }
    for (const fk of table.foreignKeys) {
      const target = placementByName(fk.references);
      const describe = `(${fk.columns.join(", ")}) → ${fk.references} (${fk.referencedColumns.join(", ")})`;
      if (placement.kind === "coordinator" || target.kind === "coordinator") {
        if (placement.kind !== target.kind) {
          add(table, fk.name, "fk-coordinator", `${describe}: a plain coordinator table and a Citus table cannot be joined by a foreign key`);
        }
        continue;
      }
      if (target.kind === "distributed" && placement.kind !== "distributed") {
        add(table, fk.name, "fk-into-distributed", `${describe}: a ${placement.kind} table cannot reference a distributed table`);
        continue;
      }
      if (placement.kind !== "distributed") continue;
      const position = fk.columns.indexOf(placement.column);
      if (target.kind === "distributed" && (position === -1 || fk.referencedColumns[position] !== target.column)) {
        add(table, fk.name, "fk-columns", `${describe}: a foreign key between distributed tables must pair ${placement.column} with ${target.column} at the same position`);
      }
      const onDelete = ACTION[fk.onDelete] ?? fk.onDelete;
      const onUpdate = ACTION[fk.onUpdate] ?? fk.onUpdate;
      if (position !== -1 && (fk.onDelete === "n" || fk.onDelete === "d" || !["a", "r"].includes(fk.onUpdate))) {
        add(
          table,
          fk.name,
          "fk-action",
          `${describe} ON DELETE ${onDelete} ON UPDATE ${onUpdate}: with ${placement.column} in the key, Citus allows no SET NULL/SET DEFAULT on delete and no action on update`,
        );
      }
    }
  }
  return {
    classified,
    unclassified,
    staleEntries: Object.keys(PLACEMENTS)
      .filter((name) => !byName.has(name))
      .sort(),
    findings,
  };
}

/** The message for tables no placement covers. */
export function howToClassify(tables: string[]): string {
  return [
    `Not classified for Citus: ${tables.join(", ")}.`,
    "Give a tenant table a tenant_id column (uuid not null, leading its keys): it is then distributed by it.",
    "Otherwise add it to PLACEMENTS in db/distribution.ts as a reference table (small, global, read with tenant data on every node)",
    "or a coordinator table (read and written only on the coordinator, never joined with tenant data), with the reason; then `npm run docs:scale-out`.",
  ].join("\n");
}

// ---------------------------------------------------------------- order

/**
 * Citus tables in the order they can be created: a foreign key's target first
 * (Citus checks it when the referencing table is distributed), reference
 * tables before distributed ones, the colocation anchor first among those,
 * then by name.
 */
export function creationOrder(classified: Classified[]): Classified[] {
  const citus = classified.filter((c) => c.placement.kind !== "coordinator");
  const rank = (c: Classified) => (c.placement.kind === "reference" ? 0 : c.table.name === COLOCATION_ANCHOR ? 1 : 2);
  const pending = [...citus].sort((a, b) => rank(a) - rank(b) || (a.table.name < b.table.name ? -1 : a.table.name > b.table.name ? 1 : 0));
  const names = new Set(citus.map((c) => c.table.name));
  const done = new Set<string>();
  const ordered: Classified[] = [];
  while (pending.length > 0) {
    const index = pending.findIndex((c) => c.table.foreignKeys.every((fk) => fk.references === c.table.name || done.has(fk.references) || !names.has(fk.references)));
    // A cycle of foreign keys: take the next one as it comes (Citus would need the keys added after).
    const [next] = pending.splice(index === -1 ? 0 : index, 1);
    ordered.push(next!);
    done.add(next!.table.name);
  }
  return ordered;
}
