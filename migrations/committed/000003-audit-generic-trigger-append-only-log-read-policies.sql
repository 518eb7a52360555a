--! Previous: sha1:1734bb0ab39e20b406605283a144f7f4f87e2dc0
--! Hash: sha1:eab5ad4f72116955ebbbd41b182239493b09648f
--! Message: audit: generic trigger, append-only log, read policies

--! split: 200-audit.sql
-- The audit log (issue 4). One generic, statement-level trigger records every
-- change to the tables that hold tenants, organizations, users, memberships,
-- roles, permission mappings and assignments (and later API keys and
-- configuration) into authhub.audit_events: who (user, API key or system job,
-- never empty, never left over from another transaction), what, when, and the
-- request's trace id. Rows are append-only for every role, the owner included.

create type authhub.audit_operation as enum ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE');

create table authhub.audit_events (
  tenant_id       uuid not null,
  id              bigint generated always as identity,
  occurred_at     timestamptz not null default now(),
  table_name      text not null,
  operation       authhub.audit_operation not null,
  -- The row's primary key as {column: value}; null for TRUNCATE.
  row_key         jsonb,
  -- The organization the row belongs to, when it belongs to one (scopes audit:read).
  organization_id uuid,
  old             jsonb,
  new             jsonb,
  changed_columns text[],
  actor           text not null constraint audit_events_actor_format check (actor ~ '^(user|api_key|system|db):.+$'),
  actor_user_id   uuid,
  trace_id        text,
  transaction_id  bigint not null default txid_current(),
  primary key (tenant_id, id)
);
alter table authhub.audit_events enable row level security;
alter table authhub.audit_events force row level security;

-- "The last N events of a tenant": newest first, whatever the table's size.
create index audit_events_tenant_recent_idx on authhub.audit_events (tenant_id, occurred_at desc, id desc);
-- Time-range scans over millions of rows (retention, sealing).
create index audit_events_occurred_brin on authhub.audit_events using brin (occurred_at);
-- Filters the query API offers.
create index audit_events_table_idx on authhub.audit_events (tenant_id, table_name, occurred_at desc);
create index audit_events_actor_idx on authhub.audit_events (tenant_id, actor, occurred_at desc);
create index audit_events_operation_idx on authhub.audit_events (tenant_id, operation, occurred_at desc);
create index audit_events_row_idx on authhub.audit_events using gin (row_key jsonb_path_ops);

comment on table authhub.audit_events is E'@behavior -insert -update -delete\nEvery change to audited tables: append-only.';
comment on column authhub.audit_events.actor is 'Who made the change: user:<id>, api_key:<id>, system:<job> or db:<login role>.';
comment on column authhub.audit_events.changed_columns is 'For updates: the columns whose values changed.';

-- Nobody changes or removes history: no grant allows it, and these triggers
-- refuse it for the owner too (whose RLS policy on this table is insert/select
-- only). ENABLE ALWAYS: session_replication_role cannot skip them.
create function authhub_private.tg_audit_events__append_only() returns trigger
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
as $$
begin
  raise exception 'The audit log is append-only.' using errcode = 'AH403', table = 'audit_events';
end;
$$;
create trigger _100_append_only before update or delete on authhub.audit_events
  for each row execute function authhub_private.tg_audit_events__append_only();
create trigger _100_append_only_truncate before truncate on authhub.audit_events
  for each statement execute function authhub_private.tg_audit_events__append_only();
alter table authhub.audit_events enable always trigger _100_append_only;
alter table authhub.audit_events enable always trigger _100_append_only_truncate;

-- Who is acting, from transaction-local settings only (so never an identity left
-- over from an earlier transaction on a pooled connection): the signed-in user,
-- an API key (issue 6), a system job or CLI command (`authhub.actor`, set
-- locally by the worker and the CLI), or, failing all, the login role.
create function authhub_private.current_actor() returns text
  language sql stable
as $$
  select coalesce(
    'user:' || nullif(pg_catalog.current_setting('jwt.claims.sub', true), ''),
    'api_key:' || nullif(pg_catalog.current_setting('jwt.claims.api_key_id', true), ''),
    nullif(pg_catalog.current_setting('authhub.actor', true), ''),
    'db:' || session_user)
$$;

-- The generic audit trigger, statement-level with transition tables so a
-- 100-row statement writes its 100 events in one insert. Arguments, fixed when
-- the table is enrolled (authhub_private.audit_table): the tenant column, the
-- organization column ('' when none), then the primary-key columns.
create function authhub_private.tg__audit() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  tenant_column text := tg_argv[0];
  organization_column text := nullif(tg_argv[1], '');
  key_columns text[] := tg_argv[2:];
  secrets text[] := coalesce(
    (select array_agg(s.column_name) from authhub_private.audit_secret_columns s where s.table_name = tg_table_name), '{}');
  actor text := authhub_private.current_actor();
  actor_user uuid := nullif(pg_catalog.current_setting('jwt.claims.sub', true), '')::uuid;
  trace text := authhub.current_trace_id();
begin
  if tg_op = 'TRUNCATE' then
    insert into authhub.audit_events (tenant_id, table_name, operation, actor, actor_user_id, trace_id)
    values ('00000000-0000-0000-0000-000000000000', tg_table_name, 'TRUNCATE', actor, actor_user, trace);
    return null;
  end if;
  if tg_op = 'INSERT' then
    insert into authhub.audit_events (tenant_id, table_name, operation, row_key, organization_id, new, actor, actor_user_id, trace_id)
    select (r ->> tenant_column)::uuid, tg_table_name, 'INSERT',
           (select jsonb_object_agg(k, r -> k) from unnest(key_columns) k),
           (r ->> organization_column)::uuid,
           r - secrets, actor, actor_user, trace
    from (select to_jsonb(n) as r from new_rows n) x;
  elsif tg_op = 'DELETE' then
    insert into authhub.audit_events (tenant_id, table_name, operation, row_key, organization_id, old, actor, actor_user_id, trace_id)
    select (r ->> tenant_column)::uuid, tg_table_name, 'DELETE',
           (select jsonb_object_agg(k, r -> k) from unnest(key_columns) k),
           (r ->> organization_column)::uuid,
           r - secrets, actor, actor_user, trace
    from (select to_jsonb(o) as r from old_rows o) x;
  else
    insert into authhub.audit_events (tenant_id, table_name, operation, row_key, organization_id, old, new, changed_columns, actor, actor_user_id, trace_id)
    select (n.r ->> tenant_column)::uuid, tg_table_name, 'UPDATE', n.k,
           (n.r ->> organization_column)::uuid,
           o.r - secrets, n.r - secrets,
           array(select c from jsonb_object_keys(n.r) c where n.r -> c is distinct from o.r -> c order by c),
           actor, actor_user, trace
    from (select to_jsonb(x) as r, (select jsonb_object_agg(k, to_jsonb(x) -> k) from unnest(key_columns) k) as k from new_rows x) n
    join (select to_jsonb(x) as r, (select jsonb_object_agg(k, to_jsonb(x) -> k) from unnest(key_columns) k) as k from old_rows x) o
      on o.k = n.k;
  end if;
  return null;
end;
$$;

-- Columns that never reach the audit log (secrets, hashes): removed from old/new.
create table authhub_private.audit_secret_columns (
  table_name  text not null,
  column_name text not null,
  primary key (table_name, column_name)
);
alter table authhub_private.audit_secret_columns enable row level security;
alter table authhub_private.audit_secret_columns force row level security;
create policy all_owner on authhub_private.audit_secret_columns for all to authhub_owner using (true) with check (true);
comment on table authhub_private.audit_secret_columns is 'Columns the audit trigger drops from old and new values.';

-- Tables deliberately not audited, each with its reason; the catalog meta-test
-- fails for any other table without the audit triggers.
create table authhub_private.audit_exemptions (
  table_name regclass primary key,
  reason     text not null constraint audit_exemptions_reason_length check (length(reason) between 10 and 500)
);
alter table authhub_private.audit_exemptions enable row level security;
alter table authhub_private.audit_exemptions force row level security;
create policy all_owner on authhub_private.audit_exemptions for all to authhub_owner using (true) with check (true);

-- Enrols a table: the four audit triggers, with the tenant column, the
-- organization column and the primary key, enabled ALWAYS. Idempotent.
create function authhub_private.audit_table(target regclass, tenant_column text, organization_column text) returns void
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
as $$
declare
  keys text[];
  args text;
  name text;
begin
  select array_agg(a.attname::text order by array_position(i.indkey::int2[], a.attnum))
  into keys
  from pg_index i
  join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey::int2[])
  where i.indrelid = target and i.indisprimary;
  if keys is null then
    raise exception '% has no primary key; the audit log needs one to name rows', target;
  end if;
  args := format('%L, %L', tenant_column, coalesce(organization_column, ''))
       || (select string_agg(format(', %L', k), '') from unnest(keys) k);
  foreach name in array array['_900_audit_insert', '_900_audit_update', '_900_audit_delete', '_900_audit_truncate'] loop
    execute format('drop trigger if exists %I on %s', name, target);
  end loop;
  execute format('create trigger _900_audit_insert after insert on %s referencing new table as new_rows
                  for each statement execute function authhub_private.tg__audit(%s)', target, args);
  execute format('create trigger _900_audit_update after update on %s referencing old table as old_rows new table as new_rows
                  for each statement execute function authhub_private.tg__audit(%s)', target, args);
  execute format('create trigger _900_audit_delete after delete on %s referencing old table as old_rows
                  for each statement execute function authhub_private.tg__audit(%s)', target, args);
  execute format('create trigger _900_audit_truncate after truncate on %s
                  for each statement execute function authhub_private.tg__audit(%s)', target, args);
  foreach name in array array['_900_audit_insert', '_900_audit_update', '_900_audit_delete', '_900_audit_truncate'] loop
    execute format('alter table %s enable always trigger %I', target, name);
  end loop;
end;
$$;

select authhub_private.audit_table('authhub.tenants', 'id', null);
select authhub_private.audit_table('authhub.users', 'tenant_id', null);
select authhub_private.audit_table('authhub.organizations', 'tenant_id', 'id');
select authhub_private.audit_table('authhub.memberships', 'tenant_id', 'organization_id');
select authhub_private.audit_table('authhub.roles', 'tenant_id', null);
select authhub_private.audit_table('authhub.role_permissions', 'tenant_id', null);
select authhub_private.audit_table('authhub.role_assignments', 'tenant_id', 'organization_id');

insert into authhub_private.audit_exemptions (table_name, reason) values
  ('authhub.permissions', 'Global catalogue, changed only by migrations (reviewed in git).'),
  ('authhub.level_permissions', 'Global level sets, changed only by migrations (reviewed in git).'),
  ('authhub.audit_events', 'The audit log itself (append-only).'),
  ('authhub_private.audit_secret_columns', 'Audit configuration, changed only by migrations.'),
  ('authhub_private.audit_exemptions', 'This list, changed only by migrations.'),
  ('authhub_private.signing_keys', 'Key material; rotations are recorded by the key-management issue (5).');

-- Who reads history: audit:read holders, tenant-wide or for their subtrees'
-- organizations, memberships and assignments; super admins everywhere. The
-- owner inserts (through the trigger) and reads; nobody updates or deletes.
create policy select_permitted on authhub.audit_events for select to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and ((select authhub_private.has_tenant_permission('audit:read'))
         or organization_id in (select authhub_private.organizations_with_permission('audit:read')))
  );
create policy select_super_admin on authhub.audit_events for select to authhub_super_admin
  using ((select authhub_private.is_super_admin()));
create policy select_owner on authhub.audit_events for select to authhub_owner using (true);
create policy insert_owner on authhub.audit_events for insert to authhub_owner with check (true);
-- Not permissions: these let the owner's attempts reach the append-only trigger,
-- so they fail loudly (AH403) instead of silently matching no row.
create policy update_owner on authhub.audit_events for update to authhub_owner using (true);
create policy delete_owner on authhub.audit_events for delete to authhub_owner using (true);

grant select on authhub.audit_events to authhub_user;
