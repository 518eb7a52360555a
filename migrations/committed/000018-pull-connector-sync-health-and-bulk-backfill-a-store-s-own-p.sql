--! Previous: sha1:b4e095b36737bfe6d5d3a96184e42b207312730b
--! Hash: sha1:af63de0fa8a19b1963dffe7e686bafd7dd86c028
--! Message: Pull connector, sync health and bulk backfill: a store's own PostgreSQL as a pull source (URL encrypted, its own store-bound key), keyset cursors and the pull's health, retail.sync counting outcomes per store, entity and source kind into sync_statuses, bulk jobs staged and applied as their key

--! split: 1-current.sql
-- Enter migration here

--! split: 100-sync-sources.sql
-- Pull connector (DESIGN §13; issue 17): a store whose system is a PostgreSQL
-- database is registered as a source (`npx authhub sync source add`), and a
-- graphile-worker job per store pulls its views' changes through the push
-- path's SQL (retail.sync), as the source's own key: an API key bound to the
-- store with the scope sync:write, made with the source. So the pull writes
-- that store only, under the same policies as a pushing store system.
--
-- The store's URL carries its password: it is kept encrypted under the master
-- key (url_encrypted, rewrapped by `keys rewrap`), registered as a secret
-- column so the audit log never holds it, and never shown again.

create table retail_private.sync_sources (
  tenant_id          uuid not null,
  id                 uuid not null default gen_random_uuid(),
  store_id           uuid not null,
  url_encrypted      text not null,
  schema_name        text not null default 'public'
                     constraint sync_sources_schema_name_format check (schema_name ~ '^[a-z_][a-z0-9_]{0,62}$'),
  api_key_id         uuid not null,
  poll_interval_ms   integer not null default 2000
                     constraint sync_sources_poll_interval_range check (poll_interval_ms between 100 and 3600000),
  lookback_ms        integer not null default 60000
                     constraint sync_sources_lookback_range check (lookback_ms between 0 and 86400000),
  batch_size         integer not null default 1000
                     constraint sync_sources_batch_size_range check (batch_size between 1 and 1000),
  reconcile_every_ms integer not null default 600000
                     constraint sync_sources_reconcile_range check (reconcile_every_ms between 1000 and 604800000),
  -- A slow store fails its poll (and backs off) instead of holding the job.
  read_timeout_ms    integer not null default 30000
                     constraint sync_sources_read_timeout_range check (read_timeout_ms between 100 and 600000),
  enabled            boolean not null default true,
  created_at         timestamptz not null default now(),
  primary key (tenant_id, id),
  -- One source per store: its job, queue and cursors are the store's.
  constraint sync_sources_store_key unique (tenant_id, store_id),
  constraint sync_sources_store_fkey foreign key (tenant_id, store_id) references retail.stores (tenant_id, id) on delete cascade,
  constraint sync_sources_api_key_fkey foreign key (tenant_id, api_key_id) references authhub.api_keys (tenant_id, id)
);
-- sync_sources_store_key serves the store's foreign key.
create index sync_sources_api_key_idx on retail_private.sync_sources (tenant_id, api_key_id);
alter table retail_private.sync_sources enable row level security;
alter table retail_private.sync_sources force row level security;
create policy all_owner on retail_private.sync_sources for all to authhub_owner using (true) with check (true);
comment on policy all_owner on retail_private.sync_sources is 'The operator (the CLI) registers sources; rewrap re-encrypts their URLs.';
-- The pull job reads its source as the worker role (to open the store's URL).
create policy select_worker on retail_private.sync_sources for select to authhub_worker using (true);
comment on policy select_worker on retail_private.sync_sources is 'The pull job (authhub_worker) reads the source it runs for: the URL to open, the key to act as, its settings.';
grant select on retail_private.sync_sources to authhub_worker;
comment on table retail_private.sync_sources is 'A store''s own PostgreSQL database the pull connector reads (one view per entity), its URL encrypted under the master key, and the key bound to the store it applies rows as.';
comment on column retail_private.sync_sources.url_encrypted is 'postgres:// URL of the store''s database, AES-256-GCM under the master key (never shown again, never audited).';
comment on column retail_private.sync_sources.lookback_ms is 'How far behind its cursor each poll reads again, for rows committed late by long transactions (docs/sync.md).';
insert into authhub_private.audit_secret_columns (table_name, column_name) values ('sync_sources', 'url_encrypted');
select authhub_private.audit_table('retail_private.sync_sources', 'tenant_id', 'store_id');

-- Where each entity's pull stands (keyset cursor on (updated_at, external_id)),
-- and the job's health: written every poll, so kept apart from the audited
-- configuration above.
create table retail_private.sync_source_cursors (
  tenant_id      uuid not null,
  source_id      uuid not null,
  entity         text not null
                 constraint sync_source_cursors_entity check (entity in ('products', 'inventory', 'customers', 'orders')),
  updated_at     timestamptz,
  external_id    text,
  reconciled_at  timestamptz,
  primary key (tenant_id, source_id, entity),
  constraint sync_source_cursors_source_fkey foreign key (tenant_id, source_id) references retail_private.sync_sources (tenant_id, id) on delete cascade
);
alter table retail_private.sync_source_cursors enable row level security;
alter table retail_private.sync_source_cursors force row level security;
create policy all_owner on retail_private.sync_source_cursors for all to authhub_owner using (true) with check (true);
comment on policy all_owner on retail_private.sync_source_cursors is 'The owner; the pull moves a cursor only through retail_private.sync_source_advance.';
create policy select_worker on retail_private.sync_source_cursors for select to authhub_worker using (true);
comment on policy select_worker on retail_private.sync_source_cursors is 'The pull job reads where it stands.';
grant select on retail_private.sync_source_cursors to authhub_worker;
comment on table retail_private.sync_source_cursors is 'Each entity''s keyset cursor (updated_at, external_id) in a source, and when it was last reconciled.';
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('retail_private.sync_source_cursors', 'A pull''s position, moved on every poll; what it applied is audited on the retail tables.');

create table retail_private.sync_source_health (
  tenant_id     uuid not null,
  source_id     uuid not null,
  failures      integer not null default 0,
  last_error    text,
  last_error_at timestamptz,
  last_poll_at  timestamptz,
  primary key (tenant_id, source_id),
  constraint sync_source_health_source_fkey foreign key (tenant_id, source_id) references retail_private.sync_sources (tenant_id, id) on delete cascade
);
alter table retail_private.sync_source_health enable row level security;
alter table retail_private.sync_source_health force row level security;
create policy all_owner on retail_private.sync_source_health for all to authhub_owner using (true) with check (true);
comment on policy all_owner on retail_private.sync_source_health is 'The owner (cascades when a source goes).';
create policy all_worker on retail_private.sync_source_health for all to authhub_worker using (true) with check (true);
comment on policy all_worker on retail_private.sync_source_health is 'The pull job records its failures (the backoff counts them) and its successes.';
grant select, insert (tenant_id, source_id, failures, last_poll_at), update (failures, last_poll_at) on retail_private.sync_source_health to authhub_worker;
comment on table retail_private.sync_source_health is 'A source''s consecutive failures (its backoff), its last error (a safe message, never the URL) and its last poll.';
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('retail_private.sync_source_health', 'A job''s failure counter, written every poll.');

--! split: 200-sync-statuses.sql
-- Sync health is data (DESIGN §13): per store, entity and source kind (push,
-- pull, bulk), the outcome counts, the last version applied, the last success
-- and (pull) the lag. Kept by SQL in the write path itself (retail.sync), so
-- every door counts the same way.
create table retail.sync_statuses (
  tenant_id            uuid not null,
  store_id             uuid not null,
  entity               text not null
                       constraint sync_statuses_entity check (entity in ('products', 'inventory', 'customers', 'orders')),
  source_kind          text not null
                       constraint sync_statuses_source_kind check (source_kind in ('push', 'pull', 'bulk')),
  last_version_applied bigint,
  last_applied_at      timestamptz,
  last_success_at      timestamptz,
  lag                  interval,
  applied_count        bigint not null default 0,
  unchanged_count      bigint not null default 0,
  stale_count          bigint not null default 0,
  rejected_count       bigint not null default 0,
  last_error           text,
  last_error_at        timestamptz,
  primary key (tenant_id, store_id, entity, source_kind),
  constraint sync_statuses_store_fkey foreign key (tenant_id, store_id) references retail.stores (tenant_id, id) on delete cascade
);
alter table retail.sync_statuses enable row level security;
alter table retail.sync_statuses force row level security;
create policy all_owner on retail.sync_statuses for all to authhub_owner using (true) with check (true);
comment on policy all_owner on retail.sync_statuses is 'The owner; callers change it only through the write path (retail_private.sync_record, sync_source_advance).';
-- Who reads: the store's admins (ORG_ADMIN of the store or of an organization
-- above it, e.g. its seller) and the tenant's admins. Not custom roles, not keys.
create policy select_admins on retail.sync_statuses for select to authhub_user using (
  tenant_id = (select authhub.current_tenant_id())
  and ((select authhub_private.current_user_level()) >= 'TENANT_ADMIN'
       or store_id in (select authhub_private.managed_organization_ids())));
comment on policy select_admins on retail.sync_statuses is 'The store''s admins (ORG_ADMIN of the store or above it) and tenant admins read its sync health.';
grant select on retail.sync_statuses to authhub_user;
comment on table retail.sync_statuses is E'@behavior -insert -update -delete\nSync health per store, entity and source kind (push, pull, bulk): outcome counts, the last version applied, the last success, and for a pull its lag and last error.';
comment on column retail.sync_statuses.lag is 'Pull: how old the newest change was when it was applied (the store''s clock at the read, minus its updated_at, plus the apply time). Push and bulk: null.';
comment on column retail.sync_statuses.last_error is 'Pull: the last failure reading the store''s database (a safe message), cleared by the next success.';
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('retail.sync_statuses', 'Counters kept by the write path; the rows they count are audited on the retail tables.');


-- The kind of sync the caller is: a source's own key pulls, else a push (a
-- bulk job says so in a transaction setting only the worker sets).
create function retail_private.sync_kind() returns text
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select case
           when exists (select 1 from retail_private.sync_sources s
                        where s.tenant_id = authhub.current_tenant_id() and s.api_key_id = authhub.current_api_key_id()) then 'pull'
           when pg_catalog.current_setting('retail.sync_kind', true) = 'bulk' then 'bulk'
           else 'push'
         end
$$;
comment on function retail_private.sync_kind() is 'push, pull or bulk, for the calling sync. Definer: the sources are private.';
grant execute on function retail_private.sync_kind() to authhub_user;

-- Rejected rows: which door they came in by (health reads them beside the
-- counts), set by the write path's own insert through the default.
alter table retail.sync_rejects add column source_kind text not null default 'push'
  constraint sync_rejects_source_kind check (source_kind in ('push', 'pull', 'bulk'));
alter table retail.sync_rejects alter column source_kind set default retail_private.sync_kind();
comment on column retail.sync_rejects.source_kind is 'push (the Data Sync API), pull (the connector) or bulk (a backfill).';

-- Counts a batch's outcomes per store into sync_statuses: only stores the
-- caller may sync (a row naming another store is rejected and counted
-- nowhere). Definer: the counters are no caller's to write directly.
create function retail_private.sync_record(entity text, rows jsonb, results jsonb) returns void
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  with outcome as (
    select coalesce(
             (select st.id from retail.stores st where st.tenant_id = authhub.current_tenant_id() and st.code = e.r ->> 'store'),
             case when not (e.r ? 'store') then authhub.current_org_id() end) as store_id,
           x.v ->> 'status' as status,
           case when jsonb_typeof(e.r -> 'version') = 'number' and (e.r ->> 'version') ~ '^[0-9]{1,18}$' then (e.r ->> 'version')::bigint end as version
    from jsonb_array_elements(rows) with ordinality e(r, i)
    join jsonb_array_elements(results) with ordinality x(v, j) on x.j = e.i
  ),
  per_store as (
    select o.store_id,
           count(*) filter (where o.status = 'applied') as applied,
           count(*) filter (where o.status = 'unchanged') as unchanged,
           count(*) filter (where o.status = 'stale') as stale,
           count(*) filter (where o.status = 'rejected') as rejected,
           max(o.version) filter (where o.status = 'applied') as version
    from outcome o
    where o.store_id is not null
      and exists (select 1 from retail.stores st where st.tenant_id = authhub.current_tenant_id() and st.id = o.store_id)
      and retail_private.holds('sync:write', o.store_id)
    group by o.store_id
  )
  insert into retail.sync_statuses as s (tenant_id, store_id, entity, source_kind, last_version_applied, last_applied_at, last_success_at,
                                         applied_count, unchanged_count, stale_count, rejected_count)
  select authhub.current_tenant_id(), p.store_id, sync_record.entity, retail_private.sync_kind(), p.version,
         case when p.applied > 0 then now() end, now(), p.applied, p.unchanged, p.stale, p.rejected
  from per_store p
  order by p.store_id
  on conflict (tenant_id, store_id, entity, source_kind) do update set
    last_version_applied = coalesce(excluded.last_version_applied, s.last_version_applied),
    last_applied_at = coalesce(excluded.last_applied_at, s.last_applied_at),
    last_success_at = excluded.last_success_at,
    applied_count = s.applied_count + excluded.applied_count,
    unchanged_count = s.unchanged_count + excluded.unchanged_count,
    stale_count = s.stale_count + excluded.stale_count,
    rejected_count = s.rejected_count + excluded.rejected_count
$$;
comment on function retail_private.sync_record(text, jsonb, jsonb) is 'Adds a batch''s outcomes to sync_statuses, per store the caller may sync. Definer: the counters are written only here.';
grant execute on function retail_private.sync_record(text, jsonb, jsonb) to authhub_user;

-- The write path keeps its body (now retail_private.sync_rows) and is wrapped:
-- apply, then count. One function, so push, pull and bulk count alike.
alter function retail.sync(text, jsonb) set schema retail_private;
alter function retail_private.sync(text, jsonb) rename to sync_rows;
comment on function retail_private.sync_rows(text, jsonb) is 'The Data Sync API''s write path (called by retail.sync, which counts the outcomes): applies a batch of one entity''s rows as the caller, answering each row''s outcome in order.';

create function retail.sync(entity text, rows jsonb) returns jsonb
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
as $$
declare
  results jsonb;
begin
  results := retail_private.sync_rows(entity, rows);
  perform retail_private.sync_record(entity, rows, results);
  return results;
end;
$$;
comment on function retail.sync(text, jsonb) is
  E'@behavior -queryField -mutationField\nThe Data Sync API''s write path: applies a batch of one entity''s rows (products, inventory, customers, orders) as the caller, answering each row''s outcome in order, and counts the outcomes into retail.sync_statuses.';
grant execute on function retail.sync(text, jsonb) to authhub_user;

--! split: 300-sync-pull.sql
-- What the pull job calls, as the source's key, in the transaction that
-- applies a batch: which rows of a lookback re-read are new to the hub, and
-- the cursor's advance (with the batch, so a batch and its cursor commit or
-- fail together).

-- The ordinals (1-based) of the rows the hub does not hold yet: newer than
-- what it holds, or rejected and not yet recorded as rejected at that version
-- under this key. A lookback re-read sends only these, so rows already applied
-- are not counted again as unchanged and a bad row is not rejected twice.
create function retail_private.sync_pending(entity text, rows jsonb) returns integer[]
  language plpgsql stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  work retail_private.sync_row[];
begin
  work := retail_private.sync_parse(entity, rows);
  work := retail_private.sync_classify(work, retail_private.sync_held(entity, work));
  return coalesce((select array_agg(w.ord order by w.ord) from unnest(work) w
                   where w.status = 'applied'
                      or (w.status = 'rejected'
                          and not exists (select 1 from retail.sync_rejects r
                                          where r.tenant_id = authhub.current_tenant_id() and r.entity = sync_pending.entity
                                            and r.external_id is not distinct from left(w.external_id, 255)
                                            and r.version is not distinct from w.version
                                            and r.api_key_id is not distinct from authhub.current_api_key_id()))), '{}');
end;
$$;
comment on function retail_private.sync_pending(text, jsonb) is 'The rows of a batch the hub does not hold yet (newer, or rejected and not yet recorded): what a lookback re-read must still apply.';
grant execute on function retail_private.sync_pending(text, jsonb) to authhub_user;

-- Moves an entity's cursor of the caller's own source (the key is the
-- source's) and records the pull's lag and success. Definer: the cursors are
-- private; only the source's key moves them.
create function retail_private.sync_source_advance(source_id uuid, entity text, updated_at timestamptz, external_id text, lag interval) returns void
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  src retail_private.sync_sources;
begin
  select s.* into src from retail_private.sync_sources s
  where s.tenant_id = authhub.current_tenant_id() and s.id = sync_source_advance.source_id and s.api_key_id = authhub.current_api_key_id();
  if src.id is null then
    raise exception 'Only the source''s own key moves its cursor.' using errcode = 'AH403';
  end if;
  insert into retail_private.sync_source_cursors as c (tenant_id, source_id, entity, updated_at, external_id)
  values (src.tenant_id, src.id, sync_source_advance.entity, sync_source_advance.updated_at, sync_source_advance.external_id)
  on conflict (tenant_id, source_id, entity) do update
    set updated_at = excluded.updated_at, external_id = excluded.external_id
    where excluded.updated_at is not null
      and (c.updated_at is null or (excluded.updated_at, excluded.external_id collate "C") > (c.updated_at, c.external_id collate "C"));
  insert into retail.sync_statuses as s (tenant_id, store_id, entity, source_kind, last_success_at, lag)
  values (src.tenant_id, src.store_id, sync_source_advance.entity, 'pull', now(), sync_source_advance.lag)
  on conflict (tenant_id, store_id, entity, source_kind) do update
    set last_success_at = now(), lag = coalesce(excluded.lag, s.lag), last_error = null, last_error_at = null;
end;
$$;
comment on function retail_private.sync_source_advance(uuid, text, timestamptz, text, interval) is 'Moves the caller''s own source''s cursor forward (never back) and records the pull''s success and lag. Definer: cursors are private.';
grant execute on function retail_private.sync_source_advance(uuid, text, timestamptz, text, interval) to authhub_api_client;

-- Marks an entity's reconciliation done (the source's key, as above).
create function retail_private.sync_source_reconciled(source_id uuid, entity text) returns void
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  insert into retail_private.sync_source_cursors as c (tenant_id, source_id, entity, reconciled_at)
  select s.tenant_id, s.id, sync_source_reconciled.entity, now() from retail_private.sync_sources s
  where s.tenant_id = authhub.current_tenant_id() and s.id = sync_source_reconciled.source_id and s.api_key_id = authhub.current_api_key_id()
  on conflict (tenant_id, source_id, entity) do update set reconciled_at = now()
$$;
comment on function retail_private.sync_source_reconciled(uuid, text) is 'Records when the caller''s own source''s entity was last reconciled. Definer: cursors are private.';
grant execute on function retail_private.sync_source_reconciled(uuid, text) to authhub_api_client;

-- A failed poll (the store's database down, slow, or its view broken), as the
-- worker: the source's backoff counter and the pull's status show it.
create function retail_private.sync_source_failed(tenant_id uuid, source_id uuid, message text) returns integer
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  with s as (
    select src.tenant_id, src.id, src.store_id from retail_private.sync_sources src
    where src.tenant_id = sync_source_failed.tenant_id and src.id = sync_source_failed.source_id
  ),
  statuses as (
    insert into retail.sync_statuses as st (tenant_id, store_id, entity, source_kind, last_error, last_error_at)
    select s.tenant_id, s.store_id, e.entity, 'pull', left(sync_source_failed.message, 500), now()
    from s cross join (values ('products'), ('inventory'), ('customers'), ('orders')) e(entity)
    on conflict (tenant_id, store_id, entity, source_kind) do update set last_error = excluded.last_error, last_error_at = excluded.last_error_at
  )
  insert into retail_private.sync_source_health as h (tenant_id, source_id, failures, last_error, last_error_at, last_poll_at)
  select s.tenant_id, s.id, 1, left(sync_source_failed.message, 500), now(), now() from s
  on conflict (tenant_id, source_id) do update set failures = h.failures + 1, last_error = excluded.last_error, last_error_at = now(), last_poll_at = now()
  returning failures
$$;
comment on function retail_private.sync_source_failed(uuid, uuid, text) is 'Counts a failed poll of a source (its backoff) and shows the error on the pull''s statuses. Definer: the worker does not write retail tables.';
grant execute on function retail_private.sync_source_failed(uuid, uuid, text) to authhub_worker;

-- The cheap half of a lookback re-read: given only (externalId, version[,
-- location]) of the rows behind the cursor, the ordinals (1-based) of those
-- the caller's store (the key's own) does not hold at that version or newer,
-- and has not already rejected at that version under this key. Only those
-- are then read whole and applied, so a re-read of a busy window costs an
-- index lookup per row, not a validation.
create function retail_private.sync_unheld(entity text, keys jsonb) returns integer[]
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  with k as (
    select (e.i)::integer as i, e.v ->> 'externalId' as xid, e.v ->> 'version' as v, coalesce(e.v ->> 'location', 'default') as loc
    from jsonb_array_elements(keys) with ordinality e(v, i)
  ),
  h as (
    select k.*,
           coalesce(
             case sync_unheld.entity
               when 'products' then (select p.source_version from retail.products p where p.tenant_id = authhub.current_tenant_id() and p.store_id = authhub.current_org_id() and p.external_id = k.xid)
               when 'customers' then (select c.source_version from retail.customers c where c.tenant_id = authhub.current_tenant_id() and c.store_id = authhub.current_org_id() and c.external_id = k.xid)
               when 'orders' then (select o.source_version from retail.orders o where o.tenant_id = authhub.current_tenant_id() and o.store_id = authhub.current_org_id() and o.external_id = k.xid)
               when 'inventory' then (select l.source_version from retail.inventory_levels l where l.tenant_id = authhub.current_tenant_id() and l.store_id = authhub.current_org_id() and l.sku = k.xid and l.location = k.loc)
             end,
             retail_private.tombstone_version(authhub.current_org_id(), sync_unheld.entity, case when sync_unheld.entity = 'inventory' then k.xid || '@' || k.loc else k.xid end)) as held
    from k
  )
  select coalesce(array_agg(h.i order by h.i), '{}') from h
  where (h.held is null or h.v !~ '^[0-9]{1,18}$' or h.v::bigint > h.held)
    and not exists (select 1 from retail.sync_rejects r
                    where r.tenant_id = authhub.current_tenant_id() and r.entity = sync_unheld.entity
                      and r.external_id is not distinct from left(h.xid, 255)
                      and r.version::text is not distinct from h.v
                      and r.api_key_id is not distinct from authhub.current_api_key_id())
$$;
comment on function retail_private.sync_unheld(text, jsonb) is 'Of (externalId, version) pairs re-read behind a pull''s cursor, those the key''s store does not hold yet and has not rejected at that version: what the pull must still read whole and apply.';
grant execute on function retail_private.sync_unheld(text, jsonb) to authhub_user;

--! split: 400-sync-bulk.sql
-- Bulk backfill (DESIGN §13; issue 17.2): POST /open/v1/sync/{entity}/bulk
-- streams an NDJSON body, which the server stages here, in the key's own
-- transaction, before answering 202 {jobId}; the worker applies it through
-- retail.sync as that key (source kind bulk), a batch at a time, each batch
-- with its progress. One bulk job per store at a time (a unique index).
create table retail_private.sync_bulk_jobs (
  tenant_id   uuid not null,
  id          uuid not null default gen_random_uuid(),
  store_id    uuid not null,
  entity      text not null
              constraint sync_bulk_jobs_entity check (entity in ('products', 'inventory', 'customers', 'orders')),
  api_key_id  uuid not null,
  state       text not null default 'receiving'
              constraint sync_bulk_jobs_state check (state in ('receiving', 'queued', 'applying', 'done', 'failed')),
  received    bigint not null default 0,
  applied     bigint not null default 0,
  unchanged   bigint not null default 0,
  stale       bigint not null default 0,
  rejected    bigint not null default 0,
  last_seq    bigint not null default 0,
  error       text,
  created_at  timestamptz not null default now(),
  finished_at timestamptz,
  primary key (tenant_id, id),
  constraint sync_bulk_jobs_store_fkey foreign key (tenant_id, store_id) references retail.stores (tenant_id, id) on delete cascade,
  constraint sync_bulk_jobs_api_key_fkey foreign key (tenant_id, api_key_id) references authhub.api_keys (tenant_id, id) on delete cascade
);
-- One running bulk job per store: a second is refused (conflict) until it ends.
create unique index sync_bulk_jobs_one_per_store on retail_private.sync_bulk_jobs (tenant_id, store_id) where state in ('receiving', 'queued', 'applying');
create index sync_bulk_jobs_api_key_idx on retail_private.sync_bulk_jobs (tenant_id, api_key_id);
alter table retail_private.sync_bulk_jobs enable row level security;
alter table retail_private.sync_bulk_jobs force row level security;
create policy all_owner on retail_private.sync_bulk_jobs for all to authhub_owner using (true) with check (true);
comment on policy all_owner on retail_private.sync_bulk_jobs is 'The owner; callers start, stage and progress jobs through the sync_bulk_* functions.';
create policy select_own_key on retail_private.sync_bulk_jobs for select to authhub_api_client using (
  tenant_id = (select authhub.current_tenant_id()) and api_key_id = (select authhub.current_api_key_id()));
comment on policy select_own_key on retail_private.sync_bulk_jobs is 'A key reads the bulk jobs it started (GET /open/v1/sync/jobs/{jobId}).';
grant select on retail_private.sync_bulk_jobs to authhub_api_client;
create policy select_worker on retail_private.sync_bulk_jobs for select to authhub_worker using (true);
comment on policy select_worker on retail_private.sync_bulk_jobs is 'The apply job reads the job it runs for (its key, store, entity).';
grant select on retail_private.sync_bulk_jobs to authhub_worker;
comment on table retail_private.sync_bulk_jobs is 'Bulk backfills: their store, entity, key, state and counts (received, applied, unchanged, stale, rejected).';
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('retail_private.sync_bulk_jobs', 'A backfill''s progress; what it applied is audited on the retail tables.');

create table retail_private.sync_bulk_rows (
  tenant_id uuid not null,
  job_id    uuid not null,
  seq       bigint not null,
  row       jsonb not null,
  primary key (tenant_id, job_id, seq),
  constraint sync_bulk_rows_job_fkey foreign key (tenant_id, job_id) references retail_private.sync_bulk_jobs (tenant_id, id) on delete cascade
);
alter table retail_private.sync_bulk_rows enable row level security;
alter table retail_private.sync_bulk_rows force row level security;
create policy all_owner on retail_private.sync_bulk_rows for all to authhub_owner using (true) with check (true);
comment on policy all_owner on retail_private.sync_bulk_rows is 'The owner; callers stage and read rows only through the sync_bulk_* functions.';
comment on table retail_private.sync_bulk_rows is 'A bulk job''s rows, staged until applied (deleted batch by batch as they are).';
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('retail_private.sync_bulk_rows', 'Staged input; what it changes is audited on the retail tables.');

-- Starts a bulk job for the calling key's own store. Definer: the jobs are
-- private; the store is the key's organization and must be one it may sync.
create function retail_private.sync_bulk_begin(entity text) returns uuid
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  job uuid;
  store uuid := authhub.current_org_id();
begin
  if entity is null or entity not in ('products', 'inventory', 'customers', 'orders') then
    raise exception 'Unknown entity.' using errcode = 'AH422', column = 'entity';
  end if;
  if authhub.current_api_key_id() is null or store is null
     or not exists (select 1 from retail.stores s where s.tenant_id = authhub.current_tenant_id() and s.id = store)
     or not retail_private.holds('sync:write', store) then
    raise exception 'A bulk load takes a key bound to a store, with sync:write.' using errcode = 'AH403';
  end if;
  begin
    insert into retail_private.sync_bulk_jobs (tenant_id, store_id, entity, api_key_id)
    values (authhub.current_tenant_id(), store, entity, authhub.current_api_key_id())
    returning id into job;
  exception when unique_violation then
    raise exception 'This store has a bulk job running; start the next when it is done.' using errcode = 'AH409';
  end;
  return job;
end;
$$;
comment on function retail_private.sync_bulk_begin(text) is 'Starts a bulk job for the calling key''s store (one at a time per store). Definer: the jobs are private.';
grant execute on function retail_private.sync_bulk_begin(text) to authhub_api_client;

-- Stages rows (a JSON array, in order from `first_seq`) of the caller's own receiving job.
create function retail_private.sync_bulk_stage(job_id uuid, first_seq bigint, rows jsonb) returns void
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  with job as (
    update retail_private.sync_bulk_jobs j set received = j.received + jsonb_array_length(sync_bulk_stage.rows)
    where j.tenant_id = authhub.current_tenant_id() and j.id = sync_bulk_stage.job_id
      and j.api_key_id = authhub.current_api_key_id() and j.state = 'receiving'
    returning j.tenant_id, j.id
  )
  insert into retail_private.sync_bulk_rows (tenant_id, job_id, seq, row)
  select job.tenant_id, job.id, sync_bulk_stage.first_seq + e.i - 1, e.r
  from job cross join jsonb_array_elements(sync_bulk_stage.rows) with ordinality e(r, i)
$$;
comment on function retail_private.sync_bulk_stage(uuid, bigint, jsonb) is 'Stages rows of the caller''s own receiving bulk job. Definer: staged rows are private.';
grant execute on function retail_private.sync_bulk_stage(uuid, bigint, jsonb) to authhub_api_client;

-- Closes the caller's own receiving job and queues its apply job.
-- plpgsql: graphile-worker's schema is installed after the migrations.
create function retail_private.sync_bulk_queue(job_id uuid) returns void
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  j retail_private.sync_bulk_jobs;
begin
  update retail_private.sync_bulk_jobs x set state = 'queued'
  where x.tenant_id = authhub.current_tenant_id() and x.id = sync_bulk_queue.job_id
    and x.api_key_id = authhub.current_api_key_id() and x.state = 'receiving'
  returning x.* into j;
  if j.id is null then
    raise exception 'No such bulk job.' using errcode = 'AH404';
  end if;
  perform graphile_worker.add_job('sync_bulk__apply', json_build_object('tenant_id', j.tenant_id, 'job_id', j.id),
    queue_name => 'sync-bulk:' || j.store_id, job_key => 'sync-bulk:' || j.id, max_attempts => 5);
end;
$$;
comment on function retail_private.sync_bulk_queue(uuid) is 'Closes the caller''s own receiving bulk job and queues its apply job. Definer: jobs are private, and graphile_worker is the owner''s.';
grant execute on function retail_private.sync_bulk_queue(uuid) to authhub_api_client;

-- The next staged rows of the caller's own job (the apply job acts as the key).
create function retail_private.sync_bulk_next(job_id uuid, batch integer) returns table (seq bigint, body jsonb)
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select r.seq, r.row as body from retail_private.sync_bulk_rows r
  join retail_private.sync_bulk_jobs j on j.tenant_id = r.tenant_id and j.id = r.job_id
  where j.tenant_id = authhub.current_tenant_id() and j.id = sync_bulk_next.job_id and j.api_key_id = authhub.current_api_key_id()
  order by r.seq limit sync_bulk_next.batch
$$;
comment on function retail_private.sync_bulk_next(uuid, integer) is 'The next staged rows of the caller''s own bulk job, in order. Definer: staged rows are private.';
grant execute on function retail_private.sync_bulk_next(uuid, integer) to authhub_api_client;

-- Records a batch's outcomes and drops its staged rows, in the batch's own
-- transaction (so a batch is applied with its progress or not at all).
create function retail_private.sync_bulk_progress(job_id uuid, through_seq bigint, results jsonb) returns void
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  with j as (
    update retail_private.sync_bulk_jobs x set
      state = 'applying',
      last_seq = sync_bulk_progress.through_seq,
      applied = x.applied + (select count(*) from jsonb_array_elements(sync_bulk_progress.results) r where r ->> 'status' = 'applied'),
      unchanged = x.unchanged + (select count(*) from jsonb_array_elements(sync_bulk_progress.results) r where r ->> 'status' = 'unchanged'),
      stale = x.stale + (select count(*) from jsonb_array_elements(sync_bulk_progress.results) r where r ->> 'status' = 'stale'),
      rejected = x.rejected + (select count(*) from jsonb_array_elements(sync_bulk_progress.results) r where r ->> 'status' = 'rejected')
    where x.tenant_id = authhub.current_tenant_id() and x.id = sync_bulk_progress.job_id and x.api_key_id = authhub.current_api_key_id()
    returning x.tenant_id, x.id
  )
  delete from retail_private.sync_bulk_rows r using j
  where r.tenant_id = j.tenant_id and r.job_id = j.id and r.seq <= sync_bulk_progress.through_seq
$$;
comment on function retail_private.sync_bulk_progress(uuid, bigint, jsonb) is 'Adds a batch''s outcomes to the caller''s own bulk job and drops its staged rows. Definer: jobs are private.';
grant execute on function retail_private.sync_bulk_progress(uuid, bigint, jsonb) to authhub_api_client;

-- Ends a job (the worker): done, or failed with a safe reason.
create function retail_private.sync_bulk_finish(tenant_id uuid, job_id uuid, failure text) returns void
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  update retail_private.sync_bulk_jobs j set state = case when sync_bulk_finish.failure is null then 'done' else 'failed' end,
    error = left(sync_bulk_finish.failure, 500), finished_at = now()
  where j.tenant_id = sync_bulk_finish.tenant_id and j.id = sync_bulk_finish.job_id and j.state in ('queued', 'applying');
  delete from retail_private.sync_bulk_rows r where r.tenant_id = sync_bulk_finish.tenant_id and r.job_id = sync_bulk_finish.job_id and sync_bulk_finish.failure is not null;
$$;
comment on function retail_private.sync_bulk_finish(uuid, uuid, text) is 'Marks a bulk job done (or failed, dropping what it had not applied). Definer: the worker does not write jobs directly.';
grant execute on function retail_private.sync_bulk_finish(uuid, uuid, text) to authhub_worker;
