--! Previous: sha1:a0a42af85f73c8040ba6d46b049c3c884d39d83e
--! Hash: sha1:325ce42ec9ab01149319c2973e8cda9ccdd1fd3d
--! Message: identity sync: webhook endpoints, inbox, clerk event application, reconciliation

--! split: 700-webhook-endpoints.sql
-- Identity sync from Clerk (issue 7, DESIGN.md §7). A webhook endpoint is a
-- row: a tenant's subscription to its Clerk instance's events, with its own
-- Svix signing secret (`whsec_…`, encrypted under the master key in
-- authhub_private, never shown again), the issuer its users sign in with, and
-- the mapping from Clerk organization roles to AuthHub membership levels.
-- Deliveries land in an inbox (authhub.webhook_deliveries) in the same
-- transaction as their job; graphile-worker jobs apply them in order per
-- entity, idempotently, as the worker role.

-- A role mapping: at most 20 Clerk roles (`org:…`), each to USER or ORG_ADMIN.
create function authhub_private.role_mapping_valid(mapping jsonb) returns boolean
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$
  select jsonb_typeof(mapping) = 'object'
     and (select count(*) from jsonb_object_keys(mapping)) <= 20
     and not exists (
       select 1 from jsonb_each(mapping) e
       where e.key !~ '^org:[a-z0-9_:-]{1,60}$' or e.value not in ('"USER"'::jsonb, '"ORG_ADMIN"'::jsonb))
$$;

-- The table's check runs as whoever writes the row (tenant admins too).
grant execute on function authhub_private.role_mapping_valid(jsonb) to authhub_user;

create table authhub.webhook_endpoints (
  tenant_id    uuid not null default authhub.current_tenant_id() references authhub.tenants (id) on delete cascade,
  id           uuid not null default gen_random_uuid(),
  provider     text not null default 'clerk' constraint webhook_endpoints_provider check (provider = 'clerk'),
  name         authhub.display_text not null,
  enabled      boolean not null default true,
  -- The Clerk instance's token issuer: the users it creates are bound to it
  -- (users.external_issuer), and it changes no user bound to another.
  issuer       authhub.issuer not null,
  -- Clerk organization role → AuthHub membership level.
  role_mapping jsonb not null default '{"org:admin": "ORG_ADMIN", "org:member": "USER"}'
    constraint webhook_endpoints_role_mapping check (authhub_private.role_mapping_valid(role_mapping)),
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  primary key (tenant_id, id)
);
alter table authhub.webhook_endpoints enable row level security;
alter table authhub.webhook_endpoints force row level security;
create trigger _100_timestamps before insert or update on authhub.webhook_endpoints
  for each row execute function authhub_private.tg__timestamps();
comment on table authhub.webhook_endpoints is
  E'@behavior -insert -delete\nIdentity-provider webhook endpoints (Clerk): created with createWebhookEndpoint (the signing secret is kept encrypted).';
comment on column authhub.webhook_endpoints.role_mapping is 'Clerk organization role (e.g. org:admin) → AuthHub membership level (USER or ORG_ADMIN).';

-- Tenant admins manage their tenant's endpoints; nobody else sees them.
create policy select_tenant_admin on authhub.webhook_endpoints for select to authhub_user
  using (tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin()));
create policy update_tenant_admin on authhub.webhook_endpoints for update to authhub_user
  using (tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin()))
  with check (tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin()));
create policy all_owner on authhub.webhook_endpoints for all to authhub_owner using (true) with check (true);
grant select on authhub.webhook_endpoints to authhub_user;
grant update (name, enabled, issuer, role_mapping) on authhub.webhook_endpoints to authhub_user;
select authhub_private.audit_table('authhub.webhook_endpoints', 'tenant_id', null);

create table authhub_private.webhook_secrets (
  tenant_id        uuid not null,
  endpoint_id      uuid not null,
  secret_encrypted text not null,
  -- The Clerk secret key (sk_…) for reconciliation, if any, encrypted under the master key.
  clerk_secret_key_encrypted text,
  created_at       timestamptz not null default now(),
  primary key (tenant_id, endpoint_id),
  foreign key (tenant_id, endpoint_id) references authhub.webhook_endpoints (tenant_id, id) on delete cascade
);
alter table authhub_private.webhook_secrets enable row level security;
alter table authhub_private.webhook_secrets force row level security;
create policy all_owner on authhub_private.webhook_secrets for all to authhub_owner using (true) with check (true);
insert into authhub_private.audit_secret_columns (table_name, column_name) values
  ('webhook_secrets', 'secret_encrypted'), ('webhook_secrets', 'clerk_secret_key_encrypted');
select authhub_private.audit_table('authhub_private.webhook_secrets', 'tenant_id', null);

-- Creates an endpoint with its (server-encrypted) secret: tenant admins in their
-- tenant, the operator (CLI, as the owner) in any.
create function authhub_private.create_webhook_endpoint(name text, issuer text, role_mapping jsonb, secret_encrypted text, tenant_id uuid default null)
  returns authhub.webhook_endpoints
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  operator boolean := authhub_private.is_operator();
  t_id uuid := case when operator then create_webhook_endpoint.tenant_id else authhub.current_tenant_id() end;
  created authhub.webhook_endpoints;
begin
  if t_id is null or (not operator and not coalesce(authhub_private.is_tenant_admin(), false))
     or (not operator and create_webhook_endpoint.tenant_id is not null and create_webhook_endpoint.tenant_id <> t_id) then
    raise exception 'Webhook endpoints are managed by tenant admins.' using errcode = 'AH403';
  end if;
  insert into authhub.webhook_endpoints (tenant_id, name, issuer, role_mapping)
  values (t_id, create_webhook_endpoint.name, create_webhook_endpoint.issuer,
          coalesce(create_webhook_endpoint.role_mapping, '{"org:admin": "ORG_ADMIN", "org:member": "USER"}'))
  returning * into created;
  insert into authhub_private.webhook_secrets (tenant_id, endpoint_id, secret_encrypted)
  values (t_id, created.id, create_webhook_endpoint.secret_encrypted);
  return created;
end;
$$;
grant execute on function authhub_private.create_webhook_endpoint(text, text, jsonb, text, uuid) to authhub_user;

-- The receiver's view of an endpoint: its tenant, whether it is enabled, and
-- its encrypted secret (the master key that opens it is the server's).
create function authhub_private.webhook_endpoint_for_delivery(endpoint_id uuid)
  returns table (tenant_id uuid, enabled boolean, secret_encrypted text)
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select e.tenant_id, e.enabled and t.status = 'active', s.secret_encrypted
  from authhub.webhook_endpoints e
  join authhub.tenants t on t.id = e.tenant_id
  join authhub_private.webhook_secrets s on s.tenant_id = e.tenant_id and s.endpoint_id = e.id
  where e.id = webhook_endpoint_for_delivery.endpoint_id
$$;
grant execute on function authhub_private.webhook_endpoint_for_delivery(uuid) to authhub_authenticator;

--! split: 710-webhook-inbox.sql
-- The inbox: every delivery, keyed by (endpoint, svix-id), with its state.
-- A redelivery of the same id changes nothing. Tenant admins read it (it holds
-- what the identity provider sent about their users).
create table authhub.webhook_deliveries (
  tenant_id    uuid not null references authhub.tenants (id) on delete cascade,
  endpoint_id  uuid not null,
  svix_id      text not null constraint webhook_deliveries_svix_id_format check (svix_id ~ '^[A-Za-z0-9_.:-]{1,100}$'),
  event_type   text,
  -- The entity the event is about (`user:…`, `organization:…`, `membership:…:…`): its queue.
  entity       text,
  -- The body as received (valid JSON or not: a malformed one is recorded, and failed).
  body         text not null,
  state        text not null default 'pending' constraint webhook_deliveries_state check (state in ('pending', 'done', 'skipped', 'failed')),
  attempts     integer not null default 0,
  -- For a membership that arrived before its organization or user: the entities it waits for.
  waiting_for  text[],
  last_error   text,
  -- When it is (next) to be tried: on arrival, after a backoff when it must wait or
  -- failed for a passing reason, at once when what it waits for lands.
  due_at       timestamptz not null default now(),
  received_at  timestamptz not null default now(),
  processed_at timestamptz,
  primary key (tenant_id, endpoint_id, svix_id),
  foreign key (tenant_id, endpoint_id) references authhub.webhook_endpoints (tenant_id, id) on delete cascade
);
create index webhook_deliveries_received on authhub.webhook_deliveries (tenant_id, received_at);
-- What is left to do, and nothing else: an endpoint's drain takes what is due
-- from here, and an arriving user or organization finds what waits for it,
-- without reading the endpoint's whole inbox.
create index webhook_deliveries_pending on authhub.webhook_deliveries (tenant_id, endpoint_id, due_at) where state = 'pending';
-- The sweep: endpoints with deliveries overdue, across tenants.
create index webhook_deliveries_due on authhub.webhook_deliveries (due_at) where state = 'pending';
-- The retention job's scan: finished deliveries by age, across tenants.
create index webhook_deliveries_finished on authhub.webhook_deliveries (processed_at) where state <> 'pending';
alter table authhub.webhook_deliveries enable row level security;
alter table authhub.webhook_deliveries force row level security;
create policy select_tenant_admin on authhub.webhook_deliveries for select to authhub_user
  using (tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin()));
create policy all_owner on authhub.webhook_deliveries for all to authhub_owner using (true) with check (true);
grant select on authhub.webhook_deliveries to authhub_user;
comment on table authhub.webhook_deliveries is E'@behavior -insert -update -delete\nEvery webhook delivery and what became of it.';
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('authhub.webhook_deliveries', 'The inbox is itself the record of deliveries; the changes they make are audited as system:clerk-sync.');

-- Queues an endpoint's drain: one clerk_event__apply job per endpoint (its
-- job key), which applies what is due in batches; an arrival while one waits
-- joins it (graphile-worker updates the waiting job; a drain already running
-- gets a successor). Order is kept in SQL (one drain at a time per endpoint,
-- and clerk_apply's entity lock for direct callers), not by job queues, so a
-- worker that dies holding a job stalls nothing: the next drain, or the sweep,
-- takes its deliveries. A retry later has a job of its own, whose first time
-- stands (the sweep catches up within a minute or two if a later drain needed
-- an earlier one).
create function authhub_private.queue_clerk_drain(tenant_id uuid, endpoint_id uuid, run_at timestamptz default null) returns void
  -- plpgsql: graphile-worker's schema is installed after the migrations.
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  later boolean := coalesce(queue_clerk_drain.run_at > clock_timestamp(), false);
begin
  perform graphile_worker.add_job(
    'clerk_event__apply',
    json_build_object('tenant_id', queue_clerk_drain.tenant_id, 'endpoint_id', queue_clerk_drain.endpoint_id),
    run_at => queue_clerk_drain.run_at,
    max_attempts => 12,
    -- Later (a retry): its own key, keeping the time first asked for; now: the drain's.
    job_key => case when later then 'clerk-later:' else 'clerk:' end || queue_clerk_drain.endpoint_id,
    job_key_mode => case when later then 'preserve_run_at' else 'replace' end);
end;
$$;

-- Stores a delivery and queues its endpoint's drain, in the caller's
-- transaction. False when this id was delivered before (nothing changes). An
-- unknown or disabled endpoint, or one of a suspended tenant, takes nothing.
-- Called by accept_webhook (the receiver) and accept_reconciled_delivery (the
-- reconciliation job) only; granted to no one.
create function authhub_private.store_delivery(endpoint_id uuid, svix_id text, event_type text, entity text, body text)
  returns boolean
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  t_id uuid;
  stored boolean;
begin
  select e.tenant_id into t_id
  from authhub.webhook_endpoints e join authhub.tenants t on t.id = e.tenant_id
  where e.id = store_delivery.endpoint_id and e.enabled and t.status = 'active';
  if t_id is null then
    raise exception 'No such endpoint.' using errcode = 'AH404';
  end if;
  insert into authhub.webhook_deliveries (tenant_id, endpoint_id, svix_id, event_type, entity, body)
  values (t_id, store_delivery.endpoint_id, store_delivery.svix_id, store_delivery.event_type, store_delivery.entity, store_delivery.body)
  on conflict do nothing
  returning true into stored;
  if stored is null then
    return false;
  end if;
  perform authhub_private.queue_clerk_drain(t_id, store_delivery.endpoint_id);
  return true;
end;
$$;

-- The receiver's: a verified delivery, under a sender's id (`reconcile:` ids are
-- the reconciliation job's).
create function authhub_private.accept_webhook(endpoint_id uuid, svix_id text, event_type text, entity text, body text)
  returns boolean
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if accept_webhook.svix_id like 'reconcile:%' then
    raise exception 'Reserved delivery id.' using errcode = 'AH403';
  end if;
  return authhub_private.store_delivery(endpoint_id, svix_id, event_type, entity, body);
end;
$$;
grant execute on function authhub_private.accept_webhook(uuid, text, text, text, text) to authhub_authenticator;

-- The reconciliation job's: a change it found, under an id of its own.
create function authhub_private.accept_reconciled_delivery(endpoint_id uuid, svix_id text, event_type text, entity text, body text)
  returns boolean
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if accept_reconciled_delivery.svix_id not like 'reconcile:%' then
    raise exception 'Reconciliation''s ids begin with reconcile:.' using errcode = 'AH422';
  end if;
  return authhub_private.store_delivery(endpoint_id, svix_id, event_type, entity, body);
end;
$$;
grant execute on function authhub_private.accept_reconciled_delivery(uuid, text, text, text, text) to authhub_worker;

-- Retention: deliveries that are finished (done, skipped, failed) are kept 30
-- days, then deleted by the worker's webhook_deliveries__purge job, a batch at a
-- time; pending ones are kept until they finish.
create function authhub_private.purge_webhook_deliveries(max_rows integer) returns integer
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  with old as (
    select w.tenant_id, w.endpoint_id, w.svix_id from authhub.webhook_deliveries w
    where w.state <> 'pending' and w.processed_at < now() - interval '30 days'
    limit purge_webhook_deliveries.max_rows
  ), gone as (
    delete from authhub.webhook_deliveries w using old
    where w.tenant_id = old.tenant_id and w.endpoint_id = old.endpoint_id and w.svix_id = old.svix_id
    returning 1
  )
  select count(*)::integer from gone
$$;
grant execute on function authhub_private.purge_webhook_deliveries(integer) to authhub_worker;

--! split: 720-clerk-sync.sql
-- Applying Clerk's events (the worker's clerk_event__apply job, as
-- authhub_worker). Organizations gain the identity provider's id, as users
-- have. Per entity, the newest version applied and any deletion are
-- remembered, so an older event never overwrites a newer one and a late update
-- cannot resurrect a deleted entity.
alter table authhub.organizations add column external_id authhub.external_id;
alter table authhub.organizations add constraint organizations_external_id_key unique (tenant_id, external_id);
comment on column authhub.organizations.external_id is 'The identity provider''s id for this organization (e.g. a Clerk org_… id), unique within the tenant.';

create table authhub_private.clerk_entities (
  tenant_id   uuid not null,
  endpoint_id uuid not null,
  -- `user:<id>`, `organization:<id>`, `membership:<org id>:<user id>`
  entity      text not null,
  -- The newest event applied (Clerk's updated_at, or the event's timestamp), epoch ms.
  version     bigint not null,
  deleted_at  timestamptz,
  primary key (tenant_id, endpoint_id, entity),
  foreign key (tenant_id, endpoint_id) references authhub.webhook_endpoints (tenant_id, id) on delete cascade
);
alter table authhub_private.clerk_entities enable row level security;
alter table authhub_private.clerk_entities force row level security;
create policy all_owner on authhub_private.clerk_entities for all to authhub_owner using (true) with check (true);
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('authhub_private.clerk_entities', 'Sync bookkeeping (versions, tombstones); the changes it guards are audited.');

create function authhub_private.clerk_id(id text) returns text
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$
  select case when id ~ '^[A-Za-z0-9_-]{1,100}$' then id else '?' end
$$;

-- The entity an event is about, by the receiver's rules (server/webhooks/clerk.ts).
create function authhub_private.clerk_entity_of(kind text, data jsonb) returns text
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$
  select case
    when kind like 'user.%' then 'user:' || authhub_private.clerk_id(data ->> 'id')
    when kind like 'organizationMembership.%' then
      'membership:' || authhub_private.clerk_id(data #>> '{organization,id}') || ':' || authhub_private.clerk_id(data #>> '{public_user_data,user_id}')
    when kind like 'organization.%' then 'organization:' || authhub_private.clerk_id(data ->> 'id')
    else 'other'
  end
$$;

-- How long a delivery waits before its next try: 2^attempts seconds, at most an hour.
create function authhub_private.clerk_backoff(attempts integer) returns interval
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$
  select least(make_interval(secs => power(2, least(attempts, 12))), interval '1 hour')
$$;

-- Applies one delivery. Outcomes: 'done', 'skipped' (older than what is
-- stored, or about a deleted entity), 'retry' (its parent has not arrived: due
-- again after a backoff, or as soon as the parent lands; it fails after 12
-- tries), or 'failed: <reason>' (permanent: recorded, never retried). An
-- entity's deliveries apply one at a time (a transaction lock on the entity),
-- whichever drain holds them. Runs as the owner for the worker role (which
-- holds no table rights), naming the delivery as the actor.
create function authhub_private.clerk_apply(tenant_id uuid, endpoint_id uuid, svix_id text) returns text
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  d authhub.webhook_deliveries;
  ep authhub.webhook_endpoints;
  event jsonb;
  data jsonb;
  kind text;
  version bigint;
  known authhub_private.clerk_entities;
  outcome text;
  email text;
  display text;
  -- Not named like any column: with use_column a clash would silently read the column.
  the_org uuid;
  the_user uuid;
  lvl authhub.role_level;
  woke boolean;
begin
  select * into d from authhub.webhook_deliveries w
  where w.tenant_id = clerk_apply.tenant_id and w.endpoint_id = clerk_apply.endpoint_id and w.svix_id = clerk_apply.svix_id
  for update;
  if d.svix_id is null or d.state <> 'pending' then
    return coalesce(d.state, 'missing');
  end if;
  perform pg_advisory_xact_lock(hashtextextended(d.endpoint_id::text || ':' || coalesce(d.entity, ''), 0));
  select * into ep from authhub.webhook_endpoints e where e.tenant_id = d.tenant_id and e.id = d.endpoint_id;
  perform set_config('authhub.actor', 'system:clerk-sync:' || d.svix_id, true);
  update authhub.webhook_deliveries w set attempts = w.attempts + 1
  where w.tenant_id = d.tenant_id and w.endpoint_id = d.endpoint_id and w.svix_id = d.svix_id;

  begin
    event := d.body::jsonb;
  exception when others then
    outcome := 'failed: the body is not JSON';
  end;
  if outcome is null and (jsonb_typeof(event) <> 'object' or jsonb_typeof(event -> 'data') <> 'object' or event ->> 'type' is null) then
    outcome := 'failed: not a Clerk event (type and data expected)';
  end if;

  -- A disabled endpoint (the switch after a leaked secret) or a suspended tenant applies nothing more.
  if outcome is null and (not ep.enabled or not exists (select 1 from authhub.tenants t where t.id = d.tenant_id and t.status = 'active')) then
    outcome := 'skipped';
  end if;
  if outcome is null then
    data := event -> 'data';
    kind := event ->> 'type';
    -- The entity, read again from the parsed event: it must be the one the delivery was queued under.
    if authhub_private.clerk_entity_of(kind, data) is distinct from d.entity or d.entity like '%?%' then
      outcome := 'failed: the event does not name its entity consistently';
    -- Versions: Clerk's updated_at where the object has one, else the event's timestamp (epoch ms),
    -- never more than five minutes ahead (a far-future version would freeze the entity).
    elsif coalesce(data ->> 'updated_at', event ->> 'timestamp', '0') !~ '^[0-9]{1,15}$' then
      outcome := 'failed: updated_at and timestamp must be epoch milliseconds';
    else
      version := coalesce(data ->> 'updated_at', event ->> 'timestamp', '0')::bigint;
      if version > (extract(epoch from now()) * 1000)::bigint + 300000 then
        outcome := 'failed: the event is dated in the future';
      end if;
    end if;
  end if;
  if outcome is null then
    select * into known from authhub_private.clerk_entities c
    where c.tenant_id = d.tenant_id and c.endpoint_id = d.endpoint_id and c.entity = d.entity
    for update;
    -- A deleted user or organization stays deleted; a membership may begin again with a newer event.
    if (known.deleted_at is not null and d.entity not like 'membership:%')
       or (known.version is not null and known.version > version)
       or (known.version is not null and known.version = version and kind not like '%.deleted') then
      outcome := 'skipped';
    end if;
  end if;

  if outcome is null then
    begin
      if kind in ('user.created', 'user.updated') then
        select e ->> 'email_address' into email from jsonb_array_elements(data -> 'email_addresses') e
        where e ->> 'id' = data ->> 'primary_email_address_id';
        email := coalesce(email, data #>> '{email_addresses,0,email_address}');
        display := nullif(trim(coalesce(data ->> 'first_name', '') || ' ' || coalesce(data ->> 'last_name', '')), '');
        if data ->> 'id' is null or email is null then
          outcome := 'failed: a user event needs id and an e-mail address';
        else
          -- Only users this endpoint's provider speaks for, at USER level: an admin's
          -- identity, or another provider's user, is AuthHub's to manage, not a webhook's.
          insert into authhub.users as u (tenant_id, email, display_name, external_id, external_issuer)
          values (d.tenant_id, email, display, data ->> 'id', ep.issuer)
          on conflict (tenant_id, external_id) do update
            set email = excluded.email, display_name = excluded.display_name
            where u.external_issuer is not distinct from ep.issuer and u.level = 'USER'
          returning u.id into the_user;
          outcome := case when the_user is null then 'failed: that user is not this provider''s to change' else 'done' end;
        end if;
      elsif kind = 'user.deleted' then
        if exists (select 1 from authhub.users u where u.tenant_id = d.tenant_id and u.external_id = data ->> 'id'
                   and (u.external_issuer is distinct from ep.issuer or u.level <> 'USER')) then
          outcome := 'failed: that user is not this provider''s to delete';
        else
          delete from authhub.users u where u.tenant_id = d.tenant_id and u.external_id = data ->> 'id';
          outcome := 'done';
        end if;
      elsif kind like 'organization.%' and exists (
              select 1 from authhub.organizations o where o.tenant_id = d.tenant_id and o.external_id = data ->> 'id')
            and not exists (
              select 1 from authhub_private.clerk_entities c
              where c.tenant_id = d.tenant_id and c.endpoint_id = d.endpoint_id and c.entity = d.entity) then
        -- An organization another endpoint (or an admin) made is not this one's.
        outcome := 'failed: that organization is not this endpoint''s to change';
      elsif kind in ('organization.created', 'organization.updated') then
        if data ->> 'id' is null or data ->> 'slug' is null or data ->> 'name' is null then
          outcome := 'failed: an organization event needs id, slug and name';
        else
          insert into authhub.organizations as o (tenant_id, slug, name, external_id)
          values (d.tenant_id, data ->> 'slug', data ->> 'name', data ->> 'id')
          on conflict (tenant_id, external_id) do update set slug = excluded.slug, name = excluded.name;
          outcome := 'done';
        end if;
      elsif kind = 'organization.deleted' then
        delete from authhub.organizations o where o.tenant_id = d.tenant_id and o.external_id = data ->> 'id';
        outcome := 'done';
      elsif kind in ('organizationMembership.created', 'organizationMembership.updated', 'organizationMembership.deleted') then
        -- Only in organizations this endpoint made, for USER-level users its provider speaks for.
        select o.id into the_org from authhub.organizations o
        where o.tenant_id = d.tenant_id and o.external_id = data #>> '{organization,id}'
          and exists (select 1 from authhub_private.clerk_entities c
                      where c.tenant_id = d.tenant_id and c.endpoint_id = d.endpoint_id
                        and c.entity = 'organization:' || (data #>> '{organization,id}') and c.deleted_at is null);
        select u.id into the_user from authhub.users u
        where u.tenant_id = d.tenant_id and u.external_id = data #>> '{public_user_data,user_id}'
          and u.external_issuer is not distinct from ep.issuer and u.level = 'USER';
        if (the_org is null and exists (select 1 from authhub.organizations o
                                       where o.tenant_id = d.tenant_id and o.external_id = data #>> '{organization,id}'))
           or (the_user is null and exists (select 1 from authhub.users u
                                           where u.tenant_id = d.tenant_id and u.external_id = data #>> '{public_user_data,user_id}')) then
          -- They exist, but are not this endpoint's to manage (another provider's, or an admin).
          outcome := 'failed: that organization or user is not this endpoint''s to manage';
        elsif kind = 'organizationMembership.deleted' then
          delete from authhub.memberships m where m.tenant_id = d.tenant_id and m.organization_id = the_org and m.user_id = the_user;
          outcome := 'done';
        elsif the_org is null or the_user is null then
          -- Its organization or user has not arrived yet: again later.
          outcome := 'retry';
        else
          -- A role the mapping does not name grants nothing beyond membership: USER.
          lvl := coalesce((ep.role_mapping ->> (data ->> 'role'))::authhub.role_level, 'USER');
          insert into authhub.memberships as m (tenant_id, organization_id, user_id, level)
          values (d.tenant_id, the_org, the_user, lvl)
          on conflict (tenant_id, organization_id, user_id) do update set level = excluded.level;
          outcome := 'done';
        end if;
      else
        outcome := format('failed: unknown event type %s', kind);
      end if;
    exception
      -- The data breaks a rule (a slug taken, the last tenant admin…): permanent.
      when sqlstate '23505' or sqlstate '23514' or sqlstate '23502' or sqlstate '23503' or sqlstate '23001'
           or sqlstate '22000' or sqlstate '22P02' or sqlstate '22001' or sqlstate 'AH409' or sqlstate 'AH422' then
        outcome := 'failed: ' || sqlerrm;
    end;
  end if;

  if outcome = 'retry' and d.attempts + 1 >= 12 then
    outcome := 'failed: its organization or user never arrived';
  elsif outcome = 'retry' then
    update authhub.webhook_deliveries w
    set last_error = 'waiting for its organization or user',
        due_at = now() + authhub_private.clerk_backoff(d.attempts + 1),
        waiting_for = array_remove(array[
          case when the_org is null then 'organization:' || (data #>> '{organization,id}') end,
          case when the_user is null then 'user:' || (data #>> '{public_user_data,user_id}') end], null)
    where w.tenant_id = d.tenant_id and w.endpoint_id = d.endpoint_id and w.svix_id = d.svix_id;
    return outcome;
  end if;
  -- A user or organization arrived: memberships that were waiting for it are due now
  -- (one another drain holds will be tried again after its backoff).
  if outcome = 'done' and kind in ('user.created', 'user.updated', 'organization.created', 'organization.updated') then
    with waiting as (
      select w.tenant_id, w.endpoint_id, w.svix_id from authhub.webhook_deliveries w
      where w.tenant_id = d.tenant_id and w.endpoint_id = d.endpoint_id and w.state = 'pending'
        and w.waiting_for is not null and w.waiting_for @> array[d.entity] and w.svix_id <> d.svix_id
      for update skip locked
    ), woken as (
      update authhub.webhook_deliveries w set due_at = now()
      from waiting
      where w.tenant_id = waiting.tenant_id and w.endpoint_id = waiting.endpoint_id and w.svix_id = waiting.svix_id
      returning 1
    )
    select count(*) > 0 into woke from woken;
    if woke then
      perform authhub_private.queue_clerk_drain(d.tenant_id, d.endpoint_id);
    end if;
  end if;
  if outcome = 'done' then
    insert into authhub_private.clerk_entities as c (tenant_id, endpoint_id, entity, version, deleted_at)
    -- Deletions are marked (users and organizations for good; a membership until a newer event).
    values (d.tenant_id, d.endpoint_id, d.entity, version, case when kind like '%.deleted' then now() end)
    on conflict (tenant_id, endpoint_id, entity) do update
      set version = greatest(c.version, excluded.version),
          deleted_at = case when kind like '%.deleted' then coalesce(c.deleted_at, now())
                            when d.entity like 'membership:%' then null
                            else c.deleted_at end;
    -- A user's or organization's memberships went with it.
    if kind in ('user.deleted', 'organization.deleted') then
      update authhub_private.clerk_entities c set deleted_at = coalesce(c.deleted_at, now())
      where c.tenant_id = d.tenant_id and c.endpoint_id = d.endpoint_id and c.entity like 'membership:%'
        and ((kind = 'organization.deleted' and left(c.entity, length('membership:' || (data ->> 'id') || ':')) = 'membership:' || (data ->> 'id') || ':')
             or (kind = 'user.deleted' and right(c.entity, length(':' || (data ->> 'id'))) = ':' || (data ->> 'id')));
    end if;
  end if;
  update authhub.webhook_deliveries w
  set state = case when outcome like 'failed%' then 'failed' else outcome end,
      last_error = case when outcome like 'failed%' then substr(outcome, 9) end,
      processed_at = clock_timestamp()
  where w.tenant_id = d.tenant_id and w.endpoint_id = d.endpoint_id and w.svix_id = d.svix_id;
  return outcome;
end;
$$;
grant execute on function authhub_private.clerk_apply(uuid, uuid, text) to authhub_worker;

-- An endpoint's drain (the clerk_event__apply job): one at a time per endpoint
-- (a transaction lock, released if its worker dies; a drain queued meanwhile
-- waits, then takes everything that arrived in between, so a burst becomes a
-- few batches), it applies up to max_rows of the due deliveries, users before
-- organizations before memberships, each entity's in the order received, each
-- in a subtransaction of its own. A delivery that raises an unexpected error (a
-- deadlock, say) is undone alone and tried again after a backoff; a twelfth
-- such failure is final. Queues what remains: at once if the batch was full,
-- else at the earliest time a delivery is due again.
create function authhub_private.clerk_drain(tenant_id uuid, endpoint_id uuid, max_rows integer)
  returns table (svix_id text, outcome text)
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  item record;
  claimed integer := 0;
  next_due timestamptz;
begin
  perform pg_advisory_xact_lock(hashtextextended('clerk-drain:' || clerk_drain.endpoint_id::text, 0));
  for item in
    with due as (
      select w.svix_id, w.entity, w.received_at from authhub.webhook_deliveries w
      where w.tenant_id = clerk_drain.tenant_id and w.endpoint_id = clerk_drain.endpoint_id
        -- The clock, not the transaction's start: what arrived while this drain waited is due too.
        and w.state = 'pending' and w.due_at <= clock_timestamp()
      order by w.due_at
      limit clerk_drain.max_rows
      for update skip locked
    )
    select due.svix_id from due
    -- One order for every drain, so two never wait on each other's entities.
    order by case split_part(due.entity, ':', 1) when 'user' then 0 when 'organization' then 1 else 2 end,
             due.entity, due.received_at, due.svix_id
  loop
    claimed := claimed + 1;
    svix_id := item.svix_id;
    begin
      outcome := authhub_private.clerk_apply(clerk_drain.tenant_id, clerk_drain.endpoint_id, item.svix_id);
    exception when others then
      -- Undone alone. The reason is kept as a code only: the inbox is read by tenant admins.
      update authhub.webhook_deliveries w
      set attempts = w.attempts + 1,
          state = case when w.attempts + 1 >= 12 then 'failed' else 'pending' end,
          processed_at = case when w.attempts + 1 >= 12 then now() end,
          last_error = format('a temporary failure (SQLSTATE %s)%s', sqlstate, case when w.attempts + 1 >= 12 then ', 12 times' else '; tried again later' end),
          due_at = now() + authhub_private.clerk_backoff(w.attempts + 1)
      where w.tenant_id = clerk_drain.tenant_id and w.endpoint_id = clerk_drain.endpoint_id and w.svix_id = item.svix_id;
      outcome := case when (select w.state from authhub.webhook_deliveries w
                            where w.tenant_id = clerk_drain.tenant_id and w.endpoint_id = clerk_drain.endpoint_id
                              and w.svix_id = item.svix_id) = 'failed'
                      then 'failed: a temporary failure, 12 times' else 'retry' end;
    end;
    return next;
  end loop;
  if claimed >= max_rows then
    perform authhub_private.queue_clerk_drain(clerk_drain.tenant_id, clerk_drain.endpoint_id);
  else
    select min(w.due_at) into next_due from authhub.webhook_deliveries w
    where w.tenant_id = clerk_drain.tenant_id and w.endpoint_id = clerk_drain.endpoint_id and w.state = 'pending';
    if next_due is not null then
      perform authhub_private.queue_clerk_drain(clerk_drain.tenant_id, clerk_drain.endpoint_id, greatest(next_due, clock_timestamp()));
    end if;
  end if;
end;
$$;
grant execute on function authhub_private.clerk_drain(uuid, uuid, integer) to authhub_worker;

-- The sweep (clerk_deliveries__sweep, every minute): endpoints with deliveries
-- overdue by a minute (their drain was lost with a worker that died, say) are
-- drained again. Applying is idempotent, so a drain too many changes nothing.
create function authhub_private.sweep_clerk_deliveries() returns integer
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  with overdue as (
    select distinct w.tenant_id, w.endpoint_id from authhub.webhook_deliveries w
    where w.state = 'pending' and w.due_at < now() - interval '1 minute'
  )
  select count(*)::integer from overdue o, lateral (select authhub_private.queue_clerk_drain(o.tenant_id, o.endpoint_id)) q
$$;
grant execute on function authhub_private.sweep_clerk_deliveries() to authhub_worker;

--! split: 730-clerk-reconcile.sql
-- Reconciliation (issue 7): deliveries can be missed, so a scheduled job
-- (clerk__reconcile) reads Clerk's Backend API for every enabled endpoint that
-- was given a Clerk secret key, and turns what changed into deliveries of its
-- own (svix ids `reconcile:…`, which the receiver refuses from outside),
-- applied by the same job as webhooks. Where Clerk's API is, is the operator's
-- configuration (AUTHHUB_CLERK_API_URL), never a tenant's.


-- Sets (or clears) an endpoint's Clerk secret key: tenant admins of its tenant, or the operator.
create function authhub_private.set_webhook_clerk_key(endpoint_id uuid, clerk_secret_key_encrypted text) returns void
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  operator boolean := authhub_private.is_operator();
  e authhub.webhook_endpoints;
begin
  select * into e from authhub.webhook_endpoints w
  where w.id = set_webhook_clerk_key.endpoint_id and (operator or w.tenant_id = authhub.current_tenant_id());
  if e.id is null or (not operator and not coalesce(authhub_private.is_tenant_admin(), false)) then
    raise exception 'No such webhook endpoint.' using errcode = 'AH404';
  end if;
  update authhub_private.webhook_secrets s set clerk_secret_key_encrypted = set_webhook_clerk_key.clerk_secret_key_encrypted
  where s.tenant_id = e.tenant_id and s.endpoint_id = e.id;
end;
$$;
grant execute on function authhub_private.set_webhook_clerk_key(uuid, text) to authhub_user;

-- For the reconciliation job: the enabled endpoints of active tenants with a Clerk key.
create function authhub_private.clerk_reconcile_targets()
  returns table (tenant_id uuid, endpoint_id uuid, clerk_secret_key_encrypted text)
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select e.tenant_id, e.id, s.clerk_secret_key_encrypted
  from authhub.webhook_endpoints e
  join authhub.tenants t on t.id = e.tenant_id and t.status = 'active'
  join authhub_private.webhook_secrets s on s.tenant_id = e.tenant_id and s.endpoint_id = e.id
  where e.enabled and s.clerk_secret_key_encrypted is not null
$$;

-- What this endpoint has applied and not deleted, with the version applied.
create function authhub_private.clerk_known_entities(endpoint_id uuid) returns table (entity text, version bigint)
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select c.entity, c.version from authhub_private.clerk_entities c
  where c.endpoint_id = clerk_known_entities.endpoint_id and c.deleted_at is null
$$;

grant execute on function
  authhub_private.clerk_reconcile_targets(),
  authhub_private.clerk_known_entities(uuid)
to authhub_worker;
