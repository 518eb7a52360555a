--! Previous: sha1:6fd146f8df2ed28d9197bafe20574856aabeaf9b
--! Hash: sha1:7de0a49ad0f7346cf922e2e7c35d2e88740b99a7
--! Message: Outbound events: an outbox written by triggers in the changing transaction, event endpoints with encrypted signing secrets, deliveries ordered per entity with leases, retries and disabling

--! split: 1-current.sql


--! split: 100-event-endpoints.sql
-- Outbound events (issue 17 item 4, DESIGN.md §14): changes to identity and
-- retail rows are written, in the changing transaction, to an outbox
-- (authhub.events, one row per change, and authhub.event_deliveries, one row per
-- endpoint that wants it); the worker sends them as Standard Webhooks. An event
-- endpoint is a tenant admin's subscription: a URL (https; the server checks the
-- scheme and address rules, which depend on NODE_ENV), the event types it wants
-- (`<area>.<entity>.<created|updated|deleted>`, `*` patterns), optionally a
-- store (it then receives that store's retail events only, and none its own
-- sync made), and a signing secret (`whsec_…`, encrypted under the master key in
-- authhub_private, shown once).

-- A pattern is one to three dot-separated segments, each a name or `*`; at most 50.
create function authhub_private.event_types_valid(patterns text[]) returns boolean
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$
  select cardinality(patterns) between 1 and 50
     and array_position(patterns, null) is null
     and not exists (select 1 from unnest(patterns) p where p !~ '^(\*|[A-Za-z]{1,40})(\.(\*|[A-Za-z]{1,40})){0,2}$')
$$;
comment on function authhub_private.event_types_valid(text[]) is 'Event type patterns: 1-50 of them, each one to three dot-separated segments, a name or *.';
-- The table's check runs as whoever writes the row (tenant admins too).
grant execute on function authhub_private.event_types_valid(text[]) to authhub_user;

-- Whether a type (`retail.order.updated`) matches one of the patterns: `*` stands
-- for one segment, and a final `*` for the rest (`*` alone: everything;
-- `retail.*`: every retail event; `*.*.deleted`: every deletion).
create function authhub_private.event_type_matches(type text, patterns text[]) returns boolean
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$
  select exists (
    select 1 from unnest(patterns) p
    where type ~ ('^' || regexp_replace(replace(replace(p, '.', '\.'), '*', '[A-Za-z]+'), '\[A-Za-z\]\+$', '[A-Za-z.]+') || '$'))
$$;
comment on function authhub_private.event_type_matches(text, text[]) is 'Whether an event type matches one of an endpoint''s patterns (* one segment; a final * the rest).';

create table authhub.event_endpoints (
  tenant_id       uuid not null default authhub.current_tenant_id() references authhub.tenants (id) on delete cascade,
  id              uuid not null default gen_random_uuid(),
  url             text not null constraint event_endpoints_url check (url ~ '^https?://[^[:space:][:cntrl:]]+$' and length(url) <= 2000),
  description     authhub.display_text,
  event_types     text[] not null default '{*}' constraint event_endpoints_event_types check (authhub_private.event_types_valid(event_types)),
  -- A store's system: only that store's retail events, never those its own sync made.
  store_id        uuid,
  enabled         boolean not null default true,
  -- Set when AuthHub disables an endpoint that has failed for too long (cleared when re-enabled).
  disabled_reason text,
  disabled_at     timestamptz,
  -- Since when every attempt has failed (null after a success).
  failing_since   timestamptz,
  last_success_at timestamptz,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint event_endpoints_store_fkey foreign key (tenant_id, store_id) references retail.stores (tenant_id, id) on delete cascade
);
-- The outbox trigger's lookup: a tenant's enabled endpoints.
create index event_endpoints_enabled on authhub.event_endpoints (tenant_id) where enabled;
create index event_endpoints_store on authhub.event_endpoints (tenant_id, store_id) where store_id is not null;
alter table authhub.event_endpoints enable row level security;
alter table authhub.event_endpoints force row level security;
comment on table authhub.event_endpoints is
  E'@behavior -insert\nWhere AuthHub sends events (Standard Webhooks): created with createEventEndpoint (the signing secret is shown once and kept encrypted).';
comment on constraint event_endpoints_store_fkey on authhub.event_endpoints is E'@fieldName store\n@foreignFieldName eventEndpoints';
comment on column authhub.event_endpoints.url is 'Where events are POSTed: https (plain http to loopback only outside production). Fixed once created.';
comment on column authhub.event_endpoints.event_types is 'Patterns of the event types sent: <area>.<entity>.<created|updated|deleted>, * for a segment (a final * for the rest).';
comment on column authhub.event_endpoints.store_id is 'A store''s system: it receives that store''s retail events only, and none that its own sync made.';
comment on column authhub.event_endpoints.disabled_reason is 'Why AuthHub disabled the endpoint (sustained failure); cleared when it is enabled again.';
comment on column authhub.event_endpoints.failing_since is 'Since when every attempt has failed (null after a success).';

-- Re-enabling an endpoint clears why it was disabled and wakes its deliveries.
-- Definer: queuing the job writes graphile-worker's table, which no caller may.
create function authhub_private.tg_event_endpoints__enabled() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if new.enabled and not old.enabled then
    new.disabled_reason := null;
    new.disabled_at := null;
    new.failing_since := null;
    perform authhub_private.queue_event_delivery(new.tenant_id, new.id, null);
  elsif not new.enabled and old.enabled and new.disabled_at is null then
    new.disabled_at := now();
  end if;
  return new;
end;
$$;
comment on function authhub_private.tg_event_endpoints__enabled() is 'Clears the reason an endpoint was disabled when it is enabled again, and queues its deliveries.';

create trigger _100_timestamps before insert or update on authhub.event_endpoints
  for each row execute function authhub_private.tg__timestamps();

create policy select_tenant_admin on authhub.event_endpoints for select to authhub_user
  using (tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin()));
comment on policy select_tenant_admin on authhub.event_endpoints is 'Tenant admins see their tenant''s event endpoints; nobody else does (an endpoint receives the tenant''s data).';
create policy update_tenant_admin on authhub.event_endpoints for update to authhub_user
  using (tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin()))
  with check (tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin()));
comment on policy update_tenant_admin on authhub.event_endpoints is 'Tenant admins change their endpoints'' description, types and enabled switch (the column grants say which).';
create policy delete_tenant_admin on authhub.event_endpoints for delete to authhub_user
  using (tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin()));
comment on policy delete_tenant_admin on authhub.event_endpoints is 'Tenant admins remove their endpoints (with their secret and delivery log).';
create policy all_owner on authhub.event_endpoints for all to authhub_owner using (true) with check (true);
comment on policy all_owner on authhub.event_endpoints is 'The owner: the operator''s CLI and the outbox''s definer functions.';
grant select, delete on authhub.event_endpoints to authhub_user;
-- url is fixed (its checks depend on the server's mode); the failure bookkeeping is AuthHub's.
grant update (description, event_types, enabled) on authhub.event_endpoints to authhub_user;
select authhub_private.audit_table('authhub.event_endpoints', 'tenant_id', 'store_id');

create table authhub_private.event_endpoint_secrets (
  tenant_id        uuid not null,
  endpoint_id      uuid not null,
  secret_encrypted text not null,
  created_at       timestamptz not null default now(),
  primary key (tenant_id, endpoint_id),
  foreign key (tenant_id, endpoint_id) references authhub.event_endpoints (tenant_id, id) on delete cascade
);
alter table authhub_private.event_endpoint_secrets enable row level security;
alter table authhub_private.event_endpoint_secrets force row level security;
create policy all_owner on authhub_private.event_endpoint_secrets for all to authhub_owner using (true) with check (true);
comment on policy all_owner on authhub_private.event_endpoint_secrets is 'The owner only: the signing secrets are opened by the worker through claim_event_deliveries.';
comment on table authhub_private.event_endpoint_secrets is 'Each event endpoint''s signing secret (whsec_…), encrypted under the master key.';
insert into authhub_private.audit_secret_columns (table_name, column_name) values ('event_endpoint_secrets', 'secret_encrypted');
select authhub_private.audit_table('authhub_private.event_endpoint_secrets', 'tenant_id', null);

--! split: 200-event-outbox.sql
-- The outbox. An event is written once per changed row (only when an enabled
-- endpoint of the tenant wants it); a delivery per endpoint that wants it
-- carries its state. `seq` orders an entity's events: two transactions changing
-- one row are serialised by its lock, so the later one's events get the later
-- numbers.
create sequence authhub_private.event_seq as bigint;
comment on sequence authhub_private.event_seq is 'Orders events (per entity, what is sent first).';

create table authhub.events (
  tenant_id   uuid not null references authhub.tenants (id) on delete cascade,
  id          uuid not null,
  seq         bigint not null,
  type        text not null,
  -- `<entity>:<key…>`: an entity's events are delivered in order.
  entity      text not null,
  store_id    uuid,
  -- The body sent: {id, type, tenantId, occurredAt, data, actor, traceId}.
  payload     jsonb not null,
  occurred_at timestamptz not null default now(),
  primary key (tenant_id, id)
);
create index events_occurred on authhub.events (tenant_id, occurred_at);
alter table authhub.events enable row level security;
alter table authhub.events force row level security;
create policy select_tenant_admin on authhub.events for select to authhub_user
  using (tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin()));
comment on policy select_tenant_admin on authhub.events is 'Tenant admins read the events sent to their endpoints (they carry the tenant''s rows, customers'' personal data among them).';
create policy all_owner on authhub.events for all to authhub_owner using (true) with check (true);
comment on policy all_owner on authhub.events is 'The owner: the outbox trigger writes, retention deletes.';
grant select on authhub.events to authhub_user;
comment on table authhub.events is E'@behavior -insert -update -delete\nEvents sent to the tenant''s endpoints: what changed, as its body was sent.';
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('authhub.events', 'The outbox: each event is the record of a change the audit log holds already.');

create table authhub.event_deliveries (
  tenant_id       uuid not null,
  endpoint_id     uuid not null,
  event_id        uuid not null,
  seq             bigint not null,
  event_type      text not null,
  entity          text not null,
  state           text not null default 'pending' constraint event_deliveries_state check (state in ('pending', 'delivered', 'failed')),
  attempts        integer not null default 0,
  next_attempt_at timestamptz not null default now(),
  -- A worker sending it holds it until then (a worker that dies lets it go).
  leased_until    timestamptz,
  last_attempt_at timestamptz,
  -- The HTTP status of the last attempt (null: no answer, see last_error).
  last_status     integer,
  last_error      text,
  finished_at     timestamptz,
  created_at      timestamptz not null default now(),
  primary key (tenant_id, endpoint_id, event_id),
  constraint event_deliveries_endpoint_fkey foreign key (tenant_id, endpoint_id) references authhub.event_endpoints (tenant_id, id) on delete cascade,
  constraint event_deliveries_event_fkey foreign key (tenant_id, event_id) references authhub.events (tenant_id, id) on delete cascade
);
-- What is left to send, per entity in order: the head of each entity is what may go next.
create index event_deliveries_pending on authhub.event_deliveries (tenant_id, endpoint_id, entity, seq) where state = 'pending';
-- The sweep: what is due, across tenants.
create index event_deliveries_due on authhub.event_deliveries (next_attempt_at) where state = 'pending';
-- The delivery log, newest first, and retention's scan.
create index event_deliveries_log on authhub.event_deliveries (tenant_id, endpoint_id, created_at);
create index event_deliveries_event on authhub.event_deliveries (tenant_id, event_id);
create index event_deliveries_finished on authhub.event_deliveries (finished_at) where state <> 'pending';
alter table authhub.event_deliveries enable row level security;
alter table authhub.event_deliveries force row level security;
create policy select_tenant_admin on authhub.event_deliveries for select to authhub_user
  using (tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin()));
comment on policy select_tenant_admin on authhub.event_deliveries is 'Tenant admins read their endpoints'' delivery log; nobody else does.';
create policy all_owner on authhub.event_deliveries for all to authhub_owner using (true) with check (true);
comment on policy all_owner on authhub.event_deliveries is 'The owner: the outbox trigger and the worker''s definer functions.';
grant select on authhub.event_deliveries to authhub_user;
comment on table authhub.event_deliveries is E'@behavior -insert -update -delete\nThe delivery log: each event for each endpoint, its state, attempts and last outcome.';
comment on constraint event_deliveries_endpoint_fkey on authhub.event_deliveries is E'@fieldName endpoint\n@foreignFieldName eventDeliveries';
comment on constraint event_deliveries_event_fkey on authhub.event_deliveries is E'@fieldName event\n@foreignFieldName deliveries';
comment on column authhub.event_deliveries.state is 'pending (to be sent, or retried at nextAttemptAt), delivered (2xx), failed (still refused after 3 days).';
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('authhub.event_deliveries', 'Delivery bookkeeping: the log is itself the record of what was sent.');

-- A column name as GraphQL names it (simplified inflection): `order_id` →
-- `orderId`, and `id` → `rowId` (GraphQL's `id` is the global node id).
create function authhub_private.event_field_name(name text) returns text
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$
  select case when name = 'id' then 'rowId'
              else lower(left(name, 1)) || substr(replace(initcap(replace(name, '_', ' ')), ' ', ''), 2) end
$$;

-- A row as GraphQL names it.
create function authhub_private.event_data(r jsonb) returns jsonb
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$
  select coalesce(jsonb_object_agg(authhub_private.event_field_name(e.key), e.value), '{}') from jsonb_each(r) e
$$;

-- Who made the change: a user, an API key, or AuthHub itself (a job, the CLI, a sync).
create function authhub_private.event_actor() returns jsonb
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select case
    when a like 'user:%' then jsonb_build_object('type', 'user', 'id', substr(a, 6))
    when a like 'api_key:%' then jsonb_build_object('type', 'apiKey', 'id', substr(a, 9))
    else jsonb_build_object('type', 'system', 'name', a)
  end
  from (select authhub_private.current_actor() as a) x
$$;

-- Queues a send of an endpoint's due deliveries (now, or at run_at for a
-- retry). Jobs carry no key: any number may run for one endpoint at once, and
-- order holds in SQL (claim_event_deliveries takes only each entity's head, under
-- a lease), so a producer never waits on another's job row.
create function authhub_private.queue_event_delivery(tenant_id uuid, endpoint_id uuid, run_at timestamptz) returns void
  -- plpgsql: graphile-worker's schema is installed after the migrations.
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  perform graphile_worker.add_job(
    'event_deliveries__send',
    json_build_object('tenant_id', queue_event_delivery.tenant_id, 'endpoint_id', queue_event_delivery.endpoint_id),
    run_at => queue_event_delivery.run_at,
    max_attempts => 5);
end;
$$;
comment on function authhub_private.queue_event_delivery(uuid, uuid, timestamptz) is 'Queues an event_deliveries__send job for an endpoint. Definer: graphile-worker''s tables are the owner''s.';

-- The outbox trigger, after each statement on an enrolled table (enable_events):
-- one event per changed row that an enabled endpoint of its tenant wants, and
-- a delivery per such endpoint; one send job per endpoint per transaction.
-- Arguments: area, entity, the store column (or ''), the key columns.
-- A retail row tombstoned (deleted_at set) is a `deleted` event. A change a
-- store's own sync made (retail.sync sets retail.sync_store) is not sent to the
-- endpoints of that store. Definer: the outbox is no caller's to write.
create function authhub_private.tg__events() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  area text := tg_argv[0];
  entity_name text := tg_argv[1];
  store_column text := nullif(tg_argv[2], '');
  key_columns text[] := tg_argv[3:];
  kind text := case tg_op when 'INSERT' then 'created' when 'DELETE' then 'deleted' else 'updated' end;
  by_sync boolean := nullif(pg_catalog.current_setting('retail.sync_store', true), '') is not null;
  wanted boolean;
  changed jsonb[];
  targets_found text[];
  queued text := coalesce(pg_catalog.current_setting('authhub.events_queued', true), '');
  target text;
begin
  -- Most tenants register no endpoint: then this is one index probe.
  if tg_op = 'DELETE' then
    select exists (select 1 from old_rows o join authhub.event_endpoints e on e.tenant_id = o.tenant_id and e.enabled) into wanted;
    if wanted then select array_agg(to_jsonb(o)) into changed from old_rows o; end if;
  else
    select exists (select 1 from new_rows n join authhub.event_endpoints e on e.tenant_id = n.tenant_id and e.enabled) into wanted;
    if wanted then select array_agg(to_jsonb(n)) into changed from new_rows n; end if;
  end if;
  if not wanted or changed is null then
    return null;
  end if;

  with source as (
    select x.r, (x.r ->> 'tenant_id')::uuid as tenant_id,
           case when store_column is null then null else (x.r ->> store_column)::uuid end as store_id,
           entity_name || ':' || (select string_agg(x.r ->> k.col, ':' order by k.ord) from unnest(key_columns) with ordinality k (col, ord)) as entity,
           area || '.' || entity_name || '.' || case when kind = 'updated' and x.r ->> 'deleted_at' is not null then 'deleted' else kind end as type
    from unnest(changed) x (r)
  ), targets as (
    select s.tenant_id, s.entity, e.id as endpoint_id
    from source s
    join authhub.event_endpoints e on e.tenant_id = s.tenant_id and e.enabled
    where (e.store_id is null or (e.store_id = s.store_id and not by_sync))
      and authhub_private.event_type_matches(s.type, e.event_types)
  ), picked as materialized (
    select s.*, gen_random_uuid() as event_id, nextval('authhub_private.event_seq') as seq
    from source s
    where exists (select 1 from targets t where t.tenant_id = s.tenant_id and t.entity = s.entity)
  ), stored as (
    insert into authhub.events (tenant_id, id, seq, type, entity, store_id, payload)
    select p.tenant_id, p.event_id, p.seq, p.type, p.entity, p.store_id,
           jsonb_build_object('id', p.event_id, 'type', p.type, 'tenantId', p.tenant_id, 'occurredAt', now(),
                              'data', authhub_private.event_data(p.r), 'actor', authhub_private.event_actor(),
                              'traceId', authhub.current_trace_id())
    from picked p
    returning 1
  ), delivered as (
    insert into authhub.event_deliveries (tenant_id, endpoint_id, event_id, seq, event_type, entity)
    select t.tenant_id, t.endpoint_id, p.event_id, p.seq, p.type, p.entity
    from targets t join picked p on p.tenant_id = t.tenant_id and p.entity = t.entity
    returning tenant_id, endpoint_id
  )
  -- (stored runs whether or not it is read: a data-modifying WITH always does.)
  select array_agg(distinct d.tenant_id::text || '/' || d.endpoint_id::text) into targets_found from delivered d;

  -- One send per endpoint per transaction: it runs after the commit and finds every delivery of it.
  foreach target in array coalesce(targets_found, '{}') loop
    if position(target in queued) = 0 then
      perform authhub_private.queue_event_delivery(split_part(target, '/', 1)::uuid, split_part(target, '/', 2)::uuid, null);
      queued := queued || target || ',';
    end if;
  end loop;
  perform pg_catalog.set_config('authhub.events_queued', queued, true);
  return null;
end;
$$;
comment on function authhub_private.tg__events() is 'The outbox: writes the events (and deliveries) of a statement''s changed rows for the endpoints that want them, and queues their sending.';

-- Enrols a table in the outbox (idempotent): its primary key, less tenant_id,
-- names the entity whose events are kept in order.
create function authhub_private.enable_events(target regclass, area text, entity text, store_column text) returns void
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
  where i.indrelid = target and i.indisprimary and a.attname <> 'tenant_id';
  if keys is null then
    raise exception '% has no primary key besides tenant_id; events need one to order an entity''s changes', target;
  end if;
  args := format('%L, %L, %L', area, entity, coalesce(store_column, '')) || (select string_agg(format(', %L', k), '') from unnest(keys) k);
  foreach name in array array['_910_events_insert', '_910_events_update', '_910_events_delete'] loop
    execute format('drop trigger if exists %I on %s', name, target);
  end loop;
  execute format('create trigger _910_events_insert after insert on %s referencing new table as new_rows
                  for each statement execute function authhub_private.tg__events(%s)', target, args);
  execute format('create trigger _910_events_update after update on %s referencing new table as new_rows
                  for each statement execute function authhub_private.tg__events(%s)', target, args);
  execute format('create trigger _910_events_delete after delete on %s referencing old table as old_rows
                  for each statement execute function authhub_private.tg__events(%s)', target, args);
end;
$$;
comment on function authhub_private.enable_events(regclass, text, text, text) is 'Enrols a table in the outbox: its changes become <area>.<entity>.<created|updated|deleted> events.';

select authhub_private.enable_events('authhub.users', 'identity', 'user', null);
select authhub_private.enable_events('authhub.memberships', 'identity', 'membership', null);
select authhub_private.enable_events('authhub.role_assignments', 'identity', 'roleAssignment', null);
select authhub_private.enable_events('authhub.organizations', 'identity', 'organization', null);
select authhub_private.enable_events('retail.stores', 'retail', 'store', 'id');
select authhub_private.enable_events('retail.products', 'retail', 'product', 'store_id');
select authhub_private.enable_events('retail.variants', 'retail', 'variant', 'store_id');
select authhub_private.enable_events('retail.inventory_levels', 'retail', 'inventoryLevel', 'store_id');
select authhub_private.enable_events('retail.customers', 'retail', 'customer', 'store_id');
select authhub_private.enable_events('retail.orders', 'retail', 'order', 'store_id');
select authhub_private.enable_events('retail.order_lines', 'retail', 'orderLine', 'store_id');

create trigger _200_enabled before update of enabled on authhub.event_endpoints
  for each row execute function authhub_private.tg_event_endpoints__enabled();

--! split: 300-event-endpoint-create.sql
-- Creates an endpoint with its (server-encrypted) secret: tenant admins in their
-- tenant, the operator (CLI, as the owner) in any. The URL's scheme and address
-- rules are the server's (they depend on NODE_ENV); the table checks the shape.
create function authhub_private.create_event_endpoint(url text, event_types text[], description text, store_id uuid, secret_encrypted text, tenant_id uuid default null)
  returns authhub.event_endpoints
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  operator boolean := authhub_private.is_operator();
  t_id uuid := case when operator then create_event_endpoint.tenant_id else authhub.current_tenant_id() end;
  created authhub.event_endpoints;
begin
  if t_id is null or (not operator and not coalesce(authhub_private.is_tenant_admin(), false))
     or (not operator and create_event_endpoint.tenant_id is not null and create_event_endpoint.tenant_id <> t_id) then
    raise exception 'Event endpoints are managed by tenant admins.' using errcode = 'AH403';
  end if;
  if create_event_endpoint.store_id is not null
     and not exists (select 1 from retail.stores s where s.tenant_id = t_id and s.id = create_event_endpoint.store_id) then
    raise exception 'No such store.' using errcode = 'AH422', column = 'store_id';
  end if;
  insert into authhub.event_endpoints (tenant_id, url, event_types, description, store_id)
  values (t_id, create_event_endpoint.url, coalesce(create_event_endpoint.event_types, '{*}'), create_event_endpoint.description, create_event_endpoint.store_id)
  returning * into created;
  insert into authhub_private.event_endpoint_secrets (tenant_id, endpoint_id, secret_encrypted)
  values (t_id, created.id, create_event_endpoint.secret_encrypted);
  return created;
end;
$$;
comment on function authhub_private.create_event_endpoint(text, text[], text, uuid, text, uuid) is
  'Creates an event endpoint and stores its encrypted secret: tenant admins in their tenant, the operator in any. Definer: the secrets table is private.';
grant execute on function authhub_private.create_event_endpoint(text, text[], text, uuid, text, uuid) to authhub_user;

--! split: 400-event-delivery.sql
-- Sending (the worker's event_deliveries__send, as authhub_worker, which holds
-- no table rights: these definer functions are its whole access). Retries back
-- off 5 s, 15 s, 45 s, … (×3, at most 6 h); a delivery still refused 3 days
-- after its event is failed, and the entity's next event goes. An endpoint
-- whose every attempt has failed for 3 days is disabled, with the reason.

create function authhub_private.event_backoff(attempts integer) returns interval
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$
  select least(interval '5 seconds' * power(3, least(greatest(attempts, 1) - 1, 10)), interval '6 hours')
$$;
comment on function authhub_private.event_backoff(integer) is 'The wait before the next attempt after `attempts` failed ones: 5 s × 3^(n-1), at most 6 h.';

-- Takes up to max_rows deliveries to send now: of each entity only the oldest
-- pending one (its head), if it is due and no other worker holds it; each is
-- leased for a minute (longer than a request may take) and counted as an
-- attempt. Nothing for a disabled endpoint or a suspended tenant.
create function authhub_private.claim_event_deliveries(tenant_id uuid, endpoint_id uuid, max_rows integer)
  returns table (event_id uuid, attempt integer, url text, secret_encrypted text, payload jsonb)
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
begin
  if not exists (select 1 from authhub.event_endpoints e join authhub.tenants t on t.id = e.tenant_id
                 where e.tenant_id = claim_event_deliveries.tenant_id and e.id = claim_event_deliveries.endpoint_id
                   and e.enabled and t.status = 'active') then
    return;
  end if;
  return query
  with heads as (
    select distinct on (d.entity) d.event_id, d.seq, d.next_attempt_at, d.leased_until
    from authhub.event_deliveries d
    where d.tenant_id = claim_event_deliveries.tenant_id and d.endpoint_id = claim_event_deliveries.endpoint_id and d.state = 'pending'
    order by d.entity, d.seq
  ), due as (
    select h.event_id from heads h
    where h.next_attempt_at <= now() and (h.leased_until is null or h.leased_until <= clock_timestamp())
    order by h.seq
    limit claim_event_deliveries.max_rows
  ), claimed as (
    update authhub.event_deliveries d
    set leased_until = clock_timestamp() + interval '1 minute', attempts = d.attempts + 1, last_attempt_at = clock_timestamp()
    from due
    where d.tenant_id = claim_event_deliveries.tenant_id and d.endpoint_id = claim_event_deliveries.endpoint_id and d.event_id = due.event_id
      and d.state = 'pending' and (d.leased_until is null or d.leased_until <= clock_timestamp())
    returning d.event_id, d.attempts, d.seq
  )
  select c.event_id, c.attempts, e.url, s.secret_encrypted, ev.payload
  from claimed c
  join authhub.events ev on ev.tenant_id = claim_event_deliveries.tenant_id and ev.id = c.event_id
  join authhub.event_endpoints e on e.tenant_id = claim_event_deliveries.tenant_id and e.id = claim_event_deliveries.endpoint_id
  join authhub_private.event_endpoint_secrets s on s.tenant_id = e.tenant_id and s.endpoint_id = e.id
  order by c.seq;
end;
$$;
comment on function authhub_private.claim_event_deliveries(uuid, uuid, integer) is
  'The worker takes the deliveries it may send now (each entity''s oldest pending one, due, unleased). Definer: the worker role holds no table rights.';
grant execute on function authhub_private.claim_event_deliveries(uuid, uuid, integer) to authhub_worker;

-- Records an attempt's outcome: 'delivered' (2xx), 'retry' (due again after the
-- backoff, with a job queued for then) or 'failed' (refused for 3 days). A
-- failure also keeps the endpoint's failing_since, and disables an endpoint
-- failing for 3 days with the reason. When an entity's head is done (delivered
-- or failed) and the entity has a next event waiting, a send is queued for it:
-- send jobs do not poll for more work, so this is how the next one goes at once.
-- A send for the endpoint when the entity of a delivery that is done has a next event waiting.
create function authhub_private.queue_event_successor(done authhub.event_deliveries) returns void
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if exists (select 1 from authhub.event_deliveries n
             where n.tenant_id = done.tenant_id and n.endpoint_id = done.endpoint_id and n.entity = done.entity
               and n.state = 'pending' and n.seq > done.seq) then
    perform authhub_private.queue_event_delivery(done.tenant_id, done.endpoint_id, null);
  end if;
end;
$$;
comment on function authhub_private.queue_event_successor(authhub.event_deliveries) is
  'Queues a send when the entity of a finished delivery has a next event. Definer: graphile-worker''s tables are the owner''s.';

-- Whether an entity's next event waits behind a head another worker holds (a
-- send that found nothing to take asks, and looks again a moment later: the
-- holder's record may have missed an event committed while it finished).
create function authhub_private.event_deliveries_blocked(tenant_id uuid, endpoint_id uuid) returns boolean
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select exists (
    select 1 from authhub.event_deliveries h
    where h.tenant_id = event_deliveries_blocked.tenant_id and h.endpoint_id = event_deliveries_blocked.endpoint_id
      and h.state = 'pending' and h.leased_until > clock_timestamp()
      and exists (select 1 from authhub.event_deliveries n
                  where n.tenant_id = h.tenant_id and n.endpoint_id = h.endpoint_id and n.entity = h.entity
                    and n.state = 'pending' and n.seq > h.seq))
$$;
comment on function authhub_private.event_deliveries_blocked(uuid, uuid) is
  'Whether an endpoint has an event waiting behind one a worker holds. Definer: the worker role holds no table rights.';
grant execute on function authhub_private.event_deliveries_blocked(uuid, uuid) to authhub_worker;

create function authhub_private.record_event_attempt(tenant_id uuid, endpoint_id uuid, event_id uuid, status integer, error text)
  returns text
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  d authhub.event_deliveries;
  next_at timestamptz;
  outcome text;
  since timestamptz;
  reason text := left(coalesce(record_event_attempt.error, 'HTTP ' || record_event_attempt.status), 500);
begin
  select * into d from authhub.event_deliveries x
  where x.tenant_id = record_event_attempt.tenant_id and x.endpoint_id = record_event_attempt.endpoint_id and x.event_id = record_event_attempt.event_id
  for update;
  if d.event_id is null or d.state <> 'pending' then
    return coalesce(d.state, 'missing');
  end if;
  if record_event_attempt.status between 200 and 299 then
    update authhub.event_deliveries x
    set state = 'delivered', finished_at = now(), leased_until = null, last_status = record_event_attempt.status, last_error = null
    where x.tenant_id = d.tenant_id and x.endpoint_id = d.endpoint_id and x.event_id = d.event_id;
    update authhub.event_endpoints e set failing_since = null, last_success_at = now()
    where e.tenant_id = d.tenant_id and e.id = d.endpoint_id;
    perform authhub_private.queue_event_successor(d);
    return 'delivered';
  end if;

  next_at := now() + authhub_private.event_backoff(d.attempts);
  if next_at > d.created_at + interval '3 days' then
    update authhub.event_deliveries x
    set state = 'failed', finished_at = now(), leased_until = null, last_status = record_event_attempt.status, last_error = reason
    where x.tenant_id = d.tenant_id and x.endpoint_id = d.endpoint_id and x.event_id = d.event_id;
    outcome := 'failed';
    perform authhub_private.queue_event_successor(d);
  else
    update authhub.event_deliveries x
    set next_attempt_at = next_at, leased_until = null, last_status = record_event_attempt.status, last_error = reason
    where x.tenant_id = d.tenant_id and x.endpoint_id = d.endpoint_id and x.event_id = d.event_id;
    outcome := 'retry';
    perform authhub_private.queue_event_delivery(d.tenant_id, d.endpoint_id, next_at);
  end if;

  update authhub.event_endpoints e set failing_since = coalesce(e.failing_since, now())
  where e.tenant_id = d.tenant_id and e.id = d.endpoint_id
  returning e.failing_since into since;
  if since <= now() - interval '3 days' then
    update authhub.event_endpoints e
    set enabled = false, disabled_at = now(),
        disabled_reason = format('Disabled by AuthHub: every delivery has failed since %s (the last: %s).', to_char(since at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), reason)
    where e.tenant_id = d.tenant_id and e.id = d.endpoint_id and e.enabled;
  end if;
  return outcome;
end;
$$;
comment on function authhub_private.record_event_attempt(uuid, uuid, uuid, integer, text) is
  'The worker records what an attempt got; retries, failure after 3 days and disabling a failing endpoint are decided here. Definer: the worker role holds no table rights.';
grant execute on function authhub_private.record_event_attempt(uuid, uuid, uuid, integer, text) to authhub_worker;

-- The sweep (every minute): a send for each enabled endpoint with something due
-- that no job took (a worker died holding it, a job was lost).
create function authhub_private.sweep_event_deliveries() returns integer
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  select count(authhub_private.queue_event_delivery(x.tenant_id, x.endpoint_id, null))::integer
  from (
    select distinct d.tenant_id, d.endpoint_id
    from authhub.event_deliveries d
    join authhub.event_endpoints e on e.tenant_id = d.tenant_id and e.id = d.endpoint_id and e.enabled
    where d.state = 'pending' and d.next_attempt_at <= now() - interval '30 seconds'
      and (d.leased_until is null or d.leased_until <= now())
  ) x
$$;
comment on function authhub_private.sweep_event_deliveries() is 'Queues a send for every enabled endpoint with deliveries overdue. Definer: the worker role holds no table rights.';
grant execute on function authhub_private.sweep_event_deliveries() to authhub_worker;

-- Retention: finished deliveries are kept 30 days, then deleted a batch at a
-- time, with the events no delivery refers to any more.
create function authhub_private.purge_event_deliveries(max_rows integer) returns integer
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  with old as (
    select d.tenant_id, d.endpoint_id, d.event_id from authhub.event_deliveries d
    where d.state <> 'pending' and d.finished_at < now() - interval '30 days'
    limit purge_event_deliveries.max_rows
  ), gone as (
    delete from authhub.event_deliveries d using old
    where d.tenant_id = old.tenant_id and d.endpoint_id = old.endpoint_id and d.event_id = old.event_id
    returning d.tenant_id, d.event_id
  ), orphans as (
    delete from authhub.events ev using (select distinct tenant_id, event_id from gone) g
    where ev.tenant_id = g.tenant_id and ev.id = g.event_id
      and not exists (select 1 from authhub.event_deliveries d where d.tenant_id = g.tenant_id and d.event_id = g.event_id
                      and not (d.tenant_id, d.endpoint_id, d.event_id) in (select * from old))
    returning 1
  )
  select count(*)::integer from gone
$$;
comment on function authhub_private.purge_event_deliveries(integer) is 'Deletes finished deliveries older than 30 days and their events. Definer: the worker role holds no table rights.';
grant execute on function authhub_private.purge_event_deliveries(integer) to authhub_worker;
