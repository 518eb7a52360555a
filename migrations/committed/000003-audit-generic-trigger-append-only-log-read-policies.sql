--! Previous: sha1:b11f76b390210967b0b6c12c1f348ff583027909
--! Hash: sha1:d3a89331ad88dc10cfe830831b708cc767663999
--! Message: audit: generic trigger, append-only log, read policies

--! split: 200-audit.sql
-- The audit log (issue 4). One generic, statement-level trigger records every
-- change to the tables that hold tenants, organizations, users, memberships,
-- roles, permission mappings and assignments (and later API keys and
-- configuration) into authhub.audit_events: who (user, API key or system job,
-- never empty, never left over from another transaction), what, when, and the
-- request's trace id. Rows are append-only for every role, the owner included.

create type authhub.audit_operation as enum ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE');

-- Per-tenant retention of audit events, part of the tenant's configuration. At
-- least 30 days, and set only by a tenant admin (not by tenant:config alone):
-- shortening it erases history, so it needs the authority that reads it.
alter table authhub.tenants add column audit_retention_days integer not null default 365
  constraint tenants_audit_retention_days_range check (audit_retention_days between 30 and 3650);
comment on column authhub.tenants.audit_retention_days is 'How long audit events are kept (days, 30-3650; default 365). Tenant admins only.';
grant update (audit_retention_days) on authhub.tenants to authhub_tenant_admin;

create function authhub_private.audit_retention_unchanged(id uuid, audit_retention_days integer) returns boolean
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select exists (select 1 from authhub.tenants t
                 where t.id = audit_retention_unchanged.id and t.id = authhub.current_tenant_id()
                   and t.audit_retention_days = audit_retention_unchanged.audit_retention_days)
$$;
grant execute on function authhub_private.audit_retention_unchanged(uuid, integer) to authhub_user;
create policy update_retention_guard on authhub.tenants as restrictive for update to authhub_user
  using (true)
  with check (
    (select authhub_private.is_tenant_admin())
    or authhub_private.audit_retention_unchanged(id, audit_retention_days)
  );

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
  -- Time-ordered within a tenant: "the last N events" and time ranges are a
  -- (backward) scan of the key itself, so one B-tree serves reads and writes.
  primary key (tenant_id, occurred_at, id)
);
alter table authhub.audit_events enable row level security;
alter table authhub.audit_events force row level security;

-- Sealing, verification and retention select a tenant's events by transaction
-- range; transaction ids grow with time, which is what BRIN summarises cheaply.
create index audit_events_transaction_brin on authhub.audit_events using brin (transaction_id);

comment on table authhub.audit_events is E'@behavior -insert -update -delete\nEvery change to audited tables: append-only.';
-- GraphQL filters, orders and groups by these without an index each: every
-- extra index is paid on every audited write, and a tenant's events are read
-- through the (tenant_id, occurred_at) index anyway. `@isIndexed` tells amber
-- (which otherwise offers these only on indexed columns) to allow them.
comment on column authhub.audit_events.actor is
  E'@isIndexed\nWho made the change: user:<id>, api_key:<id>, system:<job> or db:<login role>.';
comment on column authhub.audit_events.table_name is E'@isIndexed\nThe audited table.';
comment on column authhub.audit_events.operation is E'@isIndexed\nINSERT, UPDATE, DELETE or TRUNCATE.';
comment on column authhub.audit_events.changed_columns is 'For updates: the columns whose values changed.';

-- Nobody changes or removes history: no grant allows it, and these triggers
-- refuse it for the owner too (whose RLS policy on this table is insert/select
-- only). ENABLE ALWAYS: session_replication_role cannot skip them.
-- The one exception is retention: an event past its tenant's retention period
-- (tenants.audit_retention_days) may be deleted; nothing younger, by anyone.
create function authhub_private.tg_audit_events__append_only() returns trigger
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
as $$
begin
  if tg_op = 'DELETE' and old.occurred_at < now() - make_interval(days => coalesce(
       (select t.audit_retention_days from authhub.tenants t where t.id = old.tenant_id), 365)) then
    return old;
  end if;
  raise exception 'The audit log is append-only.' using errcode = 'AH403', table = tg_table_name;
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
-- organization column ('' when none), the secret columns (comma-separated,
-- from audit_secret_columns: re-enrol a table after registering a secret),
-- then the primary-key columns (at most four; the row key is built inline,
-- measured much cheaper than calling a helper per row). Everything per
-- statement is a setting read or an argument: no lookups.
create function authhub_private.tg__audit() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  tenant_column text := tg_argv[0];
  organization_column text := nullif(tg_argv[1], '');
  secrets text[] := string_to_array(nullif(tg_argv[2], ''), ',');
  key_columns text[] := tg_argv[3:];
  actor text := authhub_private.current_actor();
  actor_user uuid := authhub.current_user_id();
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
           case cardinality(key_columns)
             when 1 then jsonb_build_object(key_columns[1], r -> key_columns[1])
             when 2 then jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2])
             when 3 then jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2], key_columns[3], r -> key_columns[3])
             else jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2], key_columns[3], r -> key_columns[3], key_columns[4], r -> key_columns[4])
           end,
           (r ->> organization_column)::uuid,
           r - coalesce(secrets, '{}'), actor, actor_user, trace
    from (select to_jsonb(n) as r from new_rows n) x;
  elsif tg_op = 'DELETE' then
    insert into authhub.audit_events (tenant_id, table_name, operation, row_key, organization_id, old, actor, actor_user_id, trace_id)
    select (r ->> tenant_column)::uuid, tg_table_name, 'DELETE',
           case cardinality(key_columns)
             when 1 then jsonb_build_object(key_columns[1], r -> key_columns[1])
             when 2 then jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2])
             when 3 then jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2], key_columns[3], r -> key_columns[3])
             else jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2], key_columns[3], r -> key_columns[3], key_columns[4], r -> key_columns[4])
           end,
           (r ->> organization_column)::uuid,
           r - coalesce(secrets, '{}'), actor, actor_user, trace
    from (select to_jsonb(o) as r from old_rows o) x;
  else
    insert into authhub.audit_events (tenant_id, table_name, operation, row_key, organization_id, old, new, changed_columns, actor, actor_user_id, trace_id)
    select (n.r ->> tenant_column)::uuid, tg_table_name, 'UPDATE', n.k,
           (n.r ->> organization_column)::uuid,
           o.r - coalesce(secrets, '{}'), n.r - coalesce(secrets, '{}'),
           array(select c from jsonb_object_keys(n.r) c where n.r -> c is distinct from o.r -> c order by c),
           actor, actor_user, trace
    from (select r, case cardinality(key_columns)
                    when 1 then jsonb_build_object(key_columns[1], r -> key_columns[1])
                    when 2 then jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2])
                    when 3 then jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2], key_columns[3], r -> key_columns[3])
                    else jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2], key_columns[3], r -> key_columns[3], key_columns[4], r -> key_columns[4])
                  end as k from (select to_jsonb(x) as r from new_rows x) y) n
    join (select r, case cardinality(key_columns)
                    when 1 then jsonb_build_object(key_columns[1], r -> key_columns[1])
                    when 2 then jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2])
                    when 3 then jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2], key_columns[3], r -> key_columns[3])
                    else jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2], key_columns[3], r -> key_columns[3], key_columns[4], r -> key_columns[4])
                  end as k from (select to_jsonb(x) as r from old_rows x) y) o
      on o.k = n.k;
  end if;
  return null;
end;
$$;

-- Columns that never reach the audit log (secrets, hashes): removed from old/new.
-- Read when a table is enrolled (authhub_private.audit_table): register first.
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
  if cardinality(keys) > 4 then
    raise exception '% has a primary key of more than four columns; extend the row key in authhub_private.tg__audit', target;
  end if;
  args := format('%L, %L, %L', tenant_column, coalesce(organization_column, ''),
                 coalesce((select string_agg(s.column_name, ',' order by s.column_name)
                           from authhub_private.audit_secret_columns s
                           where s.table_name = (select c.relname from pg_class c where c.oid = target)), ''))
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


-------------------------------------------------------------------------------
-- Tamper evidence: the worker's audit_events__seal job seals each tenant's new
-- events into a hash chain. A seal covers the events of every transaction that
-- finished before it (transaction ids below the snapshot's xmin: that set can no
-- longer grow), hashes them in id order together with the previous seal's hash,
-- and is itself append-only. `authhub audit verify` recomputes the chain.
create table authhub_private.audit_seals (
  tenant_id      uuid not null,
  seq            bigint not null,
  -- Covers events with from_transaction <= transaction_id < to_transaction.
  from_transaction bigint not null,
  to_transaction   bigint not null,
  event_count    integer not null,
  -- The newest covered event: the whole seal expires (and may be purged) after it.
  last_occurred_at timestamptz not null,
  previous_hash  text,
  hash           text not null,
  sealed_at      timestamptz not null default now(),
  primary key (tenant_id, seq),
  constraint audit_seals_range check (from_transaction < to_transaction)
);
alter table authhub_private.audit_seals enable row level security;
alter table authhub_private.audit_seals force row level security;
create policy select_owner on authhub_private.audit_seals for select to authhub_owner using (true);
create policy insert_owner on authhub_private.audit_seals for insert to authhub_owner with check (true);
create policy update_owner on authhub_private.audit_seals for update to authhub_owner using (true);
create policy delete_owner on authhub_private.audit_seals for delete to authhub_owner using (true);
create function authhub_private.tg_audit_seals__append_only() returns trigger
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
as $$
begin
  raise exception 'Audit seals are append-only.' using errcode = 'AH403', table = 'audit_seals';
end;
$$;
create trigger _100_append_only before update or delete on authhub_private.audit_seals
  for each row execute function authhub_private.tg_audit_seals__append_only();
create trigger _100_append_only_truncate before truncate on authhub_private.audit_seals
  for each statement execute function authhub_private.tg_audit_seals__append_only();
alter table authhub_private.audit_seals enable always trigger _100_append_only;
alter table authhub_private.audit_seals enable always trigger _100_append_only_truncate;

-- One event's canonical text: the whole row as jsonb (every column by name,
-- nulls explicit, keys in a fixed order), so no value can move between fields.
create function authhub_private.audit_event_digest(e authhub.audit_events) returns text
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$
  select encode(sha256(convert_to(to_jsonb(e)::text, 'UTF8')), 'hex')
$$;

-- The hash of a seal: sha256 over the previous hash and the events' digests in id order.
create function authhub_private.audit_range_hash(tenant_id uuid, from_transaction bigint, to_transaction bigint, previous_hash text)
  returns table (event_count integer, last_occurred_at timestamptz, hash text)
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select count(*)::integer,
         max(e.occurred_at),
         encode(sha256(convert_to(coalesce(audit_range_hash.previous_hash, '') || ':' ||
           coalesce(string_agg(authhub_private.audit_event_digest(e), ',' order by e.id), ''), 'UTF8')), 'hex')
  from authhub.audit_events e
  where e.tenant_id = audit_range_hash.tenant_id
    and e.transaction_id >= audit_range_hash.from_transaction
    and e.transaction_id < audit_range_hash.to_transaction
$$;

-- Seals every tenant's finished, unsealed events; returns the number of seals made.
create function authhub_private.seal_audit_events() returns integer
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  horizon bigint := txid_snapshot_xmin(txid_current_snapshot());
  sealed integer := 0;
  t record;
  h record;
begin
  -- One sealer at a time.
  if not pg_try_advisory_xact_lock(7426004) then
    return 0;
  end if;
  for t in
    select e.tenant_id,
           coalesce((select s.to_transaction from authhub_private.audit_seals s where s.tenant_id = e.tenant_id order by s.seq desc limit 1), 0) as from_tx,
           coalesce((select s.seq from authhub_private.audit_seals s where s.tenant_id = e.tenant_id order by s.seq desc limit 1), 0) as last_seq,
           (select s.hash from authhub_private.audit_seals s where s.tenant_id = e.tenant_id order by s.seq desc limit 1) as previous_hash
    from (select distinct tenant_id from authhub.audit_events) e
  loop
    if t.from_tx >= horizon then
      continue;
    end if;
    select * into h from authhub_private.audit_range_hash(t.tenant_id, t.from_tx, horizon, t.previous_hash);
    if h.event_count = 0 then
      continue;
    end if;
    insert into authhub_private.audit_seals (tenant_id, seq, from_transaction, to_transaction, event_count, last_occurred_at, previous_hash, hash)
    values (t.tenant_id, t.last_seq + 1, t.from_tx, horizon, h.event_count, h.last_occurred_at, t.previous_hash, h.hash);
    sealed := sealed + 1;
  end loop;
  return sealed;
end;
$$;
grant execute on function authhub_private.seal_audit_events() to authhub_worker;

-------------------------------------------------------------------------------
-- Retention: the worker's audit_events__purge job deletes expired events, a
-- whole seal at a time (a seal expires with its newest event), and records each
-- purge, so that verify knows which ranges were emptied on purpose and checks
-- every other one fully. Events not yet sealed are never purged. Definer: it
-- runs as the worker role, which has no rights on the log itself; the
-- append-only trigger still refuses anything unexpired.
create table authhub_private.audit_seal_purges (
  tenant_id  uuid not null,
  seq        bigint not null,
  events     integer not null,
  purged_at  timestamptz not null default now(),
  primary key (tenant_id, seq),
  constraint audit_seal_purges_seal_fkey foreign key (tenant_id, seq) references authhub_private.audit_seals (tenant_id, seq)
);
alter table authhub_private.audit_seal_purges enable row level security;
alter table authhub_private.audit_seal_purges force row level security;
create policy select_owner on authhub_private.audit_seal_purges for select to authhub_owner using (true);
create policy insert_owner on authhub_private.audit_seal_purges for insert to authhub_owner with check (true);
create trigger _100_append_only before update or delete on authhub_private.audit_seal_purges
  for each row execute function authhub_private.tg_audit_seals__append_only();
alter table authhub_private.audit_seal_purges enable always trigger _100_append_only;

-- Purges up to `max_seals` expired seals' events; returns the events deleted.
create function authhub_private.purge_expired_audit_events(max_seals integer) returns integer
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  s record;
  deleted integer;
  total integer := 0;
begin
  for s in
    select a.tenant_id, a.seq, a.from_transaction, a.to_transaction
    from authhub_private.audit_seals a
    join authhub.tenants t on t.id = a.tenant_id
    where a.last_occurred_at < now() - make_interval(days => t.audit_retention_days)
      and not exists (select 1 from authhub_private.audit_seal_purges p where p.tenant_id = a.tenant_id and p.seq = a.seq)
    order by a.tenant_id, a.seq
    limit greatest(1, least(max_seals, 100))
  loop
    delete from authhub.audit_events e
    where e.tenant_id = s.tenant_id and e.transaction_id >= s.from_transaction and e.transaction_id < s.to_transaction;
    get diagnostics deleted = row_count;
    insert into authhub_private.audit_seal_purges (tenant_id, seq, events) values (s.tenant_id, s.seq, deleted);
    total := total + deleted;
  end loop;
  return total;
end;
$$;
grant execute on function authhub_private.purge_expired_audit_events(integer) to authhub_worker;

-- Recomputes a tenant's chain (all tenants when null): one row per seal, with
-- what is wrong with it. A purged seal's range must be empty; every other seal's
-- events must hash to it.
create function authhub_private.verify_audit_chain(only_tenant uuid)
  returns table (tenant_id uuid, seq bigint, ok boolean, problem text)
  language plpgsql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  s record;
  h record;
  expected_previous text;
  expected_from bigint;
  expected_seq bigint;
  current_tenant uuid;
begin
  for s in
    select a.*, exists (select 1 from authhub_private.audit_seal_purges p where p.tenant_id = a.tenant_id and p.seq = a.seq) as purged
    from authhub_private.audit_seals a
    where only_tenant is null or a.tenant_id = only_tenant
    order by a.tenant_id, a.seq
  loop
    if current_tenant is distinct from s.tenant_id then
      current_tenant := s.tenant_id;
      expected_previous := null;
      expected_from := null;
      expected_seq := null;
    end if;
    tenant_id := s.tenant_id;
    seq := s.seq;
    select * into h from authhub_private.audit_range_hash(s.tenant_id, s.from_transaction, s.to_transaction, s.previous_hash);
    if s.previous_hash is distinct from expected_previous
       or s.from_transaction <> coalesce(expected_from, 0)
       or s.seq <> coalesce(expected_seq, 0) + 1 then
      ok := false;
      problem := 'the chain is broken: this seal does not follow the previous one';
    elsif s.to_transaction > txid_current() then
      ok := false;
      problem := 'the seal covers transactions that have not happened yet';
    elsif s.purged then
      ok := h.event_count = 0;
      problem := case when ok then 'purged by retention' else format('%s event(s) appeared in a purged range', h.event_count) end;
    elsif h.hash = s.hash and h.event_count = s.event_count then
      ok := true;
      problem := null;
    else
      ok := false;
      problem := format('events were changed, removed or added (sealed %s, now %s)', s.event_count, h.event_count);
    end if;
    expected_previous := s.hash;
    expected_from := s.to_transaction;
    expected_seq := s.seq;
    return next;
  end loop;
end;
$$;

insert into authhub_private.audit_exemptions (table_name, reason) values
  ('authhub_private.audit_seals', 'The hash chain over the audit log (append-only).'),
  ('authhub_private.audit_seal_purges', 'The record of retention purges (append-only).');

-- The query API's search: a time range and optional filters by table,
-- operation, actor and row, newest first. Invoker: RLS decides what is
-- returned. (The plain auditEvents connection filters by equality only.)
create function authhub.search_audit_events(
  since timestamptz,
  until timestamptz default null,
  table_name text default null,
  operation authhub.audit_operation default null,
  actor text default null,
  row_id uuid default null
) returns setof authhub.audit_events
  language sql stable
as $$
  select e.*
  from authhub.audit_events e
  where e.occurred_at >= search_audit_events.since
    and e.occurred_at < coalesce(search_audit_events.until, 'infinity')
    and (search_audit_events.table_name is null or e.table_name = search_audit_events.table_name)
    and (search_audit_events.operation is null or e.operation = search_audit_events.operation)
    and (search_audit_events.actor is null or e.actor = search_audit_events.actor)
    and (search_audit_events.row_id is null
         or e.row_key ->> 'id' = search_audit_events.row_id::text
         or e.row_key ->> 'user_id' = search_audit_events.row_id::text)
  order by e.occurred_at desc, e.id desc
$$;
comment on function authhub.search_audit_events(timestamptz, timestamptz, text, authhub.audit_operation, text, uuid) is
  'Audit events from `since` (inclusive) to `until` (exclusive; open when null), newest first, filtered by table, operation, actor and row (its id, or a membership''s or assignment''s user).';
grant execute on function authhub.search_audit_events(timestamptz, timestamptz, text, authhub.audit_operation, text, uuid) to authhub_user;
