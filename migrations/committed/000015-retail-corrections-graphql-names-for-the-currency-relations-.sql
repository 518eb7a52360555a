--! Previous: sha1:c1fc7a1b9f750bcbbb94da9c6049dde5ea5b194a
--! Hash: sha1:6fd146f8df2ed28d9197bafe20574856aabeaf9b
--! Message: Retail corrections: GraphQL names for the currency relations; order totals only from lines; product batches apply and SKUs follow the products' claims; required sync fields; local days follow a store's time zone; rejects recorded under the caller's own key and store

--! split: 100-retail-graphql-names.sql
-- Retail corrections (issue 16, DESIGN §12–13), found by the per-role and sync
-- probes of test/db/retail.policies.test.ts and test/db/retail.sync.test.ts.
--
-- GraphQL names: a store's, variant's and order's `currency` is the ISO code
-- (a column); the foreign key to retail.currencies made PostGraphile name the
-- relation `currency` as well, which it refused with a naming-conflict warning
-- at every schema build. The relation is named `currencyInfo` (code, minor
-- units, name) and the column keeps its name, as DESIGN §12 spells it.
comment on constraint stores_currency_fkey on retail.stores is
  E'@fieldName currencyInfo\nThe store''s currency: its ISO 4217 code, minor units and name.';
comment on constraint variants_currency_fkey on retail.variants is
  E'@fieldName currencyInfo\nThe variant''s currency: its ISO 4217 code, minor units and name.';
comment on constraint orders_currency_fkey on retail.orders is
  E'@fieldName currencyInfo\nThe order''s currency: its ISO 4217 code, minor units and name.';

--! split: 200-retail-sync-validation.sql
-- A required field that is missing must be a problem, not a pass: the rule
-- helpers answered null for an absent value, `case when not null` added no
-- problem, and a row without externalId (or version, title, …) went through
-- validation and was inserted anew on every sync. Each helper now answers
-- false for an absent or null value; an optional field is checked only when
-- present, as the callers already say (`data ? 'title' and not …`).
create or replace function retail_private.is_text(v jsonb, max_length integer) returns boolean
  language sql immutable parallel safe
  set search_path = pg_catalog, pg_temp
as $$
  select coalesce(jsonb_typeof(v) = 'string' and length(v #>> '{}') between 1 and max_length
                  and (v #>> '{}') !~ '[[:cntrl:]]' and (v #>> '{}') = btrim(v #>> '{}'), false)
$$;

create or replace function retail_private.is_int(v jsonb, low numeric, high numeric) returns boolean
  language sql immutable parallel safe
  set search_path = pg_catalog, pg_temp
as $$
  select coalesce(jsonb_typeof(v) = 'number' and (v #>> '{}')::numeric = trunc((v #>> '{}')::numeric) and (v #>> '{}')::numeric between low and high, false)
$$;

create or replace function retail_private.matches(v jsonb, pattern text) returns boolean
  language sql immutable parallel safe
  set search_path = pg_catalog, pg_temp
as $$ select coalesce(jsonb_typeof(v) = 'string' and (v #>> '{}') ~ pattern, false) $$;

create or replace function retail_private.is_instant(v jsonb) returns boolean
  language sql immutable parallel safe
  set search_path = pg_catalog, pg_temp
as $$
  select coalesce(jsonb_typeof(v) = 'string'
                  and (v #>> '{}') ~ '^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$'
                  and (v #>> '{}') >= '2000' and (v #>> '{}') < '2100', false)
$$;

-- The envelope names a missing externalId or version as required (the reason
-- names the field), and a present one that breaks its rule by the rule.
create or replace function retail_private.envelope_problems(r jsonb, key_pattern text, key_rule text) returns jsonb[]
  language sql immutable parallel safe
  set search_path = pg_catalog, pg_temp
as $$
  select array_remove(array[
    case when jsonb_typeof(r) is distinct from 'object' then retail_private.problem('row', 'must be an object') end,
    case when jsonb_typeof(r) = 'object' and not retail_private.matches(r -> 'externalId', key_pattern)
         then retail_private.problem('externalId', case when jsonb_typeof(r -> 'externalId') is null or jsonb_typeof(r -> 'externalId') = 'null' then 'is required' else key_rule end) end,
    case when jsonb_typeof(r) = 'object' and not retail_private.is_int(r -> 'version', 0, 9007199254740991)
         then retail_private.problem('version', case when jsonb_typeof(r -> 'version') is null or jsonb_typeof(r -> 'version') = 'null' then 'is required (a whole number of at least 0)' else 'must be a whole number of at least 0' end) end,
    case when r ? 'deleted' and jsonb_typeof(r -> 'deleted') <> 'boolean' then retail_private.problem('deleted', 'must be true or false') end,
    case when jsonb_typeof(r) = 'object' and coalesce((r ->> 'deleted')::text, 'false') <> 'true' and jsonb_typeof(r -> 'data') is distinct from 'object' then retail_private.problem('data', 'must be an object') end,
    case when r ? 'store' and not retail_private.matches(r -> 'store', '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$') then retail_private.problem('store', 'must be a store code') end,
    case when jsonb_typeof(r) = 'object' and exists (select 1 from jsonb_object_keys(r) k where k not in ('externalId', 'version', 'deleted', 'data', 'store')) then
      retail_private.problem((select min(k) from jsonb_object_keys(r) k where k not in ('externalId', 'version', 'deleted', 'data', 'store')), 'is not a known field') end
  ], null)
$$;

--! split: 300-retail-sync-write-path.sql
-- The sync's write path (retail.sync → retail_private.sync_apply), three defects:
--
-- Order totals: a store's key held INSERT/UPDATE on orders' subtotal, discount,
-- tax and total, so it could write totals that are not its lines' (DESIGN §12:
-- computed in SQL from the lines). The grants go; the sync writes an order
-- without totals and the lines' statement trigger (a definer) computes them.
revoke insert (subtotal_minor, discount_minor, tax_minor, total_minor) on retail.orders from authhub_api_client;
revoke update (subtotal_minor, discount_minor, tax_minor, total_minor) on retail.orders from authhub_api_client;

-- Products: every product batch was refused, its variants' upsert setting
-- product_id without the UPDATE grant on it. A store's system moves a SKU to
-- another of its products; the foreign key keeps the product in the store.
grant update (product_id) on retail.variants to authhub_api_client;

-- A SKU moving between products, applied out of order, was lost: a late older
-- row of the product it left took it back, and that product's next row then
-- deleted it. Each synced product now keeps the variant list its latest row
-- sent (synced_variants), and a SKU's variant follows the live products'
-- claims (sync_apply below), whichever order the rows arrive in.
alter table retail.products drop column if exists synced_variants;
alter table retail.products add column synced_variants jsonb
  constraint products_synced_variants_array check (jsonb_typeof(synced_variants) = 'array');
comment on column retail.products.synced_variants is
  E'@behavior -*\nThe variants the store''s latest row of this product listed (its claims on SKUs); null for products made in the hub.';
grant insert (synced_variants), update (synced_variants) on retail.products to authhub_api_client;
-- Which live product claims a SKU (the claims' lookup by containment).
create index products_synced_variants_idx on retail.products using gin (synced_variants jsonb_path_ops) where synced_variants is not null;

-- Applies a batch's `applied` rows of one entity, set-based; answers the keys
-- ("<store> <match_key>") it actually wrote (a row a concurrent newer sync beat
-- is not among them).
create or replace function retail_private.sync_apply(entity text, work retail_private.sync_row[]) returns text[]
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
as $$
declare
  tenant uuid := authhub.current_tenant_id();
  written text[] := '{}';
  ids jsonb;
  held_skus jsonb;
begin
  -- Products: the SKUs the batch's products hold before it. A SKU a product lets
  -- go (or a deleted product held) may be claimed by another product, and goes
  -- to it rather than away (see the variants below).
  if entity = 'products' then
    -- A store's product batches take turns (in store order, so two never wait on
    -- each other): the claims are read from what the store's products hold, and a
    -- batch applied beside another would not see the SKU that one takes or lets go.
    perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('retail-products:' || tenant::text || ':' || x.store_id::text, 0))
    from (select distinct w.store_id from unnest(work) w where w.status = 'applied' order by w.store_id) x;
    select coalesce(jsonb_agg(distinct jsonb_build_object('store_id', v.store_id, 'sku', v.sku)), '[]') into held_skus
    from unnest(work) w
    join retail.products p on p.tenant_id = tenant and p.store_id = w.store_id and p.external_id = w.external_id
    join retail.variants v on v.tenant_id = p.tenant_id and v.store_id = p.store_id and v.product_id = p.id
    where w.status = 'applied';
  end if;

  -- Deletions: a tombstone on the row (a deleted product's variants go with the
  -- variants below: it claims none), or, for a row never held, in sync_tombstones.
  if entity = 'products' then
    with gone as (
      update retail.products p set deleted_at = now(), source_version = w.version
      from unnest(work) w
      where w.status = 'applied' and w.deleted and p.tenant_id = tenant and p.store_id = w.store_id and p.external_id = w.external_id
        and (p.source_version is null or p.source_version < w.version)
      returning w.store_id::text || ' ' || w.match_key as k
    ) select coalesce(array_agg(k), '{}') into written from gone;
  elsif entity = 'customers' then
    with gone as (
      update retail.customers c set deleted_at = now(), source_version = w.version
      from unnest(work) w
      where w.status = 'applied' and w.deleted and c.tenant_id = tenant and c.store_id = w.store_id and c.external_id = w.external_id
        and (c.source_version is null or c.source_version < w.version)
      returning w.store_id::text || ' ' || w.match_key as k
    ) select coalesce(array_agg(k), '{}') into written from gone;
  elsif entity = 'orders' then
    with gone as (
      update retail.orders o set deleted_at = now(), source_version = w.version
      from unnest(work) w
      where w.status = 'applied' and w.deleted and o.tenant_id = tenant and o.store_id = w.store_id and o.external_id = w.external_id
        and (o.source_version is null or o.source_version < w.version)
      returning w.store_id::text || ' ' || w.match_key as k
    ) select coalesce(array_agg(k), '{}') into written from gone;
  elsif entity = 'inventory' then
    with gone as (
      update retail.inventory_levels i set deleted_at = now(), source_version = w.version
      from unnest(work) w
      where w.status = 'applied' and w.deleted and i.tenant_id = tenant and i.store_id = w.store_id
        and i.sku = w.external_id and i.location = coalesce(w.data ->> 'location', 'default')
        and (i.source_version is null or i.source_version < w.version)
      returning w.store_id::text || ' ' || w.match_key as k
    ) select coalesce(array_agg(k), '{}') into written from gone;
  end if;
  perform retail_private.tombstone(w.store_id, entity, w.match_key, w.version)
  from unnest(work) w
  where w.status = 'applied' and w.deleted and not (w.store_id::text || ' ' || w.match_key = any (written));
  written := written || coalesce((select array_agg(w.store_id::text || ' ' || w.match_key) from unnest(work) w where w.status = 'applied' and w.deleted), '{}');

  -- Creations and updates: an upsert guarded by the version (a concurrent newer
  -- sync wins), then the children replaced as a set.
  if entity = 'products' then
    with up as (
      insert into retail.products as p (tenant_id, store_id, external_id, title, status, published, attributes, synced_variants, source_version, deleted_at)
      select tenant, w.store_id, w.external_id, w.data ->> 'title', w.data ->> 'status', coalesce((w.data ->> 'published')::boolean, false),
             coalesce(w.data -> 'attributes', '{}'), w.data -> 'variants', w.version, null
      from unnest(work) w where w.status = 'applied' and not w.deleted
      on conflict (tenant_id, store_id, external_id) do update
        set title = excluded.title, status = excluded.status, published = excluded.published, attributes = excluded.attributes,
            synced_variants = excluded.synced_variants, source_version = excluded.source_version, deleted_at = null
        where p.source_version is null or p.source_version < excluded.source_version
      returning p.store_id, p.external_id, p.id
    )
    select coalesce(jsonb_agg(jsonb_build_object('store_id', store_id, 'external_id', external_id, 'id', id)), '[]') into ids from up;
    -- The variants of every SKU the batch touched (held before, or named now)
    -- follow the claims: a SKU belongs to the live synced product whose latest
    -- row lists it (two at once, while a move is half-applied: the highest
    -- source version, then the lowest external id), with that row's title and
    -- price; a SKU no live product lists goes. Derived from what the products
    -- hold, not from the order rows came in, so a SKU moving between products
    -- ends with its product whichever of the two rows arrives first.
    with touched as (
      select h.store_id, h.sku from jsonb_to_recordset(held_skus) h(store_id uuid, sku text)
      union
      select w.store_id, nv ->> 'sku' from unnest(work) w cross join lateral jsonb_array_elements(w.data -> 'variants') nv
      where w.status = 'applied' and not w.deleted
    ),
    claims as (
      select distinct on (t.store_id, t.sku) t.store_id, t.sku, p.id as product_id, c.v
      from touched t
      join retail.products p on p.tenant_id = tenant and p.store_id = t.store_id and p.deleted_at is null
        and p.synced_variants @> jsonb_build_array(jsonb_build_object('sku', t.sku))
      cross join lateral (select e as v from jsonb_array_elements(p.synced_variants) e where e ->> 'sku' = t.sku limit 1) c
      order by t.store_id, t.sku, p.source_version desc, p.external_id
    ),
    unclaimed as (
      delete from retail.variants v using touched t
      where v.tenant_id = tenant and v.store_id = t.store_id and v.sku = t.sku
        and not exists (select 1 from claims c where c.store_id = t.store_id and c.sku = t.sku)
    )
    insert into retail.variants as v (tenant_id, store_id, product_id, sku, title, price_minor, currency)
    select tenant, c.store_id, c.product_id, c.sku, c.v ->> 'title', (c.v ->> 'priceMinor')::bigint, c.v ->> 'currency'
    from claims c
    on conflict (tenant_id, store_id, sku) do update
      set product_id = excluded.product_id, title = excluded.title, price_minor = excluded.price_minor, currency = excluded.currency
      where (v.product_id, v.title, v.price_minor, v.currency) is distinct from (excluded.product_id, excluded.title, excluded.price_minor, excluded.currency);
  elsif entity = 'customers' then
    with up as (
      insert into retail.customers as c (tenant_id, store_id, external_id, email, name, source_version, deleted_at)
      select tenant, w.store_id, w.external_id, lower(w.data ->> 'email'), w.data ->> 'name', w.version, null
      from unnest(work) w where w.status = 'applied' and not w.deleted
      on conflict (tenant_id, store_id, external_id) do update
        set email = excluded.email, name = excluded.name, source_version = excluded.source_version, deleted_at = null
        where c.source_version is null or c.source_version < excluded.source_version
      returning c.store_id, c.external_id, c.id
    )
    select coalesce(jsonb_agg(jsonb_build_object('store_id', store_id, 'external_id', external_id, 'id', id)), '[]') into ids from up;
    -- Orders that arrived before their customer are linked now.
    update retail.orders o set customer_id = u.id
    from jsonb_to_recordset(ids) u(store_id uuid, external_id text, id uuid)
    where o.tenant_id = tenant and o.store_id = u.store_id and o.customer_external_id = u.external_id and o.customer_id is distinct from u.id;
  elsif entity = 'orders' then
    -- Totals are not the caller's to write: the lines' trigger computes them.
    with up as (
      insert into retail.orders as o (tenant_id, store_id, external_id, number, status, currency, placed_at, customer_external_id, customer_id,
                                      source_version, deleted_at)
      select tenant, w.store_id, w.external_id, w.data ->> 'number', w.data ->> 'status', w.data ->> 'currency', (w.data ->> 'placedAt')::timestamptz,
             w.data ->> 'customerExternalId',
             (select c.id from retail.customers c where c.tenant_id = tenant and c.store_id = w.store_id and c.external_id = w.data ->> 'customerExternalId'),
             w.version, null
      from unnest(work) w
      where w.status = 'applied' and not w.deleted
      on conflict (tenant_id, store_id, external_id) do update
        set number = excluded.number, status = excluded.status, currency = excluded.currency, placed_at = excluded.placed_at,
            customer_external_id = excluded.customer_external_id, customer_id = excluded.customer_id,
            source_version = excluded.source_version, deleted_at = null
        where o.source_version is null or o.source_version < excluded.source_version
      returning o.store_id, o.external_id, o.id
    )
    select coalesce(jsonb_agg(jsonb_build_object('store_id', store_id, 'external_id', external_id, 'id', id)), '[]') into ids from up;
    delete from retail.order_lines l
    using jsonb_to_recordset(ids) u(store_id uuid, external_id text, id uuid), unnest(work) w
    where w.status = 'applied' and not w.deleted and w.store_id = u.store_id and w.external_id = u.external_id
      and l.tenant_id = tenant and l.store_id = u.store_id and l.order_id = u.id
      and not exists (select 1 from jsonb_array_elements(w.data -> 'lines') nl where (nl ->> 'lineNo')::integer = l.line_no);
    insert into retail.order_lines as l (tenant_id, store_id, order_id, line_no, sku, title, quantity, unit_price_minor, discount_minor, tax_minor)
    select tenant, u.store_id, u.id, (nl ->> 'lineNo')::integer, nl ->> 'sku', nl ->> 'title', (nl ->> 'quantity')::integer,
           (nl ->> 'unitPriceMinor')::bigint, coalesce((nl ->> 'discountMinor')::bigint, 0), coalesce((nl ->> 'taxMinor')::bigint, 0)
    from jsonb_to_recordset(ids) u(store_id uuid, external_id text, id uuid)
    join unnest(work) w on w.status = 'applied' and not w.deleted and w.store_id = u.store_id and w.external_id = u.external_id
    cross join lateral jsonb_array_elements(w.data -> 'lines') nl
    on conflict (tenant_id, store_id, order_id, line_no) do update
      set sku = excluded.sku, title = excluded.title, quantity = excluded.quantity, unit_price_minor = excluded.unit_price_minor,
          discount_minor = excluded.discount_minor, tax_minor = excluded.tax_minor
      where (l.sku, l.title, l.quantity, l.unit_price_minor, l.discount_minor, l.tax_minor)
            is distinct from (excluded.sku, excluded.title, excluded.quantity, excluded.unit_price_minor, excluded.discount_minor, excluded.tax_minor);
  elsif entity = 'inventory' then
    with up as (
      insert into retail.inventory_levels as i (tenant_id, store_id, sku, location, on_hand, source_version, deleted_at)
      select tenant, w.store_id, w.external_id, coalesce(w.data ->> 'location', 'default'), (w.data ->> 'onHand')::integer, w.version, null
      from unnest(work) w where w.status = 'applied' and not w.deleted
      on conflict (tenant_id, store_id, sku, location) do update
        set on_hand = excluded.on_hand, source_version = excluded.source_version, deleted_at = null
        where i.source_version is null or i.source_version < excluded.source_version
      returning i.store_id, i.sku || '@' || i.location as match_key, i.sku as external_id
    )
    select coalesce(jsonb_agg(jsonb_build_object('store_id', store_id, 'external_id', match_key)), '[]') into ids from up;
  end if;
  -- What was written, by the same key the rows are matched by (inventory: sku@location).
  written := written || coalesce((select array_agg(u.store_id::text || ' ' || u.external_id) from jsonb_to_recordset(ids) u(store_id uuid, external_id text)), '{}');
  return written;
end;
$$;

--! split: 400-retail-store-timezone.sql
-- A store's time zone change left its orders' local_date (their day in the
-- store's time zone, computed on write) as it was. The orders follow now, in
-- the same statement; their changed days are marked for the rollups by the
-- orders' own trigger, so the daily totals follow too. Definer: whoever may
-- change a store's settings need not hold the right to write its orders, and
-- the day is no caller's to write.
create or replace function retail_private.tg_stores__local_dates() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  update retail.orders o set local_date = (o.placed_at at time zone n.timezone)::date
  from new_rows n
  join old_rows p on p.tenant_id = n.tenant_id and p.id = n.id
  where n.timezone is distinct from p.timezone
    and o.tenant_id = n.tenant_id and o.store_id = n.id
    and o.local_date is distinct from (o.placed_at at time zone n.timezone)::date;
  return null;
end;
$$;
comment on function retail_private.tg_stores__local_dates() is 'Recomputes the local_date of a store''s orders when its time zone changes (the rollups follow through the orders'' trigger).';
drop trigger if exists _130_local_dates on retail.stores;
create trigger _130_local_dates after update on retail.stores
  referencing old table as old_rows new table as new_rows
  for each statement execute function retail_private.tg_stores__local_dates();

--! split: 500-retail-sync-rejects.sql
-- Rejected rows are recorded by the caller's own sync (retail.sync, an invoker).
-- The policy admitted any API key writing a reject for any store, under any
-- key's id. Now a reject names its writer: the calling key (a user: none), and
-- either a store the caller may sync or no store (a row that named none it may
-- write), and only a caller who may sync somewhere records one.
drop policy if exists insert_sync on retail.sync_rejects;
create policy insert_sync on retail.sync_rejects for insert to authhub_user with check (
  tenant_id = (select authhub.current_tenant_id())
  and api_key_id is not distinct from (select authhub.current_api_key_id())
  and ((select authhub_private.has_tenant_permission('sync:write'))
       or store_id in (select authhub_private.organizations_with_permission('sync:write'))
       or (store_id is null and exists (select authhub_private.organizations_with_permission('sync:write')))));
comment on policy insert_sync on retail.sync_rejects is
  'A caller who may sync (sync:write) records its own rejects: under its own key, for a store it may sync, or without a store for a row that named none it may write.';
