--! Previous: -
--! Hash: sha1:239c7d5cb0d9301bd1e16bfbacec11392a7d6f2c
--! Message: foundation: tenancy, roles and policies

--! split: 001-reset.sql
-- Start from nothing: every object of AuthHub lives in these two schemas, so
-- dropping them makes `graphile-migrate watch` idempotent while the migration is
-- being written. (Committed migrations run once; this is harmless there.)
drop schema if exists authhub cascade;
drop schema if exists authhub_private cascade;

-- PostgreSQL 15 no longer lets PUBLIC create in `public`, but older clusters and
-- restored dumps may; we never use `public`, so close it explicitly.
revoke all on schema public from public;

-- Functions are executable by PUBLIC by default. Every function below is granted
-- to exactly the roles that need it, so take that default away first.
alter default privileges revoke all on functions from public;

--! split: 002-schemas.sql
-- `authhub` is what PostGraphile exposes; `authhub_private` holds helpers that
-- must see past RLS, secrets and bookkeeping, and is never exposed.
create schema authhub;
create schema authhub_private;

-- Every request role may resolve names in the exposed schema. The private
-- schema is reachable only through the specific functions granted below.
grant usage on schema authhub to authhub_anonymous, authhub_user, authhub_api_client, authhub_worker;
grant usage on schema authhub_private to authhub_user, authhub_anonymous, authhub_api_client, authhub_worker, authhub_authenticator;

--! split: 003-types.sql
-- Validation lives in the types, so bad data is refused whatever the entry point
-- (GraphQL, the Open API, the CLI, a worker job or a DBA's psql). Each check has a
-- stable name: server/errors.ts maps these names to public field-level messages.

create domain authhub.slug as text
  constraint slug_format check (value ~ '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$');
comment on domain authhub.slug is
  'URL-safe identifier: 1-63 lowercase letters, digits and inner hyphens.';

create domain authhub.display_text as text
  constraint display_text_format check (
    length(value) between 1 and 200
    and value !~ '[[:cntrl:]]'
    and value = btrim(value)
  );
comment on domain authhub.display_text is
  'Human-readable name: 1-200 characters, no control characters, no surrounding spaces.';

-- Case-insensitive on input; users.email is lower-cased by a trigger before it is stored.
create domain authhub.email as text
  constraint email_format check (
    length(value) <= 320
    and value ~ '^[^@[:space:][:cntrl:]]+@[^@[:space:][:cntrl:]]+\.[^@[:space:][:cntrl:]]+$'
  );
comment on domain authhub.email is 'An e-mail address (at most 320 characters).';

create domain authhub.https_url as text
  constraint https_url_format check (
    length(value) <= 2048
    and value ~ '^https://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:[/?#][^[:space:][:cntrl:]]*)?$'
  );
comment on domain authhub.https_url is 'An absolute https:// URL (at most 2048 characters).';

create domain authhub.hex_color as text
  constraint hex_color_format check (value ~ '^#[0-9A-Fa-f]{6}$');
comment on domain authhub.hex_color is 'A colour as #RRGGBB.';

create domain authhub.hostname as text
  constraint hostname_format check (
    length(value) <= 253
    and value ~ '^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$'
  );
comment on domain authhub.hostname is 'A lowercase DNS name with at least two labels (example.com).';

create domain authhub.external_id as text
  constraint external_id_format check (length(value) between 1 and 255 and value !~ '[[:space:][:cntrl:]]');
comment on domain authhub.external_id is 'The identity provider''s id for a user (e.g. a Clerk user_… id).';

create type authhub.tenant_status as enum ('active', 'suspended');
create type authhub.user_status as enum ('active', 'suspended');

-- The built-in levels, lowest first, so that `>=` compares authority.
-- The same hierarchy exists as Postgres role membership (db/setup.ts):
-- authhub_user ⊂ authhub_org_admin ⊂ authhub_tenant_admin ⊂ authhub_super_admin.
create type authhub.role_level as enum ('USER', 'ORG_ADMIN', 'TENANT_ADMIN', 'SUPER_ADMIN');

--! split: 004-claims.sql
-- Claims reach SQL only as transaction-local settings `jwt.claims.*`, set by the
-- server from a verified token (db/claims.ts), and are read only through these
-- functions. An unset or empty claim reads as null. They are plain invoker SQL
-- with no SET clause so that the planner inlines them: a policy's
-- `(select authhub.current_tenant_id())` becomes a bare current_setting() call.

create function authhub.current_user_id() returns uuid
  language sql stable parallel safe
as $$
  select nullif(pg_catalog.current_setting('jwt.claims.sub', true), '')::uuid
$$;

create function authhub.current_tenant_id() returns uuid
  language sql stable parallel safe
as $$
  select nullif(pg_catalog.current_setting('jwt.claims.tenant_id', true), '')::uuid
$$;

create function authhub.current_org_id() returns uuid
  language sql stable parallel safe
as $$
  select nullif(pg_catalog.current_setting('jwt.claims.org_id', true), '')::uuid
$$;

create function authhub.current_trace_id() returns text
  language sql stable parallel safe
as $$
  select nullif(pg_catalog.current_setting('authhub.trace_id', true), '')
$$;

comment on function authhub.current_user_id() is E'@behavior -queryField\nThe caller''s user id (claim `sub`).';
comment on function authhub.current_tenant_id() is E'@behavior -queryField\nThe caller''s tenant id (claim `tenant_id`).';
comment on function authhub.current_org_id() is E'@behavior -queryField\nThe caller''s active organization (claim `org_id`), if any.';
comment on function authhub.current_trace_id() is E'@behavior -queryField\nThe request''s trace id (X-Trace-Id).';

grant execute on function
  authhub.current_user_id(), authhub.current_tenant_id(),
  authhub.current_org_id(), authhub.current_trace_id()
to authhub_anonymous, authhub_user, authhub_api_client, authhub_worker;

-- Shared trigger: timestamps are the database's, not the caller's.
create function authhub_private.tg__timestamps() returns trigger
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
as $$
begin
  new.created_at := case when tg_op = 'INSERT' then now() else old.created_at end;
  new.updated_at := now();
  return new;
end;
$$;
comment on function authhub_private.tg__timestamps() is
  'Sets created_at on insert and updated_at on every write; callers cannot forge either.';

--! split: 010-tenants.sql
-- Tenants are the unit of isolation (BR-001). Everything else belongs to exactly
-- one tenant. Branding is typed columns rather than free JSON so that each field
-- is validated by its domain and documented in the GraphQL schema.
create table authhub.tenants (
  id              uuid primary key default gen_random_uuid(),
  slug            authhub.slug not null constraint tenants_slug_key unique,
  name            authhub.display_text not null,
  status          authhub.tenant_status not null default 'active',
  display_name    authhub.display_text,
  logo_url        authhub.https_url,
  primary_color   authhub.hex_color,
  allowed_domains authhub.hostname[] not null default '{}'
    constraint tenants_allowed_domains_size check (cardinality(allowed_domains) <= 50),
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now()
);
alter table authhub.tenants enable row level security;
alter table authhub.tenants force row level security;

create trigger _100_timestamps before insert or update on authhub.tenants
  for each row execute function authhub_private.tg__timestamps();

comment on table authhub.tenants is 'A customer of AuthHub: the boundary no read or write crosses.';
comment on column authhub.tenants.slug is 'Stable URL-safe identifier, unique across AuthHub.';
comment on column authhub.tenants.status is 'A suspended tenant''s users lose all access on their next request.';
comment on column authhub.tenants.display_name is 'Name shown on login pages; defaults to `name`.';
comment on column authhub.tenants.logo_url is 'https:// URL of the logo shown on login pages.';
comment on column authhub.tenants.primary_color is 'Brand colour as #RRGGBB.';
comment on column authhub.tenants.allowed_domains is 'E-mail domains this tenant accepts (at most 50).';

-- Login pages must show a tenant's branding before anyone is signed in. This is
-- the one thing an anonymous caller can read; it bypasses RLS (definer) so it
-- can return exactly these four public fields and nothing else of the tenant.
create type authhub.tenant_branding as (
  slug          authhub.slug,
  display_name  text,
  logo_url      authhub.https_url,
  primary_color authhub.hex_color
);
comment on type authhub.tenant_branding is 'The public face of a tenant, for login pages.';

create function authhub.tenant_branding(slug text) returns authhub.tenant_branding
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select t.slug, coalesce(t.display_name, t.name), t.logo_url, t.primary_color
  from authhub.tenants t
  where t.slug = tenant_branding.slug and t.status = 'active'
$$;
comment on function authhub.tenant_branding(text) is
  'Public branding of an active tenant by slug; null for an unknown or suspended tenant.';
grant execute on function authhub.tenant_branding(text) to authhub_anonymous, authhub_user;

--! split: 020-users.sql
-- Users belong to one tenant. `level` is the user's tenant-wide built-in level;
-- organization-level authority (ORG_ADMIN) comes from memberships.
create table authhub.users (
  tenant_id    uuid not null default authhub.current_tenant_id()
    references authhub.tenants (id) on delete cascade,
  id           uuid not null default gen_random_uuid(),
  email        authhub.email not null,
  display_name authhub.display_text,
  external_id  authhub.external_id,
  level        authhub.role_level not null default 'USER'
    constraint users_level_tenant_wide check (level in ('USER', 'TENANT_ADMIN', 'SUPER_ADMIN')),
  status       authhub.user_status not null default 'active',
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint users_email_key unique (tenant_id, email),
  constraint users_external_id_key unique (tenant_id, external_id)
);
alter table authhub.users enable row level security;
alter table authhub.users force row level security;

-- Listing a tenant's admins, and GraphQL's grouped counts by level and status.
create index users_level_idx on authhub.users (tenant_id, level);
create index users_status_idx on authhub.users (tenant_id, status);

create function authhub_private.tg_users__normalize_email() returns trigger
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
as $$
begin
  new.email := lower(new.email);
  return new;
end;
$$;
comment on function authhub_private.tg_users__normalize_email() is
  'E-mail addresses compare case-insensitively; store them lower-cased so the unique key holds.';

create trigger _100_timestamps before insert or update on authhub.users
  for each row execute function authhub_private.tg__timestamps();
create trigger _200_normalize_email before insert or update of email on authhub.users
  for each row execute function authhub_private.tg_users__normalize_email();

comment on table authhub.users is 'A person known to a tenant.';
comment on column authhub.users.email is 'Unique within the tenant; stored lower-cased.';
comment on column authhub.users.external_id is 'The identity provider''s id for this user, unique within the tenant.';
comment on column authhub.users.level is 'Tenant-wide built-in level: USER, TENANT_ADMIN or SUPER_ADMIN.';
comment on column authhub.users.status is 'A suspended user loses all access on their next request.';

--! split: 030-organizations.sql
-- Organizations form a forest inside a tenant. The parent key is composite, so a
-- parent is always in the same tenant; a trigger refuses cycles.
create table authhub.organizations (
  tenant_id  uuid not null default authhub.current_tenant_id()
    references authhub.tenants (id) on delete cascade,
  id         uuid not null default gen_random_uuid(),
  slug       authhub.slug not null,
  name       authhub.display_text not null,
  parent_id  uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint organizations_slug_key unique (tenant_id, slug),
  -- Deleting an organization that still has children is refused: move or delete them first.
  constraint organizations_parent_fkey foreign key (tenant_id, parent_id)
    references authhub.organizations (tenant_id, id) on delete restrict,
  constraint organizations_parent_not_self check (parent_id is distinct from id)
);
alter table authhub.organizations enable row level security;
alter table authhub.organizations force row level security;

-- Children of an organization (tree walks in the authority helpers, the FK's delete check).
create index organizations_parent_idx on authhub.organizations (tenant_id, parent_id);

-- Bypasses RLS (definer) because a cycle can pass through organizations the
-- caller cannot see. Concurrent re-parenting in one tenant is serialised so two
-- moves cannot each pass the check and together make a loop.
create function authhub_private.tg_organizations__prevent_cycle() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if new.parent_id is null then
    return new;
  end if;
  perform pg_advisory_xact_lock(hashtextextended('authhub.organizations:' || new.tenant_id::text, 0));
  if exists (
    with recursive ancestors (id, parent_id) as (
      select o.id, o.parent_id from authhub.organizations o
      where o.tenant_id = new.tenant_id and o.id = new.parent_id
      union
      select o.id, o.parent_id from authhub.organizations o
      join ancestors a on o.id = a.parent_id
      where o.tenant_id = new.tenant_id
    )
    select 1 from ancestors where ancestors.id = new.id
  ) then
    raise exception 'An organization cannot be moved under one of its own descendants.'
      using errcode = 'AH422', column = 'parent_id', table = 'organizations';
  end if;
  return new;
end;
$$;

create trigger _100_timestamps before insert or update on authhub.organizations
  for each row execute function authhub_private.tg__timestamps();
create trigger _200_prevent_cycle before update of parent_id on authhub.organizations
  for each row execute function authhub_private.tg_organizations__prevent_cycle();

comment on table authhub.organizations is 'A group of users inside a tenant; organizations nest.';
comment on column authhub.organizations.slug is 'Unique within the tenant.';
comment on column authhub.organizations.parent_id is 'The parent organization in the same tenant, if any.';
comment on constraint organizations_parent_fkey on authhub.organizations is
  E'@foreignFieldName children\n@fieldName parent';

--! split: 040-memberships.sql
-- Users ↔ organizations, N:M, with the level the user holds in that organization.
-- An ORG_ADMIN membership gives admin rights over the organization and its subtree.
create table authhub.memberships (
  tenant_id       uuid not null default authhub.current_tenant_id()
    references authhub.tenants (id) on delete cascade,
  organization_id uuid not null,
  user_id         uuid not null,
  level           authhub.role_level not null default 'USER'
    constraint memberships_level_org_wide check (level in ('USER', 'ORG_ADMIN')),
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  primary key (tenant_id, organization_id, user_id),
  constraint memberships_organization_fkey foreign key (tenant_id, organization_id)
    references authhub.organizations (tenant_id, id) on delete cascade,
  constraint memberships_user_fkey foreign key (tenant_id, user_id)
    references authhub.users (tenant_id, id) on delete cascade
);
alter table authhub.memberships enable row level security;
alter table authhub.memberships force row level security;

-- A user's memberships (the authority helpers look these up on every request).
create index memberships_user_idx on authhub.memberships (tenant_id, user_id, level);

create trigger _100_timestamps before insert or update on authhub.memberships
  for each row execute function authhub_private.tg__timestamps();

comment on table authhub.memberships is 'A user''s membership of an organization, with its level.';
comment on column authhub.memberships.level is 'USER or ORG_ADMIN within this organization and its subtree.';
comment on constraint memberships_organization_fkey on authhub.memberships is
  E'@foreignFieldName memberships\n@fieldName organization';
comment on constraint memberships_user_fkey on authhub.memberships is
  E'@foreignFieldName memberships\n@fieldName user';

--! split: 050-authority.sql
-- Authority helpers. The JWT's `roles` claim only selects the Postgres role; these
-- functions confirm that authority against the database on every statement, so a
-- demotion, a removed membership or a suspension takes effect on the next request
-- even while the token is still valid.
--
-- They are SECURITY DEFINER because policies on users and memberships call them,
-- and reading those tables as the caller would recurse into the same policies.
-- They run as authhub_owner, whose access each table grants explicitly in its
-- `all_owner` policy (RLS is forced, so ownership alone gives nothing). Policies
-- call them wrapped as `(select …)`, which makes them InitPlans evaluated once per
-- statement, so row conditions stay plain index conditions on tenant_id.

-- The caller's tenant-wide level, or null when the caller is unknown, suspended,
-- or in a suspended tenant (BR-006). One primary-key lookup. PL/pgSQL rather than
-- SQL so that its plan is cached per session: a definer SQL function is never
-- inlined and would be planned again on every statement that calls it.
create function authhub_private.current_user_level() returns authhub.role_level
  language plpgsql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  return (
    select u.level
    from authhub.users u
    join authhub.tenants t on t.id = u.tenant_id
    where u.tenant_id = authhub.current_tenant_id()
      and u.id = authhub.current_user_id()
      and u.status = 'active'
      and t.status = 'active'
  );
end;
$$;

-- Invoker wrappers, inlined by the planner: the one definer call per statement is
-- current_user_level() itself.
create function authhub_private.is_active_user() returns boolean
  language sql stable
as $$
  select authhub_private.current_user_level() is not null
$$;

create function authhub_private.is_tenant_admin() returns boolean
  language sql stable
as $$
  select coalesce(authhub_private.current_user_level() >= 'TENANT_ADMIN'::authhub.role_level, false)
$$;

create function authhub_private.is_super_admin() returns boolean
  language sql stable
as $$
  select coalesce(authhub_private.current_user_level() = 'SUPER_ADMIN'::authhub.role_level, false)
$$;

-- Organizations the caller is a member of, at any level (BR-005).
create function authhub_private.member_organization_ids() returns setof uuid
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select m.organization_id
  from authhub.memberships m
  where m.tenant_id = authhub.current_tenant_id()
    and m.user_id = authhub.current_user_id()
    and authhub_private.is_active_user()
$$;

-- Organizations the caller administers: those where they hold ORG_ADMIN, and
-- every organization below them (BR-003).
create function authhub_private.managed_organization_ids() returns setof uuid
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  with recursive managed (id) as (
    select m.organization_id
    from authhub.memberships m
    where m.tenant_id = authhub.current_tenant_id()
      and m.user_id = authhub.current_user_id()
      and m.level = 'ORG_ADMIN'
      and authhub_private.is_active_user()
    union
    select o.id
    from authhub.organizations o
    join managed on o.parent_id = managed.id
    where o.tenant_id = authhub.current_tenant_id()
  )
  select id from managed
$$;

-- Users with a membership somewhere in the caller's managed subtree.
create function authhub_private.managed_user_ids() returns setof uuid
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select distinct m.user_id
  from authhub.memberships m
  where m.tenant_id = authhub.current_tenant_id()
    and m.organization_id in (select authhub_private.managed_organization_ids())
$$;

-- The stored parent of an organization, as of the statement's start: lets the
-- org-admin update policy tell "kept its parent" from "moved".
create function authhub_private.organization_parent_id(tenant_id uuid, id uuid) returns uuid
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select o.parent_id from authhub.organizations o
  where o.tenant_id = organization_parent_id.tenant_id and o.id = organization_parent_id.id
    and o.tenant_id = authhub.current_tenant_id()
$$;

-- Row-level helpers for the `update_guard` policies and org-admin membership
-- checks: they compare a new row with the stored one (as of the statement's
-- start), which the caller may not be able to read.
create function authhub_private.user_controls_unchanged(
  tenant_id uuid, id uuid, email text, external_id text, level authhub.role_level, status authhub.user_status
) returns boolean
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select exists (
    select 1 from authhub.users u
    where u.tenant_id = user_controls_unchanged.tenant_id and u.id = user_controls_unchanged.id
      and u.tenant_id = authhub.current_tenant_id()
      and u.email::text = user_controls_unchanged.email
      and u.external_id::text is not distinct from user_controls_unchanged.external_id
      and u.level = user_controls_unchanged.level
      and u.status = user_controls_unchanged.status
  )
$$;

create function authhub_private.tenant_controls_unchanged(id uuid, slug text, status authhub.tenant_status) returns boolean
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select exists (
    select 1 from authhub.tenants t
    where t.id = tenant_controls_unchanged.id
      and t.id = authhub.current_tenant_id()
      and t.slug::text = tenant_controls_unchanged.slug
      and t.status = tenant_controls_unchanged.status
  )
$$;

-- A user's tenant-wide level, within the caller's tenant only.
create function authhub_private.user_level(tenant_id uuid, user_id uuid) returns authhub.role_level
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select u.level from authhub.users u
  where u.tenant_id = user_level.tenant_id and u.id = user_level.user_id
    and u.tenant_id = authhub.current_tenant_id()
$$;

grant execute on function
  authhub_private.user_controls_unchanged(uuid, uuid, text, text, authhub.role_level, authhub.user_status),
  authhub_private.tenant_controls_unchanged(uuid, text, authhub.tenant_status)
to authhub_user;
grant execute on function authhub_private.user_level(uuid, uuid) to authhub_org_admin;

grant execute on function
  authhub_private.current_user_level(),
  authhub_private.is_active_user(),
  authhub_private.is_tenant_admin(),
  authhub_private.is_super_admin(),
  authhub_private.member_organization_ids(),
  authhub_private.managed_organization_ids(),
  authhub_private.managed_user_ids()
to authhub_user;
grant execute on function authhub_private.organization_parent_id(uuid, uuid) to authhub_org_admin;

-- A trusted identity provider's token names its user by the provider's id. The
-- server resolves it to an AuthHub user of the named tenant before the request
-- runs (server/auth/verify.ts); only active users of active tenants resolve.
-- Definer: it runs before any request role is set, as the login role.
create function authhub_private.user_id_for_external_id(tenant_id uuid, external_id text) returns uuid
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select u.id
  from authhub.users u
  join authhub.tenants t on t.id = u.tenant_id
  where u.tenant_id = user_id_for_external_id.tenant_id
    and u.external_id = user_id_for_external_id.external_id
    and u.status = 'active' and t.status = 'active'
$$;
grant execute on function authhub_private.user_id_for_external_id(uuid, text) to authhub_authenticator;

--! split: 060-policies.sql
-- Who may see and change what. Policies are permissive and OR together; each is
-- written `TO` the lowest Postgres role it serves, and role membership carries it
-- upward (authhub_user ⊂ authhub_org_admin ⊂ authhub_tenant_admin ⊂
-- authhub_super_admin). Only the policies of the request's role apply, so within
-- a request every policy shares the row condition `tenant_id = (select
-- authhub.current_tenant_id())`, which the planner factors out and uses as an
-- index condition. Authority checks are wrapped helper calls (once per statement).
--
-- Policies OR together across roles, but column grants grow with the role: a
-- policy written for users (update_self) also lets a tenant-admin role write the
-- columns only tenant admins are granted. So where a higher role's grants reach
-- through a lower policy, a RESTRICTIVE `update_guard` re-checks the new row
-- against the authority the database confirms (BR-002), whatever policy let the
-- update through and whatever role the token selected.
--
-- `all_owner` on each table: RLS is forced, so the owner sees nothing unless a
-- policy says so. The owner is used only by migrations, the operator CLI and the
-- definer helpers in authhub_private; never by a request's own statements.
--
-- Business rules (docs/security-model.md):
--   BR-001 no read or write crosses a tenant;
--   BR-002 nobody grants a level above their own or acts above their scope;
--   BR-003 org admins manage their organizations' subtrees, tenant admins their
--          tenant, super admins everything;
--   BR-005 a user sees their own profile, memberships and organizations, and may
--          change only their display name;
--   BR-006 a suspended user, or any user of a suspended tenant, has no access.

-------------------------------------------------------------------------------
-- tenants

-- A user reads their own tenant.
create policy select_member on authhub.tenants for select to authhub_user
  using (id = (select authhub.current_tenant_id()) and (select authhub_private.is_active_user()));
-- A tenant admin edits their tenant's name and branding (columns: see grants).
create policy update_tenant_admin on authhub.tenants for update to authhub_tenant_admin
  using (id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin()))
  with check (id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin()));
-- A super admin manages every tenant.
create policy all_super_admin on authhub.tenants for all to authhub_super_admin
  using ((select authhub_private.is_super_admin()))
  with check ((select authhub_private.is_super_admin()));
-- Slug and status are a super admin's, even for a token whose role claims more
-- than the database confirms.
create policy update_guard on authhub.tenants as restrictive for update to authhub_user
  using (true)
  with check (
    (select authhub_private.is_super_admin())
    or authhub_private.tenant_controls_unchanged(id, slug, status)
  );
create policy all_owner on authhub.tenants for all to authhub_owner using (true) with check (true);

grant select on authhub.tenants to authhub_user;
grant update (name, display_name, logo_url, primary_color, allowed_domains) on authhub.tenants to authhub_tenant_admin;
-- Only a super admin creates, renames (slug), suspends or deletes tenants.
grant insert (id, slug, name, status, display_name, logo_url, primary_color, allowed_domains) on authhub.tenants to authhub_super_admin;
grant update (slug, status) on authhub.tenants to authhub_super_admin;
grant delete on authhub.tenants to authhub_super_admin;

-------------------------------------------------------------------------------
-- users

-- A user reads and renames themselves (BR-005).
create policy select_self on authhub.users for select to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and id = (select authhub.current_user_id())
    and (select authhub_private.is_active_user())
  );
create policy update_self on authhub.users for update to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and id = (select authhub.current_user_id())
    and (select authhub_private.is_active_user())
  )
  with check (
    tenant_id = (select authhub.current_tenant_id())
    and id = (select authhub.current_user_id())
  );
-- Whatever policy lets an update through: only a confirmed tenant admin changes
-- e-mail, external id, level or status, and only a confirmed super admin makes or
-- edits a super admin (BR-002). A user renaming themselves passes unchanged.
create policy update_guard on authhub.users as restrictive for update to authhub_user
  using (true)
  with check (
    (select authhub_private.is_super_admin())
    or (
      level <> 'SUPER_ADMIN'
      and ((select authhub_private.is_tenant_admin())
           or authhub_private.user_controls_unchanged(tenant_id, id, email, external_id, level, status))
    )
  );
-- An org admin reads the members of their subtree.
create policy select_org_admin on authhub.users for select to authhub_org_admin
  using (
    tenant_id = (select authhub.current_tenant_id())
    and id in (select authhub_private.managed_user_ids())
  );
-- A tenant admin reads every user of the tenant and manages all but super admins (BR-002).
create policy select_tenant_admin on authhub.users for select to authhub_tenant_admin
  using (tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin()));
create policy insert_tenant_admin on authhub.users for insert to authhub_tenant_admin
  with check (
    tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin())
    and level <> 'SUPER_ADMIN'
  );
create policy update_tenant_admin on authhub.users for update to authhub_tenant_admin
  using (
    tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin())
    and level <> 'SUPER_ADMIN'
  )
  with check (
    tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin())
    and level <> 'SUPER_ADMIN'
  );
create policy delete_tenant_admin on authhub.users for delete to authhub_tenant_admin
  using (
    tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin())
    and level <> 'SUPER_ADMIN'
  );
create policy all_super_admin on authhub.users for all to authhub_super_admin
  using ((select authhub_private.is_super_admin()))
  with check ((select authhub_private.is_super_admin()));
create policy all_owner on authhub.users for all to authhub_owner using (true) with check (true);

grant select on authhub.users to authhub_user;
grant update (display_name) on authhub.users to authhub_user;
-- tenant_id is never updatable: a user cannot be moved to another tenant.
grant insert (tenant_id, id, email, display_name, external_id, level, status) on authhub.users to authhub_tenant_admin;
grant update (email, display_name, external_id, level, status) on authhub.users to authhub_tenant_admin;
grant delete on authhub.users to authhub_tenant_admin;

-------------------------------------------------------------------------------
-- organizations

-- A user reads the organizations they belong to (BR-005).
create policy select_member on authhub.organizations for select to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and id in (select authhub_private.member_organization_ids())
  );
-- An org admin reads, creates, edits and deletes within their subtree (BR-003).
-- `parent_id in managed` covers rows created in this very statement (RETURNING).
create policy select_org_admin on authhub.organizations for select to authhub_org_admin
  using (
    tenant_id = (select authhub.current_tenant_id())
    and (id in (select authhub_private.managed_organization_ids())
         or parent_id in (select authhub_private.managed_organization_ids()))
  );
create policy insert_org_admin on authhub.organizations for insert to authhub_org_admin
  with check (
    tenant_id = (select authhub.current_tenant_id())
    and parent_id in (select authhub_private.managed_organization_ids())
  );
-- Keeping the parent is always allowed; a move must stay inside the subtree at
-- both ends: an organization whose parent is outside it (the top of what the
-- admin manages) cannot be detached from that parent.
create policy update_org_admin on authhub.organizations for update to authhub_org_admin
  using (
    tenant_id = (select authhub.current_tenant_id())
    and id in (select authhub_private.managed_organization_ids())
  )
  with check (
    tenant_id = (select authhub.current_tenant_id())
    and id in (select authhub_private.managed_organization_ids())
    and (parent_id is not distinct from authhub_private.organization_parent_id(tenant_id, id)
         or (parent_id in (select authhub_private.managed_organization_ids())
             and authhub_private.organization_parent_id(tenant_id, id) in (select authhub_private.managed_organization_ids())))
  );
-- An org admin deletes organizations below the ones they administer, not those themselves.
create policy delete_org_admin on authhub.organizations for delete to authhub_org_admin
  using (
    tenant_id = (select authhub.current_tenant_id())
    and parent_id in (select authhub_private.managed_organization_ids())
  );
create policy all_tenant_admin on authhub.organizations for all to authhub_tenant_admin
  using (tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin()))
  with check (tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin()));
create policy all_super_admin on authhub.organizations for all to authhub_super_admin
  using ((select authhub_private.is_super_admin()))
  with check ((select authhub_private.is_super_admin()));
create policy all_owner on authhub.organizations for all to authhub_owner using (true) with check (true);

grant select on authhub.organizations to authhub_user;
-- tenant_id is never updatable: an organization cannot be moved to another tenant.
grant insert (tenant_id, id, slug, name, parent_id) on authhub.organizations to authhub_org_admin;
grant update (slug, name, parent_id) on authhub.organizations to authhub_org_admin;
grant delete on authhub.organizations to authhub_org_admin;

-------------------------------------------------------------------------------
-- memberships

-- A user reads their own memberships (BR-005).
create policy select_self on authhub.memberships for select to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and user_id = (select authhub.current_user_id())
    and (select authhub_private.is_active_user())
  );
-- An org admin reads every membership in their subtree (who is in my organization),
-- and writes those of plain users only, up to their own level: acting on a tenant
-- or super admin's membership, or adding one to reveal them, is above their scope
-- (BR-002/003). Deleting an organization still removes all its memberships.
create policy select_org_admin on authhub.memberships for select to authhub_org_admin
  using (
    tenant_id = (select authhub.current_tenant_id())
    and organization_id in (select authhub_private.managed_organization_ids())
  );
create policy insert_org_admin on authhub.memberships for insert to authhub_org_admin
  with check (
    tenant_id = (select authhub.current_tenant_id())
    and organization_id in (select authhub_private.managed_organization_ids())
    and ((select authhub_private.is_tenant_admin()) or authhub_private.user_level(tenant_id, user_id) = 'USER')
  );
create policy update_org_admin on authhub.memberships for update to authhub_org_admin
  using (
    tenant_id = (select authhub.current_tenant_id())
    and organization_id in (select authhub_private.managed_organization_ids())
    and ((select authhub_private.is_tenant_admin()) or authhub_private.user_level(tenant_id, user_id) = 'USER')
  );
create policy delete_org_admin on authhub.memberships for delete to authhub_org_admin
  using (
    tenant_id = (select authhub.current_tenant_id())
    and organization_id in (select authhub_private.managed_organization_ids())
    and ((select authhub_private.is_tenant_admin()) or authhub_private.user_level(tenant_id, user_id) = 'USER')
  );
create policy all_tenant_admin on authhub.memberships for all to authhub_tenant_admin
  using (tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin()))
  with check (tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.is_tenant_admin()));
create policy all_super_admin on authhub.memberships for all to authhub_super_admin
  using ((select authhub_private.is_super_admin()))
  with check ((select authhub_private.is_super_admin()));
create policy all_owner on authhub.memberships for all to authhub_owner using (true) with check (true);

grant select on authhub.memberships to authhub_user;
-- Only the level of a membership changes; to move one, delete it and create another.
grant insert (tenant_id, organization_id, user_id, level) on authhub.memberships to authhub_org_admin;
grant update (level) on authhub.memberships to authhub_org_admin;
grant delete on authhub.memberships to authhub_org_admin;

-------------------------------------------------------------------------------
-- the caller

-- Invoker functions: they read through the same policies as everything else,
-- so a suspended or unknown caller gets null.
create function authhub.current_user() returns authhub.users
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select u.* from authhub.users u
  where u.tenant_id = authhub.current_tenant_id() and u.id = authhub.current_user_id()
$$;
comment on function authhub.current_user() is 'The signed-in user, or null.';

create function authhub.current_tenant() returns authhub.tenants
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select t.* from authhub.tenants t where t.id = authhub.current_tenant_id()
$$;
comment on function authhub.current_tenant() is 'The signed-in user''s tenant, or null.';

grant execute on function authhub.current_user(), authhub.current_tenant() to authhub_user;

--! split: 070-signing-keys.sql
-- AuthHub's own token-signing keys (ES256). The private key is stored only
-- encrypted under the master key (AES-256-GCM, `v<version>.` prefixed so the
-- master key can be rotated); the server decrypts it in memory when it signs.
create table authhub_private.signing_keys (
  kid                   text primary key
    constraint signing_keys_kid_format check (kid ~ '^[A-Za-z0-9_-]{8,64}$'),
  alg                   text not null default 'ES256'
    constraint signing_keys_alg_allowed check (alg = 'ES256'),
  public_jwk            jsonb not null
    -- A public JWK never carries private members.
    constraint signing_keys_public_only check (
      jsonb_typeof(public_jwk) = 'object'
      and not (public_jwk ?| array['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'])
    ),
  private_key_encrypted text not null,
  -- Newest active key signs; retired keys stay published until their tokens expire.
  status                text not null default 'active'
    constraint signing_keys_status_allowed check (status in ('active', 'retired')),
  created_at            timestamptz not null default now(),
  retired_at            timestamptz,
  -- Published (JWKS, verification) until this time; null while active.
  publish_until         timestamptz
);
-- Exactly one key signs at a time; rotation retires the old one in the same transaction.
create unique index signing_keys_single_active on authhub_private.signing_keys ((true)) where status = 'active';

alter table authhub_private.signing_keys enable row level security;
alter table authhub_private.signing_keys force row level security;

-- Only the owner (operator CLI, boot) reads or writes keys; nobody is granted the table.
create policy all_owner on authhub_private.signing_keys for all to authhub_owner using (true) with check (true);

comment on table authhub_private.signing_keys is 'AuthHub token-signing keys; private parts encrypted under the master key.';

-- The public halves of the keys that verify tokens now. Definer because the
-- server's login role has no access to the table; it returns public JWKs only.
create function authhub_private.public_signing_keys() returns setof jsonb
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select k.public_jwk || jsonb_build_object('kid', k.kid, 'alg', k.alg, 'use', 'sig')
  from authhub_private.signing_keys k
  where k.status = 'active' or k.publish_until > now()
  order by k.created_at desc
$$;
grant execute on function authhub_private.public_signing_keys() to authhub_authenticator;

-- The newest applied migration's hash, for /readyz to compare with the files the
-- server was built with. Definer: the login role cannot read graphile_migrate.
create function authhub_private.current_migration_hash() returns text
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select m.hash from graphile_migrate.migrations m order by m.filename desc limit 1
$$;
grant execute on function authhub_private.current_migration_hash() to authhub_authenticator;
