--! Previous: sha1:218cf6c4f3697df3379850e7bde202aa3b3b316e
--! Hash: sha1:cda0f21d766ab56de89262b0beeed2f274d08b77
--! Message: Retail data hub: stores as organizations, the retail schema under the policy pattern, the Data Sync API's SQL write path, rollups, idempotency keys, the public catalogue

--! split: 100-retail-permissions.sql
-- The retail data hub (issue 16, DESIGN.md §12–13): stores' data in one schema,
-- under the same policies, validation and audit as everything else. This file:
-- the schema, and the permissions that govern it.
drop schema if exists retail cascade;
drop schema if exists retail_private cascade;

-- `retail` is exposed by PostGraphile beside `authhub`; `retail_private` holds the
-- bookkeeping no caller reads directly (idempotency keys, rollup work).
create schema retail;
create schema retail_private;
grant usage on schema retail to authhub_anonymous, authhub_user, authhub_api_client, authhub_worker;
grant usage on schema retail_private to authhub_user, authhub_authenticator, authhub_worker;

-- retail:read reads a store's data; retail:write changes its orders, customers and
-- settings; catalog:write its products, variants and stock; sync:write is what a
-- store's system holds to push its data (DESIGN §13). All can be held for a
-- subtree: a seller organization's admins manage the stores below it.
delete from authhub.level_permissions where permission_key in ('retail:read', 'retail:write', 'catalog:write', 'sync:write');
delete from authhub.permissions where key in ('retail:read', 'retail:write', 'catalog:write', 'sync:write');
insert into authhub.permissions (key, description, org_scopable) values
  ('retail:read', 'Read stores and their retail data: products, stock, customers, orders, rollups.', true),
  ('retail:write', 'Change a store''s settings, customers and orders.', true),
  ('catalog:write', 'Change a store''s products, variants and stock.', true),
  ('sync:write', 'Push a store''s data through the Data Sync API.', true);
insert into authhub.level_permissions (level, permission_key)
select l.level, p.key
from (values ('ORG_ADMIN'::authhub.role_level), ('TENANT_ADMIN'), ('SUPER_ADMIN')) l(level)
cross join (values ('retail:read'), ('retail:write'), ('catalog:write'), ('sync:write')) p(key);

--! split: 200-retail-stores.sql
-- Stores are organizations (DESIGN §12): a store's id is its organization's id and
-- its code is the organization's slug, so tenancy, the org tree (a seller with
-- stores below it), memberships, roles and the closure all apply as they are.

-- ISO 4217 currencies, a global reference table (like the permission catalogue).
create table retail.currencies (
  code        text primary key constraint currencies_code_format check (code ~ '^[A-Z]{3}$'),
  minor_units smallint not null constraint currencies_minor_units_range check (minor_units between 0 and 4),
  name        text not null
);
alter table retail.currencies enable row level security;
alter table retail.currencies force row level security;
create policy all_owner on retail.currencies for all to authhub_owner using (true) with check (true);
create policy select_all on retail.currencies for select to authhub_anonymous, authhub_user using (true);
comment on policy all_owner on retail.currencies is 'The owner (migrations) keeps the list.';
comment on policy select_all on retail.currencies is 'Everyone, anonymous callers included, reads the list of currencies.';
grant select on retail.currencies to authhub_anonymous, authhub_user;
comment on table retail.currencies is E'@behavior -insert -update -delete\nISO 4217 currencies and their minor units (cents: 2).';
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('retail.currencies', 'A global list changed only by migrations.');
insert into retail.currencies (code, minor_units, name) values
  ('AED', 2, 'UAE Dirham'), ('AFN', 2, 'Afghani'), ('ALL', 2, 'Lek'), ('AMD', 2, 'Armenian Dram'), ('AOA', 2, 'Kwanza'),
  ('ARS', 2, 'Argentine Peso'), ('AUD', 2, 'Australian Dollar'), ('AWG', 2, 'Aruban Florin'), ('AZN', 2, 'Azerbaijan Manat'),
  ('BAM', 2, 'Convertible Mark'), ('BBD', 2, 'Barbados Dollar'), ('BDT', 2, 'Taka'), ('BGN', 2, 'Bulgarian Lev'), ('BHD', 3, 'Bahraini Dinar'),
  ('BIF', 0, 'Burundi Franc'), ('BMD', 2, 'Bermudian Dollar'), ('BND', 2, 'Brunei Dollar'), ('BOB', 2, 'Boliviano'), ('BRL', 2, 'Brazilian Real'),
  ('BSD', 2, 'Bahamian Dollar'), ('BTN', 2, 'Ngultrum'), ('BWP', 2, 'Pula'), ('BYN', 2, 'Belarusian Ruble'), ('BZD', 2, 'Belize Dollar'),
  ('CAD', 2, 'Canadian Dollar'), ('CDF', 2, 'Congolese Franc'), ('CHF', 2, 'Swiss Franc'), ('CLP', 0, 'Chilean Peso'), ('CNY', 2, 'Yuan Renminbi'),
  ('COP', 2, 'Colombian Peso'), ('CRC', 2, 'Costa Rican Colon'), ('CUP', 2, 'Cuban Peso'), ('CVE', 2, 'Cabo Verde Escudo'), ('CZK', 2, 'Czech Koruna'),
  ('DJF', 0, 'Djibouti Franc'), ('DKK', 2, 'Danish Krone'), ('DOP', 2, 'Dominican Peso'), ('DZD', 2, 'Algerian Dinar'), ('EGP', 2, 'Egyptian Pound'),
  ('ERN', 2, 'Nakfa'), ('ETB', 2, 'Ethiopian Birr'), ('EUR', 2, 'Euro'), ('FJD', 2, 'Fiji Dollar'), ('FKP', 2, 'Falkland Islands Pound'),
  ('GBP', 2, 'Pound Sterling'), ('GEL', 2, 'Lari'), ('GHS', 2, 'Ghana Cedi'), ('GIP', 2, 'Gibraltar Pound'), ('GMD', 2, 'Dalasi'),
  ('GNF', 0, 'Guinean Franc'), ('GTQ', 2, 'Quetzal'), ('GYD', 2, 'Guyana Dollar'), ('HKD', 2, 'Hong Kong Dollar'), ('HNL', 2, 'Lempira'),
  ('HTG', 2, 'Gourde'), ('HUF', 2, 'Forint'), ('IDR', 2, 'Rupiah'), ('ILS', 2, 'New Israeli Sheqel'), ('INR', 2, 'Indian Rupee'),
  ('IQD', 3, 'Iraqi Dinar'), ('IRR', 2, 'Iranian Rial'), ('ISK', 0, 'Iceland Krona'), ('JMD', 2, 'Jamaican Dollar'), ('JOD', 3, 'Jordanian Dinar'),
  ('JPY', 0, 'Yen'), ('KES', 2, 'Kenyan Shilling'), ('KGS', 2, 'Som'), ('KHR', 2, 'Riel'), ('KMF', 0, 'Comorian Franc'),
  ('KPW', 2, 'North Korean Won'), ('KRW', 0, 'Won'), ('KWD', 3, 'Kuwaiti Dinar'), ('KYD', 2, 'Cayman Islands Dollar'), ('KZT', 2, 'Tenge'),
  ('LAK', 2, 'Lao Kip'), ('LBP', 2, 'Lebanese Pound'), ('LKR', 2, 'Sri Lanka Rupee'), ('LRD', 2, 'Liberian Dollar'), ('LSL', 2, 'Loti'),
  ('LYD', 3, 'Libyan Dinar'), ('MAD', 2, 'Moroccan Dirham'), ('MDL', 2, 'Moldovan Leu'), ('MGA', 2, 'Malagasy Ariary'), ('MKD', 2, 'Denar'),
  ('MMK', 2, 'Kyat'), ('MNT', 2, 'Tugrik'), ('MOP', 2, 'Pataca'), ('MRU', 2, 'Ouguiya'), ('MUR', 2, 'Mauritius Rupee'),
  ('MVR', 2, 'Rufiyaa'), ('MWK', 2, 'Malawi Kwacha'), ('MXN', 2, 'Mexican Peso'), ('MYR', 2, 'Malaysian Ringgit'), ('MZN', 2, 'Mozambique Metical'),
  ('NAD', 2, 'Namibia Dollar'), ('NGN', 2, 'Naira'), ('NIO', 2, 'Cordoba Oro'), ('NOK', 2, 'Norwegian Krone'), ('NPR', 2, 'Nepalese Rupee'),
  ('NZD', 2, 'New Zealand Dollar'), ('OMR', 3, 'Rial Omani'), ('PAB', 2, 'Balboa'), ('PEN', 2, 'Sol'), ('PGK', 2, 'Kina'),
  ('PHP', 2, 'Philippine Peso'), ('PKR', 2, 'Pakistan Rupee'), ('PLN', 2, 'Zloty'), ('PYG', 0, 'Guarani'), ('QAR', 2, 'Qatari Rial'),
  ('RON', 2, 'Romanian Leu'), ('RSD', 2, 'Serbian Dinar'), ('RUB', 2, 'Russian Ruble'), ('RWF', 0, 'Rwanda Franc'), ('SAR', 2, 'Saudi Riyal'),
  ('SBD', 2, 'Solomon Islands Dollar'), ('SCR', 2, 'Seychelles Rupee'), ('SDG', 2, 'Sudanese Pound'), ('SEK', 2, 'Swedish Krona'), ('SGD', 2, 'Singapore Dollar'),
  ('SHP', 2, 'Saint Helena Pound'), ('SLE', 2, 'Leone'), ('SOS', 2, 'Somali Shilling'), ('SRD', 2, 'Surinam Dollar'), ('SSP', 2, 'South Sudanese Pound'),
  ('STN', 2, 'Dobra'), ('SVC', 2, 'El Salvador Colon'), ('SYP', 2, 'Syrian Pound'), ('SZL', 2, 'Lilangeni'), ('THB', 2, 'Baht'),
  ('TJS', 2, 'Somoni'), ('TMT', 2, 'Turkmenistan New Manat'), ('TND', 3, 'Tunisian Dinar'), ('TOP', 2, 'Pa''anga'), ('TRY', 2, 'Turkish Lira'),
  ('TTD', 2, 'Trinidad and Tobago Dollar'), ('TWD', 2, 'New Taiwan Dollar'), ('TZS', 2, 'Tanzanian Shilling'), ('UAH', 2, 'Hryvnia'), ('UGX', 0, 'Uganda Shilling'),
  ('USD', 2, 'US Dollar'), ('UYU', 2, 'Peso Uruguayo'), ('UZS', 2, 'Uzbekistan Sum'), ('VES', 2, 'Bolivar Soberano'), ('VND', 0, 'Dong'),
  ('VUV', 0, 'Vatu'), ('WST', 2, 'Tala'), ('XAF', 0, 'CFA Franc BEAC'), ('XCD', 2, 'East Caribbean Dollar'), ('XOF', 0, 'CFA Franc BCEAO'),
  ('XPF', 0, 'CFP Franc'), ('YER', 2, 'Yemeni Rial'), ('ZAR', 2, 'Rand'), ('ZMW', 2, 'Zambian Kwacha'), ('ZWL', 2, 'Zimbabwe Dollar');

-- IANA time zone names, as PostgreSQL's own tz database knows them. Declared
-- immutable for use in a check: the list changes only with a PostgreSQL upgrade,
-- and a zone is never removed from it (only aliased).
create function retail_private.is_timezone(name text) returns boolean
  language sql immutable parallel safe
  set search_path = pg_catalog, pg_temp
as $$
  select exists (select 1 from pg_catalog.pg_timezone_names z where z.name = is_timezone.name)
$$;
comment on function retail_private.is_timezone(text) is 'Whether a name is an IANA time zone PostgreSQL knows (Europe/Berlin, UTC…).';
grant execute on function retail_private.is_timezone(text) to authhub_user, authhub_api_client, authhub_worker;

create table retail.stores (
  tenant_id  uuid not null default authhub.current_tenant_id(),
  id         uuid not null,
  code       authhub.slug not null,
  name       authhub.display_text not null,
  timezone   text not null default 'UTC' constraint stores_timezone_known check (retail_private.is_timezone(timezone)),
  currency   text not null default 'USD',
  status     text not null default 'active' constraint stores_status check (status in ('active', 'closed')),
  version    bigint not null default 1,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint stores_code_key unique (tenant_id, code),
  constraint stores_organization_fkey foreign key (tenant_id, id) references authhub.organizations (tenant_id, id) on update cascade on delete cascade,
  constraint stores_currency_fkey foreign key (currency) references retail.currencies (code)
);
alter table retail.stores enable row level security;
alter table retail.stores force row level security;
comment on table retail.stores is E'@behavior -insert\nA store: an organization of the tenant that sells (create one with createStore).';
comment on column retail.stores.id is 'The store''s organization''s id.';
comment on column retail.stores.code is 'The organization''s slug (renaming the organization renames the store).';
comment on column retail.stores.timezone is 'IANA time zone: orders'' localDate is their placedAt in it.';
comment on column retail.stores.currency is 'ISO 4217 code of the store''s prices and totals.';
comment on column retail.stores.version is 'Bumped on every change; give it back in a patch to update only what you read.';

--! split: 300-retail-tables.sql
-- The retail tables (DESIGN §12). Every key leads with (tenant_id, store_id), so
-- rows can be distributed by tenant (or later by store) and never point into
-- another store. Money is bigint minor units beside its currency; no floats.
-- Rows a store's system pushes keep the store's own id (external_id), the
-- version it sent (source_version) and, when it deleted them, a tombstone
-- (deleted_at), so a late older row never brings one back. `version` is the
-- hub's own counter, bumped on every change (optimistic concurrency).

create domain retail.sku as text
  constraint sku_format check (value ~ '^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$');
comment on domain retail.sku is 'A stock keeping unit: 1-64 letters, digits and . _ / - (starting with a letter or digit).';

create domain retail.money_minor as bigint
  constraint money_minor_range check (value between 0 and 1000000000000000);
comment on domain retail.money_minor is 'An amount in minor units (cents), not negative.';

create table retail.products (
  tenant_id      uuid not null default authhub.current_tenant_id(),
  store_id       uuid not null,
  id             uuid not null default gen_random_uuid(),
  external_id    authhub.external_id,
  title          authhub.display_text not null,
  status         text not null default 'draft' constraint products_status check (status in ('draft', 'active', 'archived')),
  published      boolean not null default false,
  attributes     jsonb not null default '{}' constraint products_attributes_object check (jsonb_typeof(attributes) = 'object' and pg_column_size(attributes) <= 16384),
  version        bigint not null default 1,
  source_version bigint constraint products_source_version_range check (source_version >= 0),
  deleted_at     timestamptz,
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now(),
  primary key (tenant_id, store_id, id),
  constraint products_external_id_key unique (tenant_id, store_id, external_id),
  constraint products_store_fkey foreign key (tenant_id, store_id) references retail.stores (tenant_id, id) on delete cascade
);
-- The catalogue's listing and the admin's filters.
create index products_status_idx on retail.products (tenant_id, store_id, status, published);
comment on table retail.products is 'A store''s products (with their variants).';
comment on column retail.products.external_id is 'The store''s own id for the product (null for products created in the hub).';
comment on column retail.products.source_version is 'The version the store last sent; an older one is ignored.';
comment on column retail.products.deleted_at is 'When the store deleted it (a tombstone: kept so a late older update cannot bring it back).';

create table retail.variants (
  tenant_id   uuid not null default authhub.current_tenant_id(),
  store_id    uuid not null,
  id          uuid not null default gen_random_uuid(),
  product_id  uuid not null,
  sku         retail.sku not null,
  title       authhub.display_text,
  price_minor retail.money_minor not null,
  currency    text not null,
  version     bigint not null default 1,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now(),
  primary key (tenant_id, store_id, id),
  constraint variants_sku_key unique (tenant_id, store_id, sku),
  constraint variants_product_fkey foreign key (tenant_id, store_id, product_id) references retail.products (tenant_id, store_id, id) on delete cascade,
  constraint variants_currency_fkey foreign key (currency) references retail.currencies (code)
);
create index variants_product_idx on retail.variants (tenant_id, store_id, product_id);
comment on table retail.variants is 'A product''s sellable variants: SKU (unique in the store) and price.';

create table retail.inventory_levels (
  tenant_id      uuid not null default authhub.current_tenant_id(),
  store_id       uuid not null,
  sku            retail.sku not null,
  location       authhub.slug not null default 'default',
  on_hand        integer not null constraint inventory_levels_on_hand_range check (on_hand between -1000000000 and 1000000000),
  reserved       integer not null default 0 constraint inventory_levels_reserved_range check (reserved between 0 and 1000000000),
  available      integer generated always as (on_hand - reserved) stored,
  version        bigint not null default 1,
  source_version bigint constraint inventory_levels_source_version_range check (source_version >= 0),
  deleted_at     timestamptz,
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now(),
  primary key (tenant_id, store_id, sku, location),
  constraint inventory_levels_store_fkey foreign key (tenant_id, store_id) references retail.stores (tenant_id, id) on delete cascade
);
comment on table retail.inventory_levels is 'Stock of a SKU at a location of a store (available = on hand - reserved).';

create table retail.customers (
  tenant_id      uuid not null default authhub.current_tenant_id(),
  store_id       uuid not null,
  id             uuid not null default gen_random_uuid(),
  external_id    authhub.external_id,
  email          authhub.email not null,
  name           authhub.display_text,
  version        bigint not null default 1,
  source_version bigint constraint customers_source_version_range check (source_version >= 0),
  deleted_at     timestamptz,
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now(),
  primary key (tenant_id, store_id, id),
  constraint customers_external_id_key unique (tenant_id, store_id, external_id),
  constraint customers_store_fkey foreign key (tenant_id, store_id) references retail.stores (tenant_id, id) on delete cascade
);
create index customers_email_idx on retail.customers (tenant_id, store_id, email);
comment on table retail.customers is 'A store''s customers. E-mail and name are personal data: never in the public catalogue, and in the audit log only for tenant admins.';

create table retail.orders (
  tenant_id      uuid not null default authhub.current_tenant_id(),
  store_id       uuid not null,
  id             uuid not null default gen_random_uuid(),
  external_id    authhub.external_id,
  number         text not null constraint orders_number_format check (number ~ '^[A-Za-z0-9][A-Za-z0-9._#/-]{0,63}$'),
  status         text not null default 'pending' constraint orders_status check (status in ('pending', 'paid', 'fulfilled', 'cancelled', 'refunded')),
  currency       text not null,
  placed_at      timestamptz not null,
  local_date     date not null,
  customer_id    uuid,
  customer_external_id authhub.external_id,
  subtotal_minor bigint not null default 0,
  discount_minor bigint not null default 0,
  tax_minor      bigint not null default 0,
  total_minor    bigint not null default 0,
  version        bigint not null default 1,
  source_version bigint constraint orders_source_version_range check (source_version >= 0),
  deleted_at     timestamptz,
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now(),
  primary key (tenant_id, store_id, id),
  constraint orders_external_id_key unique (tenant_id, store_id, external_id),
  constraint orders_number_key unique (tenant_id, store_id, number),
  constraint orders_store_fkey foreign key (tenant_id, store_id) references retail.stores (tenant_id, id) on delete cascade,
  constraint orders_customer_fkey foreign key (tenant_id, store_id, customer_id) references retail.customers (tenant_id, store_id, id) on delete set null (customer_id),
  constraint orders_currency_fkey foreign key (currency) references retail.currencies (code),
  constraint orders_placed_at_range check (placed_at between '2000-01-01' and '2100-01-01')
);
-- Daily figures and the admin's lookups.
create index orders_local_date_idx on retail.orders (tenant_id, store_id, local_date);
create index orders_status_idx on retail.orders (tenant_id, store_id, status);
create index orders_customer_idx on retail.orders (tenant_id, store_id, customer_id);
comment on table retail.orders is 'A store''s orders. Totals are computed from the lines; localDate is placedAt in the store''s time zone.';
comment on column retail.orders.local_date is 'The day the order was placed, in the store''s time zone (computed).';
comment on column retail.orders.total_minor is 'subtotal - discount + tax, computed from the lines.';
comment on column retail.orders.customer_external_id is 'The store''s id of the customer, as synced: the order is linked to the customer (customer_id) whichever of the two arrives first.';
create index orders_customer_external_idx on retail.orders (tenant_id, store_id, customer_external_id) where customer_external_id is not null;

create table retail.order_lines (
  tenant_id        uuid not null default authhub.current_tenant_id(),
  store_id         uuid not null,
  order_id         uuid not null,
  line_no          integer not null constraint order_lines_line_no_range check (line_no between 1 and 10000),
  sku              retail.sku not null,
  title            authhub.display_text,
  quantity         integer not null constraint order_lines_quantity_positive check (quantity between 1 and 1000000),
  unit_price_minor retail.money_minor not null,
  discount_minor   retail.money_minor not null default 0,
  tax_minor        retail.money_minor not null default 0,
  total_minor      bigint generated always as (quantity * unit_price_minor - discount_minor + tax_minor) stored,
  version          bigint not null default 1,
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now(),
  primary key (tenant_id, store_id, order_id, line_no),
  constraint order_lines_order_fkey foreign key (tenant_id, store_id, order_id) references retail.orders (tenant_id, store_id, id) on delete cascade,
  constraint order_lines_discount_within check (discount_minor <= quantity * unit_price_minor)
);
create index order_lines_sku_idx on retail.order_lines (tenant_id, store_id, sku);
comment on table retail.order_lines is 'An order''s lines. total = quantity × unit price - discount + tax.';

-- Which fields the hub owns and which the store's own system does (issue 16):
-- the hub may edit a store-owned field (an admin's correction), and the edit is
-- recorded in store_owned_edits so the store can be told (outbound events).
create table retail.field_ownership (
  entity text not null constraint field_ownership_entity check (entity in ('products', 'variants', 'inventory_levels', 'customers', 'orders', 'order_lines', 'stores')),
  field  text not null,
  owner  text not null constraint field_ownership_owner check (owner in ('hub', 'store')),
  primary key (entity, field)
);
alter table retail.field_ownership enable row level security;
alter table retail.field_ownership force row level security;
create policy all_owner on retail.field_ownership for all to authhub_owner using (true) with check (true);
create policy select_all on retail.field_ownership for select to authhub_user using (true);
comment on policy all_owner on retail.field_ownership is 'The owner (migrations) decides who owns what.';
comment on policy select_all on retail.field_ownership is 'Every signed-in caller reads who owns which field.';
grant select on retail.field_ownership to authhub_user;
comment on table retail.field_ownership is E'@behavior -insert -update -delete\nWhich fields a store''s own system owns (its sync overwrites them) and which the hub owns.';
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('retail.field_ownership', 'A global list changed only by migrations.');
insert into retail.field_ownership (entity, field, owner) values
  ('products', 'title', 'store'), ('products', 'status', 'store'), ('products', 'attributes', 'store'), ('products', 'published', 'hub'),
  ('variants', 'sku', 'store'), ('variants', 'title', 'store'), ('variants', 'price_minor', 'store'), ('variants', 'currency', 'store'),
  ('inventory_levels', 'on_hand', 'store'), ('inventory_levels', 'reserved', 'hub'),
  ('customers', 'email', 'store'), ('customers', 'name', 'store'),
  ('orders', 'number', 'store'), ('orders', 'status', 'store'), ('orders', 'currency', 'store'), ('orders', 'placed_at', 'store'), ('orders', 'customer_id', 'store'),
  ('order_lines', 'sku', 'store'), ('order_lines', 'quantity', 'store'), ('order_lines', 'unit_price_minor', 'store'),
  ('order_lines', 'discount_minor', 'store'), ('order_lines', 'tax_minor', 'store'), ('order_lines', 'title', 'store');

create table retail.store_owned_edits (
  tenant_id   uuid not null,
  store_id    uuid not null,
  id          bigint generated always as identity,
  entity      text not null,
  row_key     jsonb not null,
  fields      text[] not null,
  actor       text not null,
  occurred_at timestamptz not null default now(),
  primary key (tenant_id, store_id, id),
  constraint store_owned_edits_store_fkey foreign key (tenant_id, store_id) references retail.stores (tenant_id, id) on delete cascade
);
comment on table retail.store_owned_edits is E'@behavior -insert -update -delete\nEdits made in the hub to fields a store''s own system owns, to be told to that store.';

--! split: 400-retail-triggers.sql
-- What every retail row gets on its way in: timestamps; `version` bumped on
-- every change and, when a patch names the version it read, refused if the row
-- moved on since (optimistic concurrency: AH409, nothing changed); a store's
-- code mirrors its organization's slug; an order's local day from its store's
-- time zone; an order's totals from its lines.

create function retail_private.tg__version() returns trigger
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
as $$
begin
  -- A patch carrying the version it read: it must still be the row's. (A patch without
  -- one leaves new.version as it was: last write wins, as before versions existed.)
  if new.version is distinct from old.version then
    raise exception 'This record was changed since version % was read (it is at version %); read it again.', new.version, old.version
      using errcode = 'AH409', column = 'version';
  end if;
  new.version := old.version + 1;
  return new;
end;
$$;
comment on function retail_private.tg__version() is 'Bumps version on every update; refuses a patch naming a version the row has moved past.';

-- A store is its organization: its code is always the organization's slug.
create function retail_private.tg_stores__code() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  select o.slug into new.code from authhub.organizations o where o.tenant_id = new.tenant_id and o.id = new.id;
  return new;
end;
$$;
comment on function retail_private.tg_stores__code() is 'Sets a store''s code from its organization''s slug. Definer: the caller may not read the organization.';

create function retail_private.tg_organizations__store_code() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  update retail.stores s set code = n.slug
  from new_rows n
  where s.tenant_id = n.tenant_id and s.id = n.id and s.code is distinct from n.slug;
  return null;
end;
$$;
comment on function retail_private.tg_organizations__store_code() is 'Renaming an organization renames its store. Definer: the renamer may not write stores.';
create trigger _310_store_code after update on authhub.organizations
  referencing new table as new_rows
  for each statement execute function retail_private.tg_organizations__store_code();

-- An order's day in its store's time zone. Definer: a store system's key may
-- write orders without reading its store's settings.
create function retail_private.tg_orders__local_date() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  new.local_date := (new.placed_at at time zone (
    select s.timezone from retail.stores s where s.tenant_id = new.tenant_id and s.id = new.store_id))::date;
  return new;
end;
$$;
comment on function retail_private.tg_orders__local_date() is 'Computes local_date from placed_at and the store''s time zone.';

-- An order's totals from its lines, after any statement that changed lines:
-- only orders whose totals actually differ are updated (a sync that wrote the
-- right totals with the order changes nothing twice).
create function retail_private.tg_order_lines__totals() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  update retail.orders o
  set subtotal_minor = t.subtotal, discount_minor = t.discount, tax_minor = t.tax, total_minor = t.subtotal - t.discount + t.tax
  from (
    select k.tenant_id, k.store_id, k.order_id,
           coalesce(sum(l.quantity::bigint * l.unit_price_minor), 0) as subtotal,
           coalesce(sum(l.discount_minor), 0) as discount,
           coalesce(sum(l.tax_minor), 0) as tax
    from (select distinct tenant_id, store_id, order_id from changed_rows) k
    left join retail.order_lines l on l.tenant_id = k.tenant_id and l.store_id = k.store_id and l.order_id = k.order_id
    group by k.tenant_id, k.store_id, k.order_id
  ) t
  where o.tenant_id = t.tenant_id and o.store_id = t.store_id and o.id = t.order_id
    and (o.subtotal_minor, o.discount_minor, o.tax_minor) is distinct from (t.subtotal, t.discount, t.tax);
  return null;
end;
$$;
comment on function retail_private.tg_order_lines__totals() is 'Recomputes the totals of the orders whose lines a statement changed. Definer: the totals are no caller''s to write.';

-- Who may edit a store-owned field in the hub may, but the edit is recorded
-- (retail.store_owned_edits) so the store can be told. A store's own sync
-- (retail.sync, which sets retail.sync_store) is not an edit to tell it about.
create function retail_private.tg__store_owned_edits() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  key_columns text[] := tg_argv;
begin
  if nullif(pg_catalog.current_setting('retail.sync_store', true), '') is not null then
    return null;
  end if;
  insert into retail.store_owned_edits (tenant_id, store_id, entity, row_key, fields, actor)
  select (n.r ->> 'tenant_id')::uuid, (n.r ->> 'store_id')::uuid, tg_table_name,
         (select jsonb_object_agg(k, n.r -> k) from unnest(key_columns) k),
         changed.fields, authhub_private.current_actor()
  from (select to_jsonb(x) as r from new_rows x) n
  join (select to_jsonb(x) as r from old_rows x) o
    on (select bool_and(n.r -> k = o.r -> k) from unnest(key_columns) k)
  cross join lateral (
    select array_agg(f.field order by f.field) as fields
    from retail.field_ownership f
    where f.entity = tg_table_name and f.owner = 'store' and n.r -> f.field is distinct from o.r -> f.field
  ) changed
  where changed.fields is not null;
  return null;
end;
$$;
comment on function retail_private.tg__store_owned_edits() is 'Records hub edits of store-owned fields (retail.field_ownership) for the store to be told.';

do $$
declare
  t text;
  keys text;
begin
  foreach t in array array['stores', 'products', 'variants', 'inventory_levels', 'customers', 'orders', 'order_lines'] loop
    execute format('create trigger _100_timestamps before insert or update on retail.%I for each row execute function authhub_private.tg__timestamps()', t);
    execute format('create trigger _110_version before update on retail.%I for each row execute function retail_private.tg__version()', t);
  end loop;
  for t, keys in select * from (values ('products', '''id'''), ('variants', '''id'''), ('inventory_levels', '''sku'', ''location'''), ('customers', '''id'''), ('orders', '''id'''), ('order_lines', '''order_id'', ''line_no''')) v loop
    execute format('create trigger _800_store_owned_edits after update on retail.%I referencing old table as old_rows new table as new_rows for each statement execute function retail_private.tg__store_owned_edits(%s)', t, keys);
  end loop;
end;
$$;
create trigger _120_code before insert or update on retail.stores for each row execute function retail_private.tg_stores__code();
create trigger _120_local_date before insert or update of placed_at, store_id on retail.orders for each row execute function retail_private.tg_orders__local_date();
create trigger _300_totals_insert after insert on retail.order_lines referencing new table as changed_rows for each statement execute function retail_private.tg_order_lines__totals();
create trigger _300_totals_update after update on retail.order_lines referencing new table as changed_rows for each statement execute function retail_private.tg_order_lines__totals();
create trigger _300_totals_delete after delete on retail.order_lines referencing old table as changed_rows for each statement execute function retail_private.tg_order_lines__totals();

--! split: 500-retail-policies.sql
-- Who sees and changes what (DESIGN §12): tenant admins every store of the
-- tenant; org admins the stores in their subtree (a seller's admins the seller's
-- stores); custom roles through retail:read, retail:write and catalog:write;
-- API keys through their scopes, a key bound to a store's organization that
-- store only. Reads need retail:read; products, variants and stock are written
-- with catalog:write, customers and orders with retail:write; a store system's
-- key with sync:write writes (and reads back) everything of its stores. The
-- pattern is docs/conventions.md's: the tenant match, a tenant-wide right, a
-- store-scoped right through the organization closure.

-- The stores a caller holds a permission for, tenant-wide or through its scope;
-- `(select …)` in a policy, so it is computed once per statement.
create function retail_private.holds(permission text, store_id uuid) returns boolean
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select authhub_private.has_tenant_permission(permission)
      or holds.store_id in (select authhub_private.organizations_with_permission(permission))
$$;
comment on function retail_private.holds(text, uuid) is 'Whether the caller holds a permission for a store (tenant-wide or through its organization scope). For write checks: reads use the wrapped pattern.';
grant execute on function retail_private.holds(text, uuid) to authhub_user;

-- The row condition of a write policy (written out in each policy: this only builds its text).
create function retail_private.write_condition(store_column text, permission text) returns text
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$
  select format($c$tenant_id = (select authhub.current_tenant_id())
    and ((select authhub_private.has_tenant_permission(%1$L)) or (select authhub_private.has_tenant_permission('sync:write'))
         or %2$I in (select authhub_private.organizations_with_permission(%1$L))
         or %2$I in (select authhub_private.organizations_with_permission('sync:write')))$c$, permission, store_column)
$$;

do $$
declare
  t text;
  w text;
begin
  for t, w in select * from (values ('products', 'catalog:write'), ('variants', 'catalog:write'), ('inventory_levels', 'catalog:write'),
                                    ('customers', 'retail:write'), ('orders', 'retail:write'), ('order_lines', 'retail:write')) v loop
    execute format('alter table retail.%I enable row level security', t);
    execute format('alter table retail.%I force row level security', t);
    execute format('create policy all_owner on retail.%I for all to authhub_owner using (true) with check (true)', t);
    execute format($p$comment on policy all_owner on retail.%I is 'The owner (migrations, the CLI, the worker''s connection). No request runs as the owner.'$p$, t);
    execute format($p$
      create policy select_permitted on retail.%I for select to authhub_user using (
        tenant_id = (select authhub.current_tenant_id())
        and ((select authhub_private.has_tenant_permission('retail:read'))
             or (select authhub_private.has_tenant_permission('sync:write'))
             or store_id in (select authhub_private.organizations_with_permission('retail:read'))
             or store_id in (select authhub_private.organizations_with_permission('sync:write'))))$p$, t);
    execute format($p$comment on policy select_permitted on retail.%I is 'Holders of retail:read, tenant-wide or for the stores in their scope; a store system''s key (sync:write) reads back what it writes.'$p$, t);
    -- Writes are their own policies (not FOR ALL), so a read evaluates select_permitted alone.
    execute format($p$create policy insert_permitted on retail.%I for insert to authhub_user with check (%s)$p$, t, retail_private.write_condition('store_id', w));
    execute format($p$create policy update_permitted on retail.%I for update to authhub_user using (%s) with check (%s)$p$, t, retail_private.write_condition('store_id', w), retail_private.write_condition('store_id', w));
    execute format($p$create policy delete_permitted on retail.%I for delete to authhub_user using (%s)$p$, t, retail_private.write_condition('store_id', w));
    execute format($p$comment on policy insert_permitted on retail.%I is 'Holders of %s (or a store system''s sync:write), tenant-wide or for the stores in their scope, create. A key bound to a store writes that store only.'$p$, t, w);
    execute format($p$comment on policy update_permitted on retail.%I is 'Holders of %s (or a store system''s sync:write), tenant-wide or for the stores in their scope, change, and cannot move a row to a store out of their scope.'$p$, t, w);
    execute format($p$comment on policy delete_permitted on retail.%I is 'Holders of %s (or a store system''s sync:write), tenant-wide or for the stores in their scope, delete.'$p$, t, w);
    execute format('grant select, delete on retail.%I to authhub_user', t);
  end loop;
end;
$$;

alter table retail.stores enable row level security;
alter table retail.stores force row level security;
create policy all_owner on retail.stores for all to authhub_owner using (true) with check (true);
comment on policy all_owner on retail.stores is 'The owner (migrations, the CLI, the worker''s connection). No request runs as the owner.';
create policy select_permitted on retail.stores for select to authhub_user using (
  tenant_id = (select authhub.current_tenant_id())
  and ((select authhub_private.has_tenant_permission('retail:read'))
       or (select authhub_private.has_tenant_permission('sync:write'))
       or id in (select authhub_private.organizations_with_permission('retail:read'))
       or id in (select authhub_private.organizations_with_permission('sync:write'))));
comment on policy select_permitted on retail.stores is 'Holders of retail:read see the tenant''s stores or those in their scope (a seller''s admins its stores); a store system''s key its store.';
create policy insert_permitted on retail.stores for insert to authhub_user with check (
  tenant_id = (select authhub.current_tenant_id())
  and ((select authhub_private.has_tenant_permission('retail:write')) or id in (select authhub_private.organizations_with_permission('retail:write'))));
create policy update_permitted on retail.stores for update to authhub_user using (
  tenant_id = (select authhub.current_tenant_id())
  and ((select authhub_private.has_tenant_permission('retail:write')) or id in (select authhub_private.organizations_with_permission('retail:write'))));
comment on policy insert_permitted on retail.stores is 'Holders of retail:write for the organization (tenant-wide, or in their scope) make it a store (createStore).';
comment on policy update_permitted on retail.stores is 'Holders of retail:write for the store change its settings; deleting its organization deletes it.';
grant select on retail.stores to authhub_user;
grant insert (tenant_id, id, name, timezone, currency, status) on retail.stores to authhub_user;
grant update (name, timezone, currency, status, version) on retail.stores to authhub_user;

-- Column grants: what people change through GraphQL, and beside it what only a
-- store's system sets (its ids, versions and tombstones: authhub_api_client).
grant insert (tenant_id, store_id, title, status, published, attributes) on retail.products to authhub_user;
grant update (title, status, published, attributes, version) on retail.products to authhub_user;
grant insert (external_id, source_version, deleted_at) on retail.products to authhub_api_client;
grant update (source_version, deleted_at) on retail.products to authhub_api_client;

grant insert (tenant_id, store_id, product_id, sku, title, price_minor, currency) on retail.variants to authhub_user;
grant update (sku, title, price_minor, currency, version) on retail.variants to authhub_user;

grant insert (tenant_id, store_id, sku, location, on_hand, reserved) on retail.inventory_levels to authhub_user;
grant update (on_hand, reserved, version) on retail.inventory_levels to authhub_user;
grant insert (source_version, deleted_at) on retail.inventory_levels to authhub_api_client;
grant update (source_version, deleted_at) on retail.inventory_levels to authhub_api_client;

grant insert (tenant_id, store_id, email, name) on retail.customers to authhub_user;
grant update (email, name, version) on retail.customers to authhub_user;
grant insert (external_id, source_version, deleted_at) on retail.customers to authhub_api_client;
grant update (source_version, deleted_at) on retail.customers to authhub_api_client;

grant insert (tenant_id, store_id, number, status, currency, placed_at, customer_id) on retail.orders to authhub_user;
grant update (number, status, currency, placed_at, customer_id, version) on retail.orders to authhub_user;
-- A store's system sends its orders with their totals computed from the lines
-- (the lines' trigger recomputes them whatever was sent).
grant insert (external_id, customer_external_id, source_version, deleted_at, subtotal_minor, discount_minor, tax_minor, total_minor) on retail.orders to authhub_api_client;
grant update (customer_external_id, source_version, deleted_at, subtotal_minor, discount_minor, tax_minor, total_minor) on retail.orders to authhub_api_client;

grant insert (tenant_id, store_id, order_id, line_no, sku, title, quantity, unit_price_minor, discount_minor, tax_minor) on retail.order_lines to authhub_user;
grant update (sku, title, quantity, unit_price_minor, discount_minor, tax_minor, version) on retail.order_lines to authhub_user;

alter table retail.store_owned_edits enable row level security;
alter table retail.store_owned_edits force row level security;
create policy all_owner on retail.store_owned_edits for all to authhub_owner using (true) with check (true);
comment on policy all_owner on retail.store_owned_edits is 'The owner (written by a definer trigger).';
create policy select_permitted on retail.store_owned_edits for select to authhub_user using (
  tenant_id = (select authhub.current_tenant_id())
  and ((select authhub_private.has_tenant_permission('retail:read')) or store_id in (select authhub_private.organizations_with_permission('retail:read'))));
comment on policy select_permitted on retail.store_owned_edits is 'Holders of retail:read for the store see the hub''s edits of its store-owned fields.';
grant select on retail.store_owned_edits to authhub_user;
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('retail.store_owned_edits', 'A record of audited changes (each edit is in the audit log as the row''s own change).');

drop function retail_private.write_condition(text, text);

--! split: 600-retail-create-store.sql
-- createStore (DESIGN §12): an organization and its store in one step, as the
-- caller (RLS decides: org:write where the organization is made, retail:write
-- for the store). Time zone and currency are checked first, so the error names
-- the field. The operator (the CLI, as the owner) names the tenant through the
-- jwt.claims.tenant_id setting like any caller.
create function retail.create_store(code authhub.slug, name authhub.display_text, timezone text default 'UTC', currency text default 'USD', parent_id uuid default null)
  returns retail.stores
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
as $$
declare
  org_id uuid;
  created retail.stores;
begin
  if create_store.timezone is null or not retail_private.is_timezone(create_store.timezone) then
    raise exception 'Unknown time zone %: use an IANA name such as Europe/Berlin.', coalesce(create_store.timezone, 'null') using errcode = 'AH422', column = 'timezone';
  end if;
  if create_store.currency is null or not exists (select 1 from retail.currencies c where c.code = create_store.currency) then
    raise exception 'Unknown currency %: use an ISO 4217 code such as EUR.', coalesce(create_store.currency, 'null') using errcode = 'AH422', column = 'currency';
  end if;
  insert into authhub.organizations (tenant_id, slug, name, parent_id)
  values (authhub.current_tenant_id(), create_store.code, create_store.name, create_store.parent_id)
  returning id into org_id;
  insert into retail.stores (tenant_id, id, name, timezone, currency)
  values (authhub.current_tenant_id(), org_id, create_store.name, create_store.timezone, create_store.currency)
  returning * into created;
  return created;
end;
$$;
comment on function retail.create_store(authhub.slug, authhub.display_text, text, text, uuid) is
  'Creates a store: an organization (under parentId, e.g. a seller) and its store settings (IANA time zone, ISO 4217 currency).';
grant execute on function retail.create_store(authhub.slug, authhub.display_text, text, text, uuid) to authhub_user;

--! split: 700-retail-rollups.sql
-- Daily rollups for the Query API (DESIGN §12): sales per store per store-local
-- day, and per SKU, counting orders that are paid or fulfilled. Kept exactly
-- once by construction: a change to an order or its lines marks its store-day
-- dirty (a statement trigger), and a worker job recomputes each dirty store-day
-- from the orders themselves. A recomputation is idempotent, so a shuffled,
-- duplicated or replayed stream ends in the same totals as the orderly one.
--
-- Concurrency: a writer marks a day with an upsert that locks the marker row
-- until it commits; the fold takes markers with `for update skip locked`, so a
-- day whose writer is still in flight stays dirty for the next fold, and a
-- marker a fold is deleting makes a new writer wait, then mark it again. The
-- fold recomputes in a statement after its delete (a fresh snapshot), so it
-- sees every write committed before it took the marker.

create table retail.daily_store_totals (
  tenant_id     uuid not null,
  store_id      uuid not null,
  day           date not null,
  currency      text not null,
  orders        integer not null,
  units         bigint not null,
  revenue_minor bigint not null,
  primary key (tenant_id, store_id, day, currency),
  constraint daily_store_totals_store_fkey foreign key (tenant_id, store_id) references retail.stores (tenant_id, id) on delete cascade
);
comment on table retail.daily_store_totals is E'@behavior -insert -update -delete\nPer store and store-local day: paid and fulfilled orders, units sold and revenue (minor units). Current within seconds of a change.';

create table retail.daily_product_totals (
  tenant_id     uuid not null,
  store_id      uuid not null,
  day           date not null,
  sku           retail.sku not null,
  units         bigint not null,
  revenue_minor bigint not null,
  primary key (tenant_id, store_id, day, sku),
  constraint daily_product_totals_store_fkey foreign key (tenant_id, store_id) references retail.stores (tenant_id, id) on delete cascade
);
create index daily_product_totals_sku_idx on retail.daily_product_totals (tenant_id, store_id, sku, day);
comment on table retail.daily_product_totals is E'@behavior -insert -update -delete\nPer store, store-local day and SKU: units sold and revenue of paid and fulfilled orders.';

create table retail_private.rollup_dirty (
  tenant_id uuid not null,
  store_id  uuid not null,
  day       date not null,
  marked_at timestamptz not null default now(),
  primary key (tenant_id, store_id, day)
);
comment on table retail_private.rollup_dirty is 'Store-days whose rollups must be recomputed (marked by triggers, taken by retail_rollups__fold).';

do $$
declare
  t text;
begin
  foreach t in array array['daily_store_totals', 'daily_product_totals'] loop
    execute format('alter table retail.%I enable row level security', t);
    execute format('alter table retail.%I force row level security', t);
    execute format('create policy all_owner on retail.%I for all to authhub_owner using (true) with check (true)', t);
    execute format($p$comment on policy all_owner on retail.%I is 'The owner (the fold, a definer function, writes them).'$p$, t);
    execute format($p$
      create policy select_permitted on retail.%I for select to authhub_user using (
        tenant_id = (select authhub.current_tenant_id())
        and ((select authhub_private.has_tenant_permission('retail:read'))
             or store_id in (select authhub_private.organizations_with_permission('retail:read'))))$p$, t);
    execute format($p$comment on policy select_permitted on retail.%I is 'The same visibility as the orders: holders of retail:read, tenant-wide or for the stores in their scope.'$p$, t);
    execute format('grant select on retail.%I to authhub_user', t);
  end loop;
end;
$$;
alter table retail_private.rollup_dirty enable row level security;
alter table retail_private.rollup_dirty force row level security;
create policy all_owner on retail_private.rollup_dirty for all to authhub_owner using (true) with check (true);
comment on policy all_owner on retail_private.rollup_dirty is 'The owner (definer triggers mark, the fold takes).';
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('retail.daily_store_totals', 'Derived from orders, whose changes are audited.'),
  ('retail.daily_product_totals', 'Derived from order lines, whose changes are audited.'),
  ('retail_private.rollup_dirty', 'Bookkeeping of the rollups'' recomputation.');

-- Marks the store-days a statement touched (old and new days: an order can move
-- to another day or store) and makes sure a fold runs soon: one
-- retail_rollups__fold job per tenant, due in a fraction of a second, whose key
-- keeps a burst to one job. graphile-worker's schema is installed after the
-- migrations, so it is reached only when a statement runs.
create function retail_private.mark_days_dirty(days jsonb) returns void
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  t uuid;
begin
  insert into retail_private.rollup_dirty as d (tenant_id, store_id, day)
  select distinct (x ->> 'tenant_id')::uuid, (x ->> 'store_id')::uuid, (x ->> 'day')::date
  from jsonb_array_elements(days) x
  where x ->> 'day' is not null
  order by 1, 2, 3
  on conflict (tenant_id, store_id, day) do update set marked_at = excluded.marked_at;
  for t in select distinct (x ->> 'tenant_id')::uuid from jsonb_array_elements(days) x loop
    perform graphile_worker.add_job('retail_rollups__fold', json_build_object('tenant_id', t),
                                    job_key := 'retail-rollups:' || t, run_at := now() + interval '250 milliseconds',
                                    job_key_mode := 'preserve_run_at');
  end loop;
end;
$$;
comment on function retail_private.mark_days_dirty(jsonb) is 'Marks store-days for the rollups'' recomputation and queues the tenant''s fold. Definer: the marker table and the job queue are the owner''s.';

create function retail_private.tg_orders__rollups() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if tg_op = 'INSERT' then
    perform retail_private.mark_days_dirty((select jsonb_agg(jsonb_build_object('tenant_id', n.tenant_id, 'store_id', n.store_id, 'day', n.local_date)) from new_rows n where n.status in ('paid', 'fulfilled') and n.deleted_at is null));
  elsif tg_op = 'DELETE' then
    perform retail_private.mark_days_dirty((select jsonb_agg(jsonb_build_object('tenant_id', o.tenant_id, 'store_id', o.store_id, 'day', o.local_date)) from old_rows o where o.status in ('paid', 'fulfilled') and o.deleted_at is null));
  else
    -- Only changes that can move a total: the day, status, tombstone, currency or totals.
    perform retail_private.mark_days_dirty((
      select jsonb_agg(d) from (
        select jsonb_build_object('tenant_id', o.tenant_id, 'store_id', o.store_id, 'day', o.local_date) as d
        from old_rows o join new_rows n on n.tenant_id = o.tenant_id and n.store_id = o.store_id and n.id = o.id
        where (o.local_date, o.status, o.deleted_at, o.currency, o.total_minor) is distinct from (n.local_date, n.status, n.deleted_at, n.currency, n.total_minor)
        union
        select jsonb_build_object('tenant_id', n.tenant_id, 'store_id', n.store_id, 'day', n.local_date)
        from old_rows o join new_rows n on n.tenant_id = o.tenant_id and n.store_id = o.store_id and n.id = o.id
        where (o.local_date, o.status, o.deleted_at, o.currency, o.total_minor) is distinct from (n.local_date, n.status, n.deleted_at, n.currency, n.total_minor)
      ) x));
  end if;
  return null;
end;
$$;
comment on function retail_private.tg_orders__rollups() is 'Marks the store-days an orders statement may have changed the totals of.';

create function retail_private.tg_order_lines__rollups() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  perform retail_private.mark_days_dirty((
    select jsonb_agg(jsonb_build_object('tenant_id', o.tenant_id, 'store_id', o.store_id, 'day', o.local_date))
    from (select distinct tenant_id, store_id, order_id from changed_rows) c
    join retail.orders o on o.tenant_id = c.tenant_id and o.store_id = c.store_id and o.id = c.order_id
    where o.status in ('paid', 'fulfilled') and o.deleted_at is null));
  return null;
end;
$$;
comment on function retail_private.tg_order_lines__rollups() is 'Marks the store-days of the orders whose lines a statement changed (per-SKU totals).';

create trigger _900_rollups_insert after insert on retail.orders referencing new table as new_rows for each statement execute function retail_private.tg_orders__rollups();
create trigger _900_rollups_update after update on retail.orders referencing old table as old_rows new table as new_rows for each statement execute function retail_private.tg_orders__rollups();
create trigger _900_rollups_delete after delete on retail.orders referencing old table as old_rows for each statement execute function retail_private.tg_orders__rollups();
create trigger _900_rollups_insert after insert on retail.order_lines referencing new table as changed_rows for each statement execute function retail_private.tg_order_lines__rollups();
create trigger _900_rollups_update after update on retail.order_lines referencing new table as changed_rows for each statement execute function retail_private.tg_order_lines__rollups();
create trigger _900_rollups_delete after delete on retail.order_lines referencing old table as changed_rows for each statement execute function retail_private.tg_order_lines__rollups();

-- The fold: takes up to max_days dirty store-days of a tenant (skipping those a
-- writer still holds), and recomputes their totals from the orders and lines.
-- Answers how many store-days it recomputed. Run by the worker as
-- authhub_worker; definer: it reads every store's orders and writes rollups.
create function retail_private.fold_rollups(tenant_id uuid, max_days integer) returns integer
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  taken jsonb;
  n integer;
begin
  with picked as (
    select d.tenant_id, d.store_id, d.day from retail_private.rollup_dirty d
    where d.tenant_id = fold_rollups.tenant_id
    order by d.store_id, d.day
    limit fold_rollups.max_days
    for update skip locked
  ), gone as (
    delete from retail_private.rollup_dirty d using picked p
    where d.tenant_id = p.tenant_id and d.store_id = p.store_id and d.day = p.day
    returning d.store_id, d.day
  )
  select jsonb_agg(jsonb_build_object('store_id', store_id, 'day', day)), count(*) into taken, n from gone;
  if n = 0 then
    return 0;
  end if;
  -- A new statement: a fresh snapshot, with every write committed before the markers were taken.
  delete from retail.daily_store_totals t
  using jsonb_to_recordset(taken) k(store_id uuid, day date)
  where t.tenant_id = fold_rollups.tenant_id and t.store_id = k.store_id and t.day = k.day;
  delete from retail.daily_product_totals t
  using jsonb_to_recordset(taken) k(store_id uuid, day date)
  where t.tenant_id = fold_rollups.tenant_id and t.store_id = k.store_id and t.day = k.day;
  insert into retail.daily_store_totals (tenant_id, store_id, day, currency, orders, units, revenue_minor)
  select o.tenant_id, o.store_id, o.local_date, o.currency, count(*),
         coalesce(sum((select sum(l.quantity) from retail.order_lines l where l.tenant_id = o.tenant_id and l.store_id = o.store_id and l.order_id = o.id)), 0),
         sum(o.total_minor)
  from jsonb_to_recordset(taken) k(store_id uuid, day date)
  join retail.orders o on o.tenant_id = fold_rollups.tenant_id and o.store_id = k.store_id and o.local_date = k.day
  where o.status in ('paid', 'fulfilled') and o.deleted_at is null
  group by o.tenant_id, o.store_id, o.local_date, o.currency;
  insert into retail.daily_product_totals (tenant_id, store_id, day, sku, units, revenue_minor)
  select o.tenant_id, o.store_id, o.local_date, l.sku, sum(l.quantity), sum(l.total_minor)
  from jsonb_to_recordset(taken) k(store_id uuid, day date)
  join retail.orders o on o.tenant_id = fold_rollups.tenant_id and o.store_id = k.store_id and o.local_date = k.day
  join retail.order_lines l on l.tenant_id = o.tenant_id and l.store_id = o.store_id and l.order_id = o.id
  where o.status in ('paid', 'fulfilled') and o.deleted_at is null
  group by o.tenant_id, o.store_id, o.local_date, l.sku;
  return n;
end;
$$;
comment on function retail_private.fold_rollups(uuid, integer) is 'Recomputes up to max_days dirty store-days of a tenant from the orders (exactly once by construction: recomputation, not increments).';
grant execute on function retail_private.fold_rollups(uuid, integer) to authhub_worker;

--! split: 800-retail-sync-validation.sql
-- The Data Sync API's rows are validated here, in SQL, one problem list per row,
-- so a bad row is rejected with its reasons while the rest apply (DESIGN §13).
-- These small helpers read a JSON value and say whether it fits a rule; each
-- rule is the same as the column's domain or check (a row that passes them
-- does not trip a constraint).

create function retail_private.problem(field text, message text) returns jsonb
  language sql immutable parallel safe
  set search_path = pg_catalog, pg_temp
as $$ select jsonb_build_object('field', field, 'message', message) $$;

create function retail_private.is_text(v jsonb, max_length integer) returns boolean
  language sql immutable parallel safe
  set search_path = pg_catalog, pg_temp
as $$
  select jsonb_typeof(v) = 'string' and length(v #>> '{}') between 1 and max_length
     and (v #>> '{}') !~ '[[:cntrl:]]' and (v #>> '{}') = btrim(v #>> '{}')
$$;

create function retail_private.is_int(v jsonb, low numeric, high numeric) returns boolean
  language sql immutable parallel safe
  set search_path = pg_catalog, pg_temp
as $$
  select jsonb_typeof(v) = 'number' and (v #>> '{}')::numeric = trunc((v #>> '{}')::numeric) and (v #>> '{}')::numeric between low and high
$$;

create function retail_private.matches(v jsonb, pattern text) returns boolean
  language sql immutable parallel safe
  set search_path = pg_catalog, pg_temp
as $$ select jsonb_typeof(v) = 'string' and (v #>> '{}') ~ pattern $$;

-- An ISO 8601 time with its offset (2026-01-31T12:00:00+01:00 or …Z), in the orders' range.
create function retail_private.is_instant(v jsonb) returns boolean
  language sql immutable parallel safe
  set search_path = pg_catalog, pg_temp
as $$
  select jsonb_typeof(v) = 'string'
     and (v #>> '{}') ~ '^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$'
     and (v #>> '{}') >= '2000' and (v #>> '{}') < '2100'
$$;

grant execute on function retail_private.problem(text, text), retail_private.is_text(jsonb, integer), retail_private.is_int(jsonb, numeric, numeric),
  retail_private.matches(jsonb, text), retail_private.is_instant(jsonb) to authhub_user;

-- The envelope every entity's row shares: externalId, version, deleted, data,
-- store. `key_rule` is the externalId's own format (inventory's is a SKU).
create function retail_private.envelope_problems(r jsonb, key_pattern text, key_rule text) returns jsonb[]
  language sql immutable parallel safe
  set search_path = pg_catalog, pg_temp
as $$
  select array_remove(array[
    case when jsonb_typeof(r) <> 'object' then retail_private.problem('row', 'must be an object') end,
    case when not retail_private.matches(r -> 'externalId', key_pattern) then retail_private.problem('externalId', key_rule) end,
    case when not retail_private.is_int(r -> 'version', 0, 9007199254740991) then retail_private.problem('version', 'must be a whole number of at least 0') end,
    case when r ? 'deleted' and jsonb_typeof(r -> 'deleted') <> 'boolean' then retail_private.problem('deleted', 'must be true or false') end,
    case when coalesce((r ->> 'deleted')::text, 'false') <> 'true' and jsonb_typeof(r -> 'data') is distinct from 'object' then retail_private.problem('data', 'must be an object') end,
    case when r ? 'store' and not retail_private.matches(r -> 'store', '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$') then retail_private.problem('store', 'must be a store code') end,
    case when jsonb_typeof(r) = 'object' and exists (select 1 from jsonb_object_keys(r) k where k not in ('externalId', 'version', 'deleted', 'data', 'store')) then
      retail_private.problem((select min(k) from jsonb_object_keys(r) k where k not in ('externalId', 'version', 'deleted', 'data', 'store')), 'is not a known field') end
  ], null)
$$;

-- What each entity's data must hold (DESIGN §13's shapes). Only called for rows
-- that are not deletions.
create function retail_private.product_problems(data jsonb) returns jsonb[]
  language sql immutable parallel safe
  set search_path = pg_catalog, pg_temp
as $$
  select array_remove(array[
    case when not retail_private.is_text(data -> 'title', 200) then retail_private.problem('data.title', 'must be 1-200 characters without control characters or surrounding spaces') end,
    case when not retail_private.matches(data -> 'status', '^(draft|active|archived)$') then retail_private.problem('data.status', 'must be draft, active or archived') end,
    case when data ? 'published' and jsonb_typeof(data -> 'published') <> 'boolean' then retail_private.problem('data.published', 'must be true or false') end,
    case when data ? 'attributes' and (jsonb_typeof(data -> 'attributes') <> 'object' or pg_column_size(data -> 'attributes') > 16384) then retail_private.problem('data.attributes', 'must be an object of at most 16 kB') end,
    case when jsonb_typeof(data -> 'variants') is distinct from 'array' or jsonb_array_length(data -> 'variants') > 100 then retail_private.problem('data.variants', 'must be a list of at most 100 variants') end
  ] || coalesce((
    select array_agg(p) from (
      select unnest(array[
        case when not retail_private.matches(v -> 'sku', '^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$') then retail_private.problem(format('data.variants[%s].sku', i - 1), 'must be 1-64 letters, digits or . _ / -') end,
        case when v ? 'title' and not retail_private.is_text(v -> 'title', 200) then retail_private.problem(format('data.variants[%s].title', i - 1), 'must be 1-200 characters') end,
        case when not retail_private.is_int(v -> 'priceMinor', 0, 1000000000000000) then retail_private.problem(format('data.variants[%s].priceMinor', i - 1), 'must be a whole number of minor units, at least 0') end,
        case when not retail_private.matches(v -> 'currency', '^[A-Z]{3}$') or not exists (select 1 from retail.currencies c where c.code = v ->> 'currency') then retail_private.problem(format('data.variants[%s].currency', i - 1), 'must be an ISO 4217 currency code') end,
        case when (select count(*) from jsonb_array_elements(data -> 'variants') w where w ->> 'sku' = v ->> 'sku') > 1 then retail_private.problem(format('data.variants[%s].sku', i - 1), 'is given twice') end
      ]) as p
      from jsonb_array_elements(case when jsonb_typeof(data -> 'variants') = 'array' then data -> 'variants' else '[]' end) with ordinality as e(v, i)
    ) x where p is not null), '{}'), null)
$$;

create function retail_private.inventory_problems(data jsonb) returns jsonb[]
  language sql immutable parallel safe
  set search_path = pg_catalog, pg_temp
as $$
  select array_remove(array[
    case when not retail_private.is_int(data -> 'onHand', -1000000000, 1000000000) then retail_private.problem('data.onHand', 'must be a whole number') end,
    case when data ? 'location' and not retail_private.matches(data -> 'location', '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$') then retail_private.problem('data.location', 'must be a location code (lowercase letters, digits, inner hyphens)') end,
    case when exists (select 1 from jsonb_object_keys(data) k where k not in ('onHand', 'location')) then retail_private.problem('data', 'has fields other than onHand and location') end
  ], null)
$$;

create function retail_private.customer_problems(data jsonb) returns jsonb[]
  language sql immutable parallel safe
  set search_path = pg_catalog, pg_temp
as $$
  select array_remove(array[
    case when not (retail_private.matches(data -> 'email', '^[^@[:space:][:cntrl:]]+@[^@[:space:][:cntrl:]]+\.[^@[:space:][:cntrl:]]+$') and length(data ->> 'email') <= 320)
         then retail_private.problem('data.email', 'must be a valid e-mail address of at most 320 characters') end,
    case when data ? 'name' and jsonb_typeof(data -> 'name') <> 'null' and not retail_private.is_text(data -> 'name', 200) then retail_private.problem('data.name', 'must be 1-200 characters') end
  ], null)
$$;

create function retail_private.order_problems(data jsonb) returns jsonb[]
  language sql immutable parallel safe
  set search_path = pg_catalog, pg_temp
as $$
  select array_remove(array[
    case when not retail_private.matches(data -> 'number', '^[A-Za-z0-9][A-Za-z0-9._#/-]{0,63}$') then retail_private.problem('data.number', 'must be 1-64 letters, digits or . _ # / -') end,
    case when not retail_private.matches(data -> 'status', '^(pending|paid|fulfilled|cancelled|refunded)$') then retail_private.problem('data.status', 'must be pending, paid, fulfilled, cancelled or refunded') end,
    case when not retail_private.matches(data -> 'currency', '^[A-Z]{3}$') or not exists (select 1 from retail.currencies c where c.code = data ->> 'currency') then retail_private.problem('data.currency', 'must be an ISO 4217 currency code') end,
    case when not retail_private.is_instant(data -> 'placedAt') then retail_private.problem('data.placedAt', 'must be an ISO 8601 time with its offset, such as 2026-01-31T12:00:00+01:00') end,
    case when data ? 'customerExternalId' and jsonb_typeof(data -> 'customerExternalId') <> 'null' and not retail_private.matches(data -> 'customerExternalId', '^[^[:space:][:cntrl:]]{1,255}$') then retail_private.problem('data.customerExternalId', 'must be the customer''s id (1-255 characters without spaces)') end,
    case when jsonb_typeof(data -> 'lines') is distinct from 'array' or jsonb_array_length(data -> 'lines') not between 1 and 500 then retail_private.problem('data.lines', 'must be a list of 1 to 500 lines') end
  ] || coalesce((
    select array_agg(p) from (
      select unnest(array[
        case when not retail_private.is_int(l -> 'lineNo', 1, 10000) then retail_private.problem(format('data.lines[%s].lineNo', i - 1), 'must be a whole number from 1 to 10000') end,
        case when (select count(*) from jsonb_array_elements(data -> 'lines') m where m -> 'lineNo' = l -> 'lineNo') > 1 then retail_private.problem(format('data.lines[%s].lineNo', i - 1), 'is given twice') end,
        case when not retail_private.matches(l -> 'sku', '^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$') then retail_private.problem(format('data.lines[%s].sku', i - 1), 'must be 1-64 letters, digits or . _ / -') end,
        case when l ? 'title' and jsonb_typeof(l -> 'title') <> 'null' and not retail_private.is_text(l -> 'title', 200) then retail_private.problem(format('data.lines[%s].title', i - 1), 'must be 1-200 characters') end,
        case when not retail_private.is_int(l -> 'quantity', 1, 1000000) then retail_private.problem(format('data.lines[%s].quantity', i - 1), 'must be a whole number from 1 to 1000000') end,
        case when not retail_private.is_int(l -> 'unitPriceMinor', 0, 1000000000000000) then retail_private.problem(format('data.lines[%s].unitPriceMinor', i - 1), 'must be a whole number of minor units, at least 0') end,
        case when l ? 'discountMinor' and not retail_private.is_int(l -> 'discountMinor', 0, 1000000000000000) then retail_private.problem(format('data.lines[%s].discountMinor', i - 1), 'must be a whole number of minor units, at least 0') end,
        case when retail_private.is_int(l -> 'discountMinor', 0, 1000000000000000) and retail_private.is_int(l -> 'quantity', 1, 1000000) and retail_private.is_int(l -> 'unitPriceMinor', 0, 1000000000000000)
                  and (l ->> 'discountMinor')::numeric > (l ->> 'quantity')::numeric * (l ->> 'unitPriceMinor')::numeric
             then retail_private.problem(format('data.lines[%s].discountMinor', i - 1), 'must not exceed quantity × unit price') end,
        case when l ? 'taxMinor' and not retail_private.is_int(l -> 'taxMinor', 0, 1000000000000000) then retail_private.problem(format('data.lines[%s].taxMinor', i - 1), 'must be a whole number of minor units, at least 0') end
      ]) as p
      from jsonb_array_elements(case when jsonb_typeof(data -> 'lines') = 'array' then data -> 'lines' else '[]' end) with ordinality as e(l, i)
    ) x where p is not null), '{}'), null)
$$;
grant execute on function retail_private.envelope_problems(jsonb, text, text), retail_private.product_problems(jsonb), retail_private.inventory_problems(jsonb),
  retail_private.customer_problems(jsonb), retail_private.order_problems(jsonb) to authhub_user;

--! split: 810-retail-sync.sql
-- The one SQL write path of the Data Sync API (DESIGN §13; issue 16), used by
-- POST /open/v1/sync/{entity} and, next, by the pull connector and bulk loads:
--   select retail.sync(entity, rows)
-- An invoker function: it runs as the caller (a store system's API key), under
-- its role and RLS, so a key bound to a store writes that store only whatever
-- the rows say. Per row, in request order: rejected (with its reasons; kept in
-- retail.sync_rejects), stale (older than what the hub holds), unchanged (the
-- same version), or applied. A deletion leaves a tombstone at its version, so a
-- late older row never brings the row back.
--
-- The rows are validated first (retail_private.*_problems, the columns' own
-- rules), then applied set-based, one statement per table. Should a statement
-- still fail (a unique order number taken by another order, say), the batch's
-- rows are applied one by one in subtransactions and the failing ones rejected
-- with a safe reason, so one bad row never stops the others.

create type retail_private.sync_row as (
  ord         integer,
  external_id text,
  version     bigint,
  deleted     boolean,
  data        jsonb,
  store_id    uuid,
  -- The key the row is matched by: the external id (inventory: sku@location).
  match_key   text,
  problems    jsonb[],
  -- rejected | stale | unchanged | applied (and, while classifying: null)
  status      text,
  error       jsonb,
  raw         jsonb
);

-- Deletions of rows the hub never had: their version, so an older create that
-- arrives later is stale.
create table retail_private.sync_tombstones (
  tenant_id   uuid not null,
  store_id    uuid not null,
  entity      text not null,
  match_key   text not null,
  version     bigint not null,
  deleted_at  timestamptz not null default now(),
  primary key (tenant_id, store_id, entity, match_key),
  constraint sync_tombstones_store_fkey foreign key (tenant_id, store_id) references retail.stores (tenant_id, id) on delete cascade
);
alter table retail_private.sync_tombstones enable row level security;
alter table retail_private.sync_tombstones force row level security;
create policy all_owner on retail_private.sync_tombstones for all to authhub_owner using (true) with check (true);
comment on policy all_owner on retail_private.sync_tombstones is 'The owner: read and written through retail_private.tombstone / tombstone_version.';
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('retail_private.sync_tombstones', 'Versions of deletions of rows the hub never held; the sync''s results record them.');

create function retail_private.tombstone_version(store_id uuid, entity text, match_key text) returns bigint
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select t.version from retail_private.sync_tombstones t
  where t.tenant_id = authhub.current_tenant_id() and t.store_id = tombstone_version.store_id
    and t.entity = tombstone_version.entity and t.match_key = tombstone_version.match_key
$$;
create function retail_private.tombstone(store_id uuid, entity text, match_key text, version bigint) returns void
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  insert into retail_private.sync_tombstones as t (tenant_id, store_id, entity, match_key, version)
  select authhub.current_tenant_id(), tombstone.store_id, tombstone.entity, tombstone.match_key, tombstone.version
  where retail_private.holds('sync:write', tombstone.store_id)
  on conflict (tenant_id, store_id, entity, match_key) do update set version = greatest(t.version, excluded.version), deleted_at = now()
$$;
comment on function retail_private.tombstone_version(uuid, text, text) is 'The version of a deletion of a row the hub never held, in the caller''s tenant. Definer: the table is private.';
comment on function retail_private.tombstone(uuid, text, text, bigint) is 'Records such a deletion, for a store the caller may sync. Definer: the table is private.';
grant execute on function retail_private.tombstone_version(uuid, text, text), retail_private.tombstone(uuid, text, text, bigint) to authhub_user;

-- Rejected rows, kept for the store (and its admins) to query.
create table retail.sync_rejects (
  tenant_id   uuid not null default authhub.current_tenant_id(),
  id          bigint generated always as identity,
  store_id    uuid,
  entity      text not null,
  external_id text,
  version     bigint,
  error       jsonb not null,
  row         jsonb,
  api_key_id  uuid,
  received_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint sync_rejects_store_fkey foreign key (tenant_id, store_id) references retail.stores (tenant_id, id) on delete cascade
);
create index sync_rejects_store_idx on retail.sync_rejects (tenant_id, store_id, received_at);
alter table retail.sync_rejects enable row level security;
alter table retail.sync_rejects force row level security;
create policy all_owner on retail.sync_rejects for all to authhub_owner using (true) with check (true);
comment on policy all_owner on retail.sync_rejects is 'The owner (purges old rejects).';
create policy select_permitted on retail.sync_rejects for select to authhub_user using (
  tenant_id = (select authhub.current_tenant_id())
  and ((select authhub_private.has_tenant_permission('retail:read')) or (select authhub_private.has_tenant_permission('sync:write'))
       or store_id in (select authhub_private.organizations_with_permission('retail:read'))
       or store_id in (select authhub_private.organizations_with_permission('sync:write'))));
comment on policy select_permitted on retail.sync_rejects is 'The store''s admins (retail:read) and its system''s key (sync:write) read its rejected rows; rows naming no store the caller may write, tenant-wide holders only.';
create policy insert_sync on retail.sync_rejects for insert to authhub_user with check (
  tenant_id = (select authhub.current_tenant_id())
  and ((select authhub_private.has_tenant_permission('sync:write')) or (select authhub_private.has_tenant_permission('retail:write'))
       or (select authhub.current_api_key_id()) is not null));
comment on policy insert_sync on retail.sync_rejects is 'Whoever syncs records its own rejects (a key whose rows named no store it may write records them without a store).';
grant select on retail.sync_rejects to authhub_user;
grant insert (tenant_id, store_id, entity, external_id, version, error, row, api_key_id) on retail.sync_rejects to authhub_user;
comment on table retail.sync_rejects is E'@behavior -insert -update -delete\nRows the Data Sync API rejected, with the reasons, kept 30 days.';
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('retail.sync_rejects', 'A log of refused input; nothing in it changed any data.');

-- Parses and validates a batch: one sync_row per row, in order, with its store
-- resolved (the row's `store` code, else the key's own store) and its problems.
create function retail_private.sync_parse(entity text, rows jsonb) returns retail_private.sync_row[]
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  with own_store as (
    -- A key bound to an organization that is a store writes that store by default.
    select s.id from retail.stores s
    where s.tenant_id = authhub.current_tenant_id() and s.id = authhub.current_org_id()
  ),
  parsed as (
    select (e.i)::integer as ord, e.r,
           retail_private.envelope_problems(e.r,
             case entity when 'inventory' then '^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$' else '^[^[:space:][:cntrl:]]{1,255}$' end,
             case entity when 'inventory' then 'must be the SKU (1-64 letters, digits or . _ / -)' else 'must be 1-255 characters without spaces' end) as envelope,
           coalesce(e.r ->> 'deleted', 'false') = 'true' as deleted
    from jsonb_array_elements(rows) with ordinality as e(r, i)
  ),
  stored as (
    select p.*, (select s.id from retail.stores s where s.tenant_id = authhub.current_tenant_id() and s.code = p.r ->> 'store') as named_store
    from parsed p
  )
  select coalesce(array_agg(row(
    s.ord,
    s.r ->> 'externalId',
    case when retail_private.is_int(s.r -> 'version', 0, 9007199254740991) then (s.r ->> 'version')::bigint end,
    s.deleted,
    s.r -> 'data',
    w.store_id,
    case when entity = 'inventory' then (s.r ->> 'externalId') || '@' || coalesce(s.r #>> '{data,location}', 'default') else s.r ->> 'externalId' end,
    s.envelope
      || case when w.store_id is null then array[retail_private.problem('store', case when s.r ? 'store' then 'is not a store this key may write' else 'is required: this key is not bound to a store' end)] else '{}' end
      || case when cardinality(s.envelope) > 0 or s.deleted then '{}'::jsonb[]
              else case entity
                     when 'products' then retail_private.product_problems(s.r -> 'data')
                     when 'inventory' then retail_private.inventory_problems(s.r -> 'data')
                     when 'customers' then retail_private.customer_problems(s.r -> 'data')
                     when 'orders' then retail_private.order_problems(s.r -> 'data')
                   end
         end,
    null, null,
    case when pg_column_size(s.r) <= 16384 then s.r else jsonb_build_object('truncated', true, 'externalId', s.r -> 'externalId') end
  )::retail_private.sync_row order by s.ord), '{}')
  from stored s
  -- The row's store, if it names one the caller may sync; else the key's own store; a
  -- row naming a store the caller may not write has none (and is rejected).
  cross join lateral (
    select case
             when s.r ? 'store' then (select s.named_store where retail_private.holds('sync:write', s.named_store))
             else (select o.id from own_store o where retail_private.holds('sync:write', o.id))
           end as store_id
  ) w
$$;
grant execute on function retail_private.sync_parse(text, jsonb) to authhub_user;

-- Classifies valid rows against each other (a key twice in a batch: the highest
-- version is the candidate, the others stale or unchanged) and against what the
-- hub holds (`held`: the stored source version or tombstone of each key).
create function retail_private.sync_classify(work retail_private.sync_row[], held jsonb) returns retail_private.sync_row[]
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$
  select coalesce(array_agg(row(
    w.ord, w.external_id, w.version, w.deleted, w.data, w.store_id, w.match_key, w.problems,
    case
      when cardinality(w.problems) > 0 then 'rejected'
      when w.version < w.batch_max then 'stale'
      when w.rank_in_key > 1 then 'unchanged'
      when w.held_version is null or w.version > w.held_version then 'applied'
      when w.version = w.held_version then 'unchanged'
      else 'stale'
    end,
    case when cardinality(w.problems) > 0 then
      jsonb_build_object('code', case when w.problems[1] ->> 'field' = 'store' then 'forbidden' else 'invalid_input' end,
                         'message', case when w.problems[1] ->> 'field' = 'store' then 'The row names no store this key may write.' else 'The row is not valid.' end,
                         'details', to_jsonb(w.problems))
    end,
    w.raw
  )::retail_private.sync_row order by w.ord), '{}')
  from (
    select u.*,
           max(u.version) filter (where cardinality(u.problems) = 0) over (partition by u.store_id, u.match_key) as batch_max,
           row_number() over (partition by u.store_id, u.match_key, cardinality(u.problems) = 0 order by u.version desc, u.ord) as rank_in_key,
           (held ->> (u.store_id::text || ' ' || u.match_key))::bigint as held_version
    from unnest(work) u
  ) w
$$;

-- The versions the hub holds for a batch's keys: the rows' source versions, else
-- the tombstones of rows it never held. {"<store> <key>": version}.
create function retail_private.sync_held(entity text, work retail_private.sync_row[]) returns jsonb
  language plpgsql stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  held jsonb;
  tenant uuid := authhub.current_tenant_id();
begin
  with keys as (
    select distinct w.store_id, w.match_key, w.external_id, coalesce(w.data ->> 'location', 'default') as location
    from unnest(work) w where cardinality(w.problems) = 0
  ),
  rows_held as (
    select k.store_id, k.match_key,
           case entity
             when 'products' then (select p.source_version from retail.products p where p.tenant_id = tenant and p.store_id = k.store_id and p.external_id = k.external_id)
             when 'customers' then (select c.source_version from retail.customers c where c.tenant_id = tenant and c.store_id = k.store_id and c.external_id = k.external_id)
             when 'orders' then (select o.source_version from retail.orders o where o.tenant_id = tenant and o.store_id = k.store_id and o.external_id = k.external_id)
             when 'inventory' then (select i.source_version from retail.inventory_levels i where i.tenant_id = tenant and i.store_id = k.store_id and i.sku = k.external_id and i.location = k.location)
           end as version
    from keys k
  )
  select coalesce(jsonb_object_agg(h.store_id::text || ' ' || h.match_key,
                                   coalesce(h.version, retail_private.tombstone_version(h.store_id, entity, h.match_key))), '{}')
  into held
  from rows_held h
  where coalesce(h.version, retail_private.tombstone_version(h.store_id, entity, h.match_key)) is not null;
  return held;
end;
$$;

-- Applies a batch's `applied` rows of one entity, set-based; answers the keys
-- ("<store> <match_key>") it actually wrote (a row a concurrent newer sync beat
-- is not among them).
create function retail_private.sync_apply(entity text, work retail_private.sync_row[]) returns text[]
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
as $$
declare
  tenant uuid := authhub.current_tenant_id();
  written text[] := '{}';
  ids jsonb;
begin
  -- Deletions: a tombstone on the row (its children go: a deleted product sells no
  -- variant), or, for a row never held, in sync_tombstones.
  if entity = 'products' then
    with gone as (
      update retail.products p set deleted_at = now(), source_version = w.version
      from unnest(work) w
      where w.status = 'applied' and w.deleted and p.tenant_id = tenant and p.store_id = w.store_id and p.external_id = w.external_id
        and (p.source_version is null or p.source_version < w.version)
      returning p.tenant_id, p.store_id, p.id, w.store_id::text || ' ' || w.match_key as k
    ), variants_gone as (
      delete from retail.variants v using gone g where v.tenant_id = g.tenant_id and v.store_id = g.store_id and v.product_id = g.id
    )
    select coalesce(array_agg(k), '{}') into written from gone;
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
      insert into retail.products as p (tenant_id, store_id, external_id, title, status, published, attributes, source_version, deleted_at)
      select tenant, w.store_id, w.external_id, w.data ->> 'title', w.data ->> 'status', coalesce((w.data ->> 'published')::boolean, false),
             coalesce(w.data -> 'attributes', '{}'), w.version, null
      from unnest(work) w where w.status = 'applied' and not w.deleted
      on conflict (tenant_id, store_id, external_id) do update
        set title = excluded.title, status = excluded.status, published = excluded.published, attributes = excluded.attributes,
            source_version = excluded.source_version, deleted_at = null
        where p.source_version is null or p.source_version < excluded.source_version
      returning p.store_id, p.external_id, p.id
    )
    select coalesce(jsonb_agg(jsonb_build_object('store_id', store_id, 'external_id', external_id, 'id', id)), '[]') into ids from up;
    delete from retail.variants v
    using jsonb_to_recordset(ids) u(store_id uuid, external_id text, id uuid), unnest(work) w
    where w.status = 'applied' and not w.deleted and w.store_id = u.store_id and w.external_id = u.external_id
      and v.tenant_id = tenant and v.store_id = u.store_id and v.product_id = u.id
      and not exists (select 1 from jsonb_array_elements(w.data -> 'variants') nv where nv ->> 'sku' = v.sku);
    insert into retail.variants as v (tenant_id, store_id, product_id, sku, title, price_minor, currency)
    select tenant, u.store_id, u.id, nv ->> 'sku', nv ->> 'title', (nv ->> 'priceMinor')::bigint, nv ->> 'currency'
    from jsonb_to_recordset(ids) u(store_id uuid, external_id text, id uuid)
    join unnest(work) w on w.status = 'applied' and not w.deleted and w.store_id = u.store_id and w.external_id = u.external_id
    cross join lateral jsonb_array_elements(w.data -> 'variants') nv
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
    with up as (
      insert into retail.orders as o (tenant_id, store_id, external_id, number, status, currency, placed_at, customer_external_id, customer_id,
                                      subtotal_minor, discount_minor, tax_minor, total_minor, source_version, deleted_at)
      select tenant, w.store_id, w.external_id, w.data ->> 'number', w.data ->> 'status', w.data ->> 'currency', (w.data ->> 'placedAt')::timestamptz,
             w.data ->> 'customerExternalId',
             (select c.id from retail.customers c where c.tenant_id = tenant and c.store_id = w.store_id and c.external_id = w.data ->> 'customerExternalId'),
             t.subtotal, t.discount, t.tax, t.subtotal - t.discount + t.tax, w.version, null
      from unnest(work) w
      cross join lateral (
        select coalesce(sum((l ->> 'quantity')::bigint * (l ->> 'unitPriceMinor')::bigint), 0) as subtotal,
               coalesce(sum(coalesce((l ->> 'discountMinor')::bigint, 0)), 0) as discount,
               coalesce(sum(coalesce((l ->> 'taxMinor')::bigint, 0)), 0) as tax
        from jsonb_array_elements(w.data -> 'lines') l
      ) t
      where w.status = 'applied' and not w.deleted
      on conflict (tenant_id, store_id, external_id) do update
        set number = excluded.number, status = excluded.status, currency = excluded.currency, placed_at = excluded.placed_at,
            customer_external_id = excluded.customer_external_id, customer_id = excluded.customer_id,
            subtotal_minor = excluded.subtotal_minor, discount_minor = excluded.discount_minor, tax_minor = excluded.tax_minor, total_minor = excluded.total_minor,
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

-- The entry point.
create function retail.sync(entity text, rows jsonb) returns jsonb
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
as $$
declare
  work retail_private.sync_row[];
  one retail_private.sync_row[];
  written text[];
  w retail_private.sync_row;
  failed_state text;
  failed_constraint text;
  failed_column text;
  failed_message text;
begin
  if entity is null or entity not in ('products', 'inventory', 'customers', 'orders') then
    raise exception 'Unknown entity %: products, inventory, customers or orders.', coalesce(entity, 'null') using errcode = 'AH422', column = 'entity';
  end if;
  if jsonb_typeof(rows) is distinct from 'array' or jsonb_array_length(rows) > 1000 then
    raise exception 'rows must be a list of at most 1000 rows.' using errcode = 'AH422', column = 'rows';
  end if;
  -- The store's own system writing: its edits of store-owned fields are not hub edits to tell it about.
  perform pg_catalog.set_config('retail.sync_store', 'on', true);

  work := retail_private.sync_parse(entity, rows);
  work := retail_private.sync_classify(work, retail_private.sync_held(entity, work));
  begin
    written := retail_private.sync_apply(entity, work);
  exception when others then
    -- One row breaks a rule the validation could not see (an order number another
    -- order has): apply row by row, each in a subtransaction, rejecting the failing ones.
    written := '{}';
    for w in select * from unnest(work) x where x.status = 'applied' order by x.ord loop
      begin
        one := array[w];
        written := written || retail_private.sync_apply(entity, one);
      exception when others then
        get stacked diagnostics failed_state = returned_sqlstate, failed_constraint = constraint_name, failed_column = column_name, failed_message = message_text;
        work := (select array_agg(case when x.ord = w.ord
                                       then row(x.ord, x.external_id, x.version, x.deleted, x.data, x.store_id, x.match_key, x.problems, 'rejected',
                                                jsonb_build_object('code', case when failed_state in ('23505', '40001', '40P01', 'AH409') then 'conflict' when failed_state in ('42501', 'AH403') then 'forbidden' else 'invalid_input' end,
                                                                   'message', authhub_private.public_reason(failed_state, failed_constraint, failed_column, failed_message)),
                                                x.raw)::retail_private.sync_row
                                       else x end order by x.ord)
                 from unnest(work) x);
      end;
    end loop;
  end;
  -- A candidate a concurrent newer sync beat was not written: it is stale.
  work := (select array_agg(case when x.status = 'applied' and not ((x.store_id::text || ' ' || x.match_key) = any (written))
                                 then row(x.ord, x.external_id, x.version, x.deleted, x.data, x.store_id, x.match_key, x.problems, 'stale', null, x.raw)::retail_private.sync_row
                                 else x end order by x.ord)
           from unnest(work) x);

  insert into retail.sync_rejects (tenant_id, store_id, entity, external_id, version, error, row, api_key_id)
  select authhub.current_tenant_id(), x.store_id, entity, left(x.external_id, 255), x.version, x.error, x.raw, authhub.current_api_key_id()
  from unnest(work) x where x.status = 'rejected';

  return (select coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object('externalId', x.raw -> 'externalId', 'status', x.status, 'error', x.error)) order by x.ord), '[]')
          from unnest(work) x);
end;
$$;
comment on function retail.sync(text, jsonb) is
  E'@behavior -queryField -mutationField\nThe Data Sync API''s write path: applies a batch of one entity''s rows (products, inventory, customers, orders) as the caller, answering each row''s outcome in order.';
grant execute on function retail.sync(text, jsonb) to authhub_user;
grant execute on function retail_private.sync_classify(retail_private.sync_row[], jsonb), retail_private.sync_held(text, retail_private.sync_row[]),
  retail_private.sync_apply(text, retail_private.sync_row[]) to authhub_user;
grant execute on function authhub_private.public_reason(text, text, text, text) to authhub_user;

--! split: 900-retail-audit.sql
-- Audit for the retail tables (issue 16): every table enrolled, as the identity
-- tables are, with its store as the organization (a seller's admins holding
-- audit:read see their stores' history). Customers' e-mail and name are
-- personal data: the events of tables holding personal data are readable by
-- tenant admins only (and super admins), whoever else holds audit:read. The
-- registry names the columns, so the rule and the reason stay with the data.
-- (Masking only those fields would mean a column the hash chain also covers:
-- adding one to audit_events would change every sealed event's digest.)

create table authhub_private.audit_personal_columns (
  table_name  text not null,
  column_name text not null,
  primary key (table_name, column_name)
);
alter table authhub_private.audit_personal_columns enable row level security;
alter table authhub_private.audit_personal_columns force row level security;
create policy all_owner on authhub_private.audit_personal_columns for all to authhub_owner using (true) with check (true);
comment on policy all_owner on authhub_private.audit_personal_columns is 'The owner: migrations register personal columns when they enrol a table.';
comment on table authhub_private.audit_personal_columns is 'Columns holding personal data: the audit events of their tables are for tenant admins only.';
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('authhub_private.audit_personal_columns', 'Registry changed only by migrations.');
insert into authhub_private.audit_personal_columns (table_name, column_name) values ('customers', 'email'), ('customers', 'name');

-- The tables whose events carry personal data, as one array (an InitPlan in the policy).
create function authhub_private.personal_audit_tables() returns text[]
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select coalesce(array_agg(distinct p.table_name), '{}') from authhub_private.audit_personal_columns p
$$;
comment on function authhub_private.personal_audit_tables() is 'Tables whose audit events hold personal data. Definer: the registry is private.';
grant execute on function authhub_private.personal_audit_tables() to authhub_user;

drop policy select_permitted on authhub.audit_events;
create policy select_permitted on authhub.audit_events for select to authhub_user using (
  tenant_id = (select authhub.current_tenant_id())
  and ((select authhub_private.has_tenant_permission('audit:read'))
       or organization_id in (select authhub_private.audit_organizations_with_permission('audit:read')))
  and ((select authhub_private.is_tenant_admin()) or not table_name = any (coalesce((select authhub_private.personal_audit_tables()), '{}')))
);
comment on policy select_permitted on authhub.audit_events is
  'Holders of audit:read: tenant-wide, or the events of organizations (stores) in their scope, deleted ones included; events of tables holding personal data (customers) only for tenant admins.';

select authhub_private.audit_table('retail.stores', 'tenant_id', 'id');
select authhub_private.audit_table('retail.products', 'tenant_id', 'store_id');
select authhub_private.audit_table('retail.variants', 'tenant_id', 'store_id');
select authhub_private.audit_table('retail.inventory_levels', 'tenant_id', 'store_id');
select authhub_private.audit_table('retail.customers', 'tenant_id', 'store_id');
select authhub_private.audit_table('retail.orders', 'tenant_id', 'store_id');
select authhub_private.audit_table('retail.order_lines', 'tenant_id', 'store_id');

--! split: 950-retail-idempotency-catalogue.sql
-- Idempotency keys for the Open API's writes (DESIGN §13; Stripe's semantics):
-- the same key with the same request answers the first answer again and applies
-- nothing twice; with another request, 422; while the first is still running,
-- 409. A request claims its key in the statement that records its nonce
-- (committed on its own, before its work), and its transaction records the
-- answer with the work (so a rolled-back request leaves its key claimed only
-- until it is released, or, after a crash, until the claim goes stale).
create table authhub_private.idempotency_keys (
  tenant_id    uuid not null,
  api_key_id   uuid not null,
  key          text not null constraint idempotency_keys_key_format check (key ~ '^[\x21-\x7e]{1,255}$'),
  request_hash text not null,
  state        text not null default 'in_flight' constraint idempotency_keys_state check (state in ('in_flight', 'done')),
  status       integer,
  response     jsonb,
  created_at   timestamptz not null default now(),
  completed_at timestamptz,
  primary key (tenant_id, api_key_id, key),
  foreign key (tenant_id, api_key_id) references authhub.api_keys (tenant_id, id) on delete cascade
);
create index idempotency_keys_created_idx on authhub_private.idempotency_keys (created_at);
alter table authhub_private.idempotency_keys enable row level security;
alter table authhub_private.idempotency_keys force row level security;
create policy all_owner on authhub_private.idempotency_keys for all to authhub_owner using (true) with check (true);
comment on policy all_owner on authhub_private.idempotency_keys is 'The owner: reached through claim/finish/release_idempotency only.';
comment on table authhub_private.idempotency_keys is 'Open API idempotency keys and the answers they gave (kept 24 hours).';
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('authhub_private.idempotency_keys', 'Request bookkeeping; what the requests changed is audited.');

-- How long a claim without an answer counts as a request still running (after
-- that, its request died with its server and the key may be used again).
create function authhub_private.idempotency_in_flight_window() returns interval
  language sql immutable parallel safe
  set search_path = pg_catalog, pg_temp
as $$ select interval '2 minutes' $$;

create function authhub_private.claim_idempotency(tenant_id uuid, api_key_id uuid, key text, request_hash text)
  returns table (outcome text, status integer, response jsonb)
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  k authhub_private.idempotency_keys;
begin
  insert into authhub_private.idempotency_keys (tenant_id, api_key_id, key, request_hash)
  values (claim_idempotency.tenant_id, claim_idempotency.api_key_id, claim_idempotency.key, claim_idempotency.request_hash)
  on conflict do nothing;
  if found then
    return query select 'new'::text, null::integer, null::jsonb;
    return;
  end if;
  select * into k from authhub_private.idempotency_keys i
  where i.tenant_id = claim_idempotency.tenant_id and i.api_key_id = claim_idempotency.api_key_id and i.key = claim_idempotency.key
  for update;
  if k.request_hash <> claim_idempotency.request_hash then
    return query select 'mismatch'::text, null::integer, null::jsonb;
  elsif k.state = 'done' then
    return query select 'replay'::text, k.status, k.response;
  elsif k.created_at > now() - authhub_private.idempotency_in_flight_window() then
    return query select 'in_flight'::text, null::integer, null::jsonb;
  else
    -- A claim whose request died with its server: this request takes it over.
    update authhub_private.idempotency_keys i set created_at = now()
    where i.tenant_id = k.tenant_id and i.api_key_id = k.api_key_id and i.key = k.key;
    return query select 'new'::text, null::integer, null::jsonb;
  end if;
end;
$$;
comment on function authhub_private.claim_idempotency(uuid, uuid, text, text) is
  'Claims an idempotency key for a request: new, replay (with the first answer), mismatch (another request used it) or in_flight.';
grant execute on function authhub_private.claim_idempotency(uuid, uuid, text, text) to authhub_authenticator;

-- The answer, recorded in the request's own transaction (as the key's request role).
create function authhub_private.finish_idempotency(key text, status integer, response jsonb) returns void
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  update authhub_private.idempotency_keys i
  set state = 'done', status = finish_idempotency.status, response = finish_idempotency.response, completed_at = now()
  where i.tenant_id = authhub.current_tenant_id() and i.api_key_id = authhub.current_api_key_id() and i.key = finish_idempotency.key
    and i.state = 'in_flight'
$$;
comment on function authhub_private.finish_idempotency(text, integer, jsonb) is 'Records the answer of the calling key''s request under its idempotency key.';
grant execute on function authhub_private.finish_idempotency(text, integer, jsonb) to authhub_api_client;

-- A request that failed gives its key back at once (a retry need not wait).
create function authhub_private.release_idempotency(tenant_id uuid, api_key_id uuid, key text) returns void
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  delete from authhub_private.idempotency_keys i
  where i.tenant_id = release_idempotency.tenant_id and i.api_key_id = release_idempotency.api_key_id and i.key = release_idempotency.key
    and i.state = 'in_flight'
$$;
comment on function authhub_private.release_idempotency(uuid, uuid, text) is 'Gives back the claim of a request that failed.';
grant execute on function authhub_private.release_idempotency(uuid, uuid, text) to authhub_authenticator;

-- Housekeeping: answers older than a day, and rejected rows older than 30 days.
create function authhub_private.purge_idempotency_keys(max_rows integer) returns integer
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  with gone as (
    delete from authhub_private.idempotency_keys i
    where (i.tenant_id, i.api_key_id, i.key) in (
      select j.tenant_id, j.api_key_id, j.key from authhub_private.idempotency_keys j
      where j.created_at < now() - interval '24 hours' limit max_rows)
    returning 1
  ) select count(*)::integer from gone
$$;
create function retail_private.purge_sync_rejects(max_rows integer) returns integer
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  with gone as (
    delete from retail.sync_rejects r
    where (r.tenant_id, r.id) in (select s.tenant_id, s.id from retail.sync_rejects s where s.received_at < now() - interval '30 days' limit max_rows)
    returning 1
  ) select count(*)::integer from gone
$$;
grant execute on function authhub_private.purge_idempotency_keys(integer), retail_private.purge_sync_rejects(integer) to authhub_worker;

-- The public catalogue (DESIGN §12): what a consumer app may show, for anyone:
-- published, active, not deleted products of active stores of an active tenant,
-- with their variants' SKU, title, price and whether they are in stock. No
-- customer, cost or stock count. Keyset-paged by product id. Definer: anonymous
-- callers read no retail table; this is the only door, and it shows only this.
create function retail.catalog_products(tenant_slug text, store_code text, after uuid, max_rows integer)
  returns table (id uuid, store text, title text, variants jsonb)
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select p.id, s.code::text, p.title::text,
         coalesce((
           select jsonb_agg(jsonb_build_object(
                    'sku', v.sku, 'title', v.title, 'priceMinor', v.price_minor, 'currency', v.currency,
                    'inStock', exists (select 1 from retail.inventory_levels i
                                       where i.tenant_id = v.tenant_id and i.store_id = v.store_id and i.sku = v.sku
                                         and i.deleted_at is null and i.available > 0))
                  order by v.sku)
           from retail.variants v where v.tenant_id = p.tenant_id and v.store_id = p.store_id and v.product_id = p.id), '[]')
  from authhub.tenants t
  join retail.stores s on s.tenant_id = t.id and s.status = 'active'
  join retail.products p on p.tenant_id = s.tenant_id and p.store_id = s.id
  where t.slug = catalog_products.tenant_slug and t.status = 'active'
    and (catalog_products.store_code is null or s.code = catalog_products.store_code)
    and p.status = 'active' and p.published and p.deleted_at is null
    and (catalog_products.after is null or p.id > catalog_products.after)
  order by p.id
  limit least(greatest(coalesce(catalog_products.max_rows, 50), 1), 100)
$$;
comment on function retail.catalog_products(text, text, uuid, integer) is
  E'@behavior -queryField\nThe public catalogue: published, active products of a tenant''s active stores, with their variants'' SKU, title, price and whether they are in stock.';
grant execute on function retail.catalog_products(text, text, uuid, integer) to authhub_anonymous, authhub_user;
-- The catalogue's listing: active, published, live products of a store, by id.
create index products_catalogue_idx on retail.products (tenant_id, store_id, id) where status = 'active' and published and deleted_at is null;
