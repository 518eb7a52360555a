--! Previous: sha1:239c7d5cb0d9301bd1e16bfbacec11392a7d6f2c
--! Hash: sha1:b11f76b390210967b0b6c12c1f348ff583027909
--! Message: rbac: permissions, custom roles and assignments

--! split: 100-permissions.sql
-- RBAC as data (issue 3). Permissions are a global catalogue; each built-in level
-- has a fixed default set that tenants cannot weaken (the product relies on it);
-- tenants define custom roles from the catalogue and assign them tenant-wide or
-- for an organization subtree. Policies ask "does the caller hold permission P
-- here?" through the helpers in 120-authority.sql.

create domain authhub.permission_key as text
  constraint permission_key_format check (length(value) <= 64 and value ~ '^[a-z]+:[a-z_]+$');
comment on domain authhub.permission_key is 'A permission such as `user:read`: <resource>:<action>.';

create table authhub.permissions (
  key          authhub.permission_key primary key,
  description  text not null constraint permissions_description_length check (length(description) between 1 and 500),
  -- Whether it can be held for an organization subtree, or only tenant-wide.
  org_scopable boolean not null
);
alter table authhub.permissions enable row level security;
alter table authhub.permissions force row level security;

-- A reference table: every signed-in caller may read the catalogue; only migrations change it.
create policy select_all on authhub.permissions for select to authhub_user using (true);
create policy all_owner on authhub.permissions for all to authhub_owner using (true) with check (true);
grant select on authhub.permissions to authhub_user;

comment on table authhub.permissions is E'@behavior -insert -update -delete\nThe permission catalogue, the same for every tenant.';
comment on column authhub.permissions.org_scopable is 'Whether it can be held for an organization subtree, or only tenant-wide.';

insert into authhub.permissions (key, description, org_scopable) values
  ('user:read',        'Read users (in an organization scope: the members of its subtree).', true),
  ('user:write',       'Create, edit, suspend and delete users of the tenant.', false),
  ('org:read',         'Read organizations.', true),
  ('org:write',        'Create, rename, move and delete organizations.', true),
  ('membership:read',  'Read memberships.', true),
  ('membership:write', 'Add, change and remove memberships.', true),
  ('role:read',        'Read custom roles and role assignments.', true),
  ('role:write',       'Create and edit custom roles (tenant-wide), and assign roles in scope.', true),
  ('apikey:read',      'Read API keys.', true),
  ('apikey:write',     'Create, rotate and revoke API keys.', true),
  ('audit:read',       'Read the audit log.', true),
  ('tenant:config',    'Change the tenant''s name and branding.', false);

-- What each built-in level holds. ORG_ADMIN holds its set for the subtree of each
-- organization where the user's membership is ORG_ADMIN; TENANT_ADMIN and
-- SUPER_ADMIN hold theirs tenant-wide (a super admin in every tenant).
create table authhub.level_permissions (
  level          authhub.role_level not null,
  permission_key authhub.permission_key not null references authhub.permissions (key) on delete cascade,
  primary key (level, permission_key)
);
alter table authhub.level_permissions enable row level security;
alter table authhub.level_permissions force row level security;

-- Lookups of the permission's levels (the primary key serves level → permissions).
create index level_permissions_permission_idx on authhub.level_permissions (permission_key);

create policy select_all on authhub.level_permissions for select to authhub_user using (true);
create policy all_owner on authhub.level_permissions for all to authhub_owner using (true) with check (true);
grant select on authhub.level_permissions to authhub_user;

comment on table authhub.level_permissions is E'@behavior -insert -update -delete\nThe fixed permission set of each built-in level.';

insert into authhub.level_permissions (level, permission_key)
select 'ORG_ADMIN', key from authhub.permissions
where key in ('user:read', 'org:read', 'org:write', 'membership:read', 'membership:write',
              'role:read', 'role:write', 'apikey:read', 'apikey:write', 'audit:read')
union all
select l.level, p.key from authhub.permissions p
cross join (values ('TENANT_ADMIN'::authhub.role_level), ('SUPER_ADMIN')) as l(level);

--! split: 110-roles.sql
-- Custom roles: per tenant, each "sitting under" a built-in level whose default
-- set bounds its permissions, and whose holders (or higher) may assign it.
create table authhub.roles (
  tenant_id   uuid not null default authhub.current_tenant_id()
    references authhub.tenants (id) on delete cascade,
  id          uuid not null default gen_random_uuid(),
  key         authhub.slug not null,
  name        authhub.display_text not null,
  description text constraint roles_description_length check (length(description) <= 1000),
  level       authhub.role_level not null default 'ORG_ADMIN'
    constraint roles_level_allowed check (level in ('ORG_ADMIN', 'TENANT_ADMIN')),
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint roles_key_key unique (tenant_id, key)
);
alter table authhub.roles enable row level security;
alter table authhub.roles force row level security;

create trigger _100_timestamps before insert or update on authhub.roles
  for each row execute function authhub_private.tg__timestamps();

comment on table authhub.roles is 'A tenant''s custom role: a named set of permissions.';
comment on column authhub.roles.key is 'Stable identifier, unique within the tenant (e.g. support-agent).';
comment on column authhub.roles.level is
  'The built-in level it sits under: its permissions must be in that level''s set, and only holders of that level (or higher) in the scope may assign it.';

create table authhub.role_permissions (
  tenant_id      uuid not null default authhub.current_tenant_id(),
  role_id        uuid not null,
  permission_key authhub.permission_key not null
    constraint role_permissions_permission_fkey references authhub.permissions (key),
  created_at     timestamptz not null default now(),
  primary key (tenant_id, role_id, permission_key),
  constraint role_permissions_role_fkey foreign key (tenant_id, role_id)
    references authhub.roles (tenant_id, id) on delete cascade
);
alter table authhub.role_permissions enable row level security;
alter table authhub.role_permissions force row level security;

-- Which roles carry a permission (the authority helpers' lookups).
create index role_permissions_permission_idx on authhub.role_permissions (tenant_id, permission_key);

comment on table authhub.role_permissions is 'The permissions a custom role carries.';
comment on constraint role_permissions_role_fkey on authhub.role_permissions is
  E'@foreignFieldName permissions\n@fieldName role';

-- A role's permissions stay inside the set of the level it sits under. Definer:
-- the level sets are readable by all, but the role row may not be (RLS).
create function authhub_private.tg_role_permissions__within_level() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  role_level authhub.role_level;
begin
  -- Share-lock the role so a concurrent change of its level waits for this
  -- transaction (and then re-checks, tg_roles__level_covers_permissions), or is
  -- seen here once committed.
  select r.level into role_level from authhub.roles r
  where r.tenant_id = new.tenant_id and r.id = new.role_id
  for share;
  if not exists (
    select 1 from authhub.level_permissions lp
    where lp.level = role_level and lp.permission_key = new.permission_key
  ) then
    raise exception 'This permission is above the level the role sits under.'
      using errcode = 'AH422', column = 'permission_key', table = 'role_permissions';
  end if;
  return new;
end;
$$;
-- A constraint trigger, AFTER the row passed the policies: a caller who may not
-- write the mapping is refused by RLS first and learns nothing about the role
-- (nor locks it).
create constraint trigger _200_within_level after insert or update on authhub.role_permissions
  for each row execute function authhub_private.tg_role_permissions__within_level();

-- Lowering a role's level must not leave it carrying permissions above it.
create function authhub_private.tg_roles__level_covers_permissions() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if exists (
    select 1 from authhub.role_permissions rp
    where rp.tenant_id = new.tenant_id and rp.role_id = new.id
      and not exists (select 1 from authhub.level_permissions lp where lp.level = new.level and lp.permission_key = rp.permission_key)
  ) then
    raise exception 'The role carries permissions above this level; remove them first.'
      using errcode = 'AH422', column = 'level', table = 'roles';
  end if;
  return new;
end;
$$;
create trigger _200_level_covers_permissions before update of level on authhub.roles
  for each row execute function authhub_private.tg_roles__level_covers_permissions();

-- Assignments: a user holds a role tenant-wide (organization_id null) or for an
-- organization and its subtree (only the role's org-scopable permissions apply).
create table authhub.role_assignments (
  tenant_id       uuid not null default authhub.current_tenant_id()
    references authhub.tenants (id) on delete cascade,
  id              uuid not null default gen_random_uuid(),
  user_id         uuid not null,
  role_id         uuid not null,
  organization_id uuid,
  created_at      timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint role_assignments_unique unique nulls not distinct (tenant_id, user_id, role_id, organization_id),
  constraint role_assignments_user_fkey foreign key (tenant_id, user_id)
    references authhub.users (tenant_id, id) on delete cascade,
  constraint role_assignments_role_fkey foreign key (tenant_id, role_id)
    references authhub.roles (tenant_id, id) on delete cascade,
  constraint role_assignments_organization_fkey foreign key (tenant_id, organization_id)
    references authhub.organizations (tenant_id, id) on delete cascade
);
alter table authhub.role_assignments enable row level security;
alter table authhub.role_assignments force row level security;

-- A user's assignments (looked up on every permission check).
create index role_assignments_user_idx on authhub.role_assignments (tenant_id, user_id, organization_id);
-- Assignments of a role (role deletion, "who has this role").
create index role_assignments_role_idx on authhub.role_assignments (tenant_id, role_id);
-- Assignments in an organization (its deletion cascades here).
create index role_assignments_organization_idx on authhub.role_assignments (tenant_id, organization_id);

comment on table authhub.role_assignments is 'A custom role held by a user, tenant-wide or for an organization subtree.';
comment on column authhub.role_assignments.organization_id is 'The organization (and its subtree) the role applies to; null: the whole tenant.';
comment on constraint role_assignments_user_fkey on authhub.role_assignments is E'@foreignFieldName roleAssignments\n@fieldName user';
comment on constraint role_assignments_role_fkey on authhub.role_assignments is E'@foreignFieldName assignments\n@fieldName role';
comment on constraint role_assignments_organization_fkey on authhub.role_assignments is E'@foreignFieldName roleAssignments\n@fieldName organization';

--! split: 120-authority.sql
-- Permission helpers. Like the level helpers of the first migration they are
-- definer lookups (policies on users, memberships and assignments call them) and
-- are called wrapped, `(select …)`, so each runs once per statement.

-- The level the caller's token claims: the highest known value of its `roles`,
-- which the server also sets as `jwt.claims.level` (db/claims.ts) so that this
-- stays an inlinable cast rather than a JSON parse on every call. It only ever
-- lowers authority: the built-in level a caller exercises is the lower of what
-- the token claims and what the database holds, so a service can act with a
-- down-scoped token. Custom roles are not capped by it.
create function authhub.current_claimed_level() returns authhub.role_level
  language sql stable
as $$
  select nullif(pg_catalog.current_setting('jwt.claims.level', true), '')::authhub.role_level
$$;
comment on function authhub.current_claimed_level() is E'@behavior -queryField\nThe highest level named by the token''s `roles` claim.';
grant execute on function authhub.current_claimed_level() to authhub_user, authhub_api_client, authhub_worker;

-- Replaces the first migration's lookup: the level is capped by the token's claim.
create or replace function authhub_private.current_user_level() returns authhub.role_level
  language plpgsql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  return (
    select least(u.level, coalesce(authhub.current_claimed_level(), 'USER'))
    from authhub.users u
    join authhub.tenants t on t.id = u.tenant_id
    where u.tenant_id = authhub.current_tenant_id()
      and u.id = authhub.current_user_id()
      and u.status = 'active'
      and t.status = 'active'
  );
end;
$$;

-- Replaces the first migration's version: ORG_ADMIN memberships count only when
-- the token claims ORG_ADMIN or more.
create or replace function authhub_private.managed_organization_ids() returns setof uuid
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  with recursive managed (id) as (
    select m.organization_id
    from authhub.memberships m
    where m.tenant_id = authhub.current_tenant_id()
      and m.user_id = authhub.current_user_id()
      and m.level = 'ORG_ADMIN'
      and authhub.current_claimed_level() >= 'ORG_ADMIN'
      and authhub_private.is_active_user()
    union
    select o.id
    from authhub.organizations o
    join managed on o.parent_id = managed.id
    where o.tenant_id = authhub.current_tenant_id()
  )
  select id from managed
$$;

-- Does the caller hold `permission` tenant-wide? Through its level (TENANT_ADMIN
-- and above) or a tenant-wide custom role. One query; false for unknown or
-- suspended callers and suspended tenants (BR-006).
create function authhub_private.has_tenant_permission(permission text) returns boolean
  language plpgsql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  caller_level authhub.role_level;
begin
  select least(u.level, coalesce(authhub.current_claimed_level(), 'USER'))
  into caller_level
  from authhub.users u
  join authhub.tenants t on t.id = u.tenant_id
  where u.tenant_id = authhub.current_tenant_id()
    and u.id = authhub.current_user_id()
    and u.status = 'active' and t.status = 'active';
  if caller_level is null then
    return false;
  end if;
  if caller_level >= 'TENANT_ADMIN' and exists (
    select 1 from authhub.level_permissions lp
    where lp.level = caller_level and lp.permission_key = has_tenant_permission.permission
  ) then
    return true;
  end if;
  return exists (
    select 1
    from authhub.role_assignments a
    join authhub.role_permissions rp on rp.tenant_id = a.tenant_id and rp.role_id = a.role_id
    where a.tenant_id = authhub.current_tenant_id() and a.user_id = authhub.current_user_id()
      and a.organization_id is null
      and rp.permission_key = has_tenant_permission.permission
  );
end;
$$;

-- Organizations where the caller holds `permission` for the subtree: those where
-- its membership is ORG_ADMIN (when the ORG_ADMIN set has it) and those of its
-- organization-scoped roles carrying it, with every organization below them.
-- Tenant-wide holders are answered by has_tenant_permission, not listed here.
create function authhub_private.organizations_with_permission(permission text) returns setof uuid
  language plpgsql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if authhub_private.current_user_level() is null then
    return;
  end if;
  return query
  with recursive seeds (id) as (
    select m.organization_id
    from authhub.memberships m
    where m.tenant_id = authhub.current_tenant_id() and m.user_id = authhub.current_user_id() and m.level = 'ORG_ADMIN'
      and authhub.current_claimed_level() >= 'ORG_ADMIN'
      and exists (select 1 from authhub.level_permissions lp where lp.level = 'ORG_ADMIN' and lp.permission_key = organizations_with_permission.permission)
    union
    select a.organization_id
    from authhub.role_assignments a
    join authhub.role_permissions rp on rp.tenant_id = a.tenant_id and rp.role_id = a.role_id
    join authhub.permissions p on p.key = rp.permission_key and p.org_scopable
    where a.tenant_id = authhub.current_tenant_id() and a.user_id = authhub.current_user_id()
      and a.organization_id is not null and rp.permission_key = organizations_with_permission.permission
  ),
  tree (id) as (
    select id from seeds
    union
    select o.id from authhub.organizations o join tree on o.parent_id = tree.id
    where o.tenant_id = authhub.current_tenant_id()
  )
  select id from tree;
end;
$$;

-- Users with a membership in an organization where the caller holds `permission`.
create function authhub_private.users_in_organizations_with_permission(permission text) returns setof uuid
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select distinct m.user_id
  from authhub.memberships m
  where m.tenant_id = authhub.current_tenant_id()
    and m.organization_id in (select authhub_private.organizations_with_permission(permission))
$$;

-- Whether the caller may grant (or revoke) `role_id` at the scope
-- `organization_id` (null: tenant-wide) without escalating (BR-002): the role
-- sits at or below the built-in level the caller holds there (ORG_ADMIN in the
-- subtrees it administers), and the caller holds every permission the role would
-- give there. Custom roles confer permissions, never a level: holding a role that
-- sits under TENANT_ADMIN does not let one grant TENANT_ADMIN-level roles.
create function authhub_private.can_grant_role(role_id uuid, organization_id uuid) returns boolean
  language plpgsql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  role_level authhub.role_level;
  caller_rank authhub.role_level;
begin
  select r.level into role_level from authhub.roles r
  where r.tenant_id = authhub.current_tenant_id() and r.id = can_grant_role.role_id;
  if role_level is null then
    return false;
  end if;
  caller_rank := authhub_private.current_user_level();
  if can_grant_role.organization_id is not null
     and can_grant_role.organization_id in (select authhub_private.managed_organization_ids()) then
    caller_rank := greatest(caller_rank, 'ORG_ADMIN');
  end if;
  if caller_rank is null or role_level > caller_rank then
    return false;
  end if;
  return not exists (
    select 1 from authhub.role_permissions rp
    join authhub.permissions p on p.key = rp.permission_key
    where rp.tenant_id = authhub.current_tenant_id() and rp.role_id = can_grant_role.role_id
      -- At organization scope only org-scopable permissions take effect.
      and (can_grant_role.organization_id is null or p.org_scopable)
      and not (
        authhub_private.has_tenant_permission(rp.permission_key)
        or (can_grant_role.organization_id is not null
            and can_grant_role.organization_id in (select authhub_private.organizations_with_permission(rp.permission_key)))
      )
  );
end;
$$;

-- Whether a user of the caller's tenant holds any authority: a level above USER,
-- an ORG_ADMIN membership, or a custom role. Such users are managed only by
-- tenant admins: a custom user:write holder must not re-point their identity,
-- suspend or delete them (BR-002).
create function authhub_private.user_holds_authority(tenant_id uuid, user_id uuid) returns boolean
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select user_holds_authority.tenant_id = authhub.current_tenant_id() and (
    exists (select 1 from authhub.users u
            where u.tenant_id = user_holds_authority.tenant_id and u.id = user_holds_authority.user_id and u.level > 'USER')
    or exists (select 1 from authhub.memberships m
               where m.tenant_id = user_holds_authority.tenant_id and m.user_id = user_holds_authority.user_id and m.level = 'ORG_ADMIN')
    or exists (select 1 from authhub.role_assignments a
               where a.tenant_id = user_holds_authority.tenant_id and a.user_id = user_holds_authority.user_id)
  )
$$;

-- Whether an update leaves a user's identity (e-mail, external id) as stored.
-- Re-pointing an identity would let the caller sign in as that user, so only a
-- tenant admin does it.
create function authhub_private.user_identity_unchanged(tenant_id uuid, id uuid, email text, external_id text) returns boolean
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select exists (
    select 1 from authhub.users u
    where u.tenant_id = user_identity_unchanged.tenant_id and u.id = user_identity_unchanged.id
      and u.tenant_id = authhub.current_tenant_id()
      and u.email::text = user_identity_unchanged.email
      and u.external_id::text is not distinct from user_identity_unchanged.external_id
  )
$$;

-- Whether authority is anchored at an organization: an ORG_ADMIN membership or a
-- role assignment there. Deleting it would remove them, so only its org admins
-- (from above) or tenant admins may.
create function authhub_private.organization_holds_authority(tenant_id uuid, organization_id uuid) returns boolean
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select organization_holds_authority.tenant_id = authhub.current_tenant_id() and (
    exists (select 1 from authhub.memberships m
            where m.tenant_id = organization_holds_authority.tenant_id
              and m.organization_id = organization_holds_authority.organization_id and m.level = 'ORG_ADMIN')
    or exists (select 1 from authhub.role_assignments a
               where a.tenant_id = organization_holds_authority.tenant_id
                 and a.organization_id = organization_holds_authority.organization_id)
  )
$$;

-- The level of a role of the caller's tenant.
create function authhub_private.role_level(role_id uuid) returns authhub.role_level
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select r.level from authhub.roles r where r.tenant_id = authhub.current_tenant_id() and r.id = role_level.role_id
$$;

-- Invoker wrapper: does the caller hold `permission` for `organization_id`
-- (tenant-wide, or through the organization's subtree)?
create function authhub_private.has_permission_at(permission text, organization_id uuid) returns boolean
  language sql stable
as $$
  select authhub_private.has_tenant_permission(permission)
      or organization_id in (select authhub_private.organizations_with_permission(permission))
$$;

-- Does the caller hold `permission` anywhere in its tenant?
create function authhub_private.has_permission_anywhere(permission text) returns boolean
  language sql stable
as $$
  select authhub_private.has_tenant_permission(permission)
      or exists (select 1 from authhub_private.organizations_with_permission(permission))
$$;

grant execute on function
  authhub_private.has_tenant_permission(text),
  authhub_private.organizations_with_permission(text),
  authhub_private.users_in_organizations_with_permission(text),
  authhub_private.can_grant_role(uuid, uuid),
  authhub_private.role_level(uuid),
  authhub_private.has_permission_at(text, uuid),
  authhub_private.has_permission_anywhere(text),
  authhub_private.user_level(uuid, uuid),
  authhub_private.user_holds_authority(uuid, uuid),
  authhub_private.user_identity_unchanged(uuid, uuid, text, text),
  authhub_private.organization_holds_authority(uuid, uuid),
  authhub_private.organization_parent_id(uuid, uuid)
to authhub_user;

-- The last active tenant admin (or super admin at home in the tenant) cannot be
-- demoted, suspended or deleted: a tenant must always have someone who can manage
-- it (BR-002). Deleting the tenant itself (its users go with it) is the exception.
create function authhub_private.tg_users__keep_a_tenant_admin() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if old.level < 'TENANT_ADMIN' or old.status <> 'active' then
    return coalesce(new, old);
  end if;
  if tg_op = 'UPDATE' and new.level >= 'TENANT_ADMIN' and new.status = 'active' then
    return new;
  end if;
  if not exists (select 1 from authhub.tenants t where t.id = old.tenant_id) then
    return coalesce(new, old);
  end if;
  -- Lock the other admins' rows: a concurrent demotion of one of them waits for
  -- this transaction and then sees its outcome (READ COMMITTED), or fails with a
  -- serialization error (REPEATABLE READ), so two admins cannot demote each other.
  perform 1 from authhub.users u
  where u.tenant_id = old.tenant_id and u.id <> old.id and u.level >= 'TENANT_ADMIN' and u.status = 'active'
  for update;
  if not found then
    raise exception 'The last tenant admin cannot be demoted, suspended or removed; appoint another first.'
      using errcode = 'AH409', table = 'users';
  end if;
  return coalesce(new, old);
end;
$$;
create trigger _300_keep_a_tenant_admin before update of level, status or delete on authhub.users
  for each row execute function authhub_private.tg_users__keep_a_tenant_admin();

--! split: 130-policies.sql
-- Policies by permission. The first migration's admin policies were written per
-- Postgres role (org admin, tenant admin); now that custom roles give permissions
-- to callers whose role is authhub_user, the same rules are written once, `TO
-- authhub_user` (every signed-in caller, by inheritance), as "holds permission P
-- here", and the built-in levels are simply holders of their default sets. The
-- row condition stays the tenant match; permission checks are wrapped helpers.
-- Write grants move to authhub_user accordingly: the grant says which columns
-- anyone could ever write, the policy says who may.

-------------------------------------------------------------------------------
-- tenants: tenant:config edits name and branding

drop policy update_tenant_admin on authhub.tenants;
create policy update_config on authhub.tenants for update to authhub_user
  using (id = (select authhub.current_tenant_id()) and (select authhub_private.has_tenant_permission('tenant:config')))
  with check (id = (select authhub.current_tenant_id()) and (select authhub_private.has_tenant_permission('tenant:config')));

revoke update (name, display_name, logo_url, primary_color, allowed_domains) on authhub.tenants from authhub_tenant_admin;
revoke insert (id) on authhub.tenants from authhub_super_admin;
grant update (name, display_name, logo_url, primary_color, allowed_domains) on authhub.tenants to authhub_user;

-------------------------------------------------------------------------------
-- users: user:read (tenant-wide, or the members of a subtree), user:write
-- (tenant-wide), never on a user ranked above the caller's built-in level, never
-- granting a level above it. A custom role gives permissions, not a level: its
-- holder manages plain users only.

drop policy select_org_admin on authhub.users;
drop policy select_tenant_admin on authhub.users;
drop policy insert_tenant_admin on authhub.users;
drop policy update_tenant_admin on authhub.users;
drop policy delete_tenant_admin on authhub.users;
drop policy update_guard on authhub.users;
-- Its only reader was the org-admin select policy above; user:read in a subtree
-- is answered by users_in_organizations_with_permission now.
drop function authhub_private.managed_user_ids();

create policy select_permitted on authhub.users for select to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and ((select authhub_private.has_tenant_permission('user:read'))
         or id in (select authhub_private.users_in_organizations_with_permission('user:read')))
  );
create policy insert_permitted on authhub.users for insert to authhub_user
  with check (
    tenant_id = (select authhub.current_tenant_id())
    and (select authhub_private.has_tenant_permission('user:write'))
    and level <= (select authhub_private.current_user_level())
  );
create policy update_permitted on authhub.users for update to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and (select authhub_private.has_tenant_permission('user:write'))
    and level <= (select authhub_private.current_user_level())
    and ((select authhub_private.is_tenant_admin()) or not authhub_private.user_holds_authority(tenant_id, id))
  )
  with check (
    tenant_id = (select authhub.current_tenant_id())
    and (select authhub_private.has_tenant_permission('user:write'))
    and level <= (select authhub_private.current_user_level())
  );
create policy delete_permitted on authhub.users for delete to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and (select authhub_private.has_tenant_permission('user:write'))
    and level <= (select authhub_private.current_user_level())
    and ((select authhub_private.is_tenant_admin()) or not authhub_private.user_holds_authority(tenant_id, id))
  );
-- Whatever policy lets an update through (update_self, say): a change that leaves
-- e-mail, external id, level and status as stored (a rename) passes; any other
-- needs user:write and a level not above the caller's; re-pointing an identity
-- (e-mail, external id) or touching a user who holds any authority (an admin
-- level, an ORG_ADMIN membership, a custom role) needs a tenant admin. Only a
-- confirmed super admin makes or edits a super admin.
create policy update_guard on authhub.users as restrictive for update to authhub_user
  using (true)
  with check (
    (select authhub_private.is_super_admin())
    or (
      level <> 'SUPER_ADMIN'
      and (authhub_private.user_controls_unchanged(tenant_id, id, email, external_id, level, status)
           or ((select authhub_private.has_tenant_permission('user:write'))
               and level <= (select authhub_private.current_user_level())
               and ((select authhub_private.is_tenant_admin())
                    or (not authhub_private.user_holds_authority(tenant_id, id)
                        and authhub_private.user_identity_unchanged(tenant_id, id, email, external_id)))))
    )
  );

revoke insert (tenant_id, id, email, display_name, external_id, level, status) on authhub.users from authhub_tenant_admin;
revoke update (email, display_name, external_id, level, status) on authhub.users from authhub_tenant_admin;
revoke delete on authhub.users from authhub_tenant_admin;
-- Ids are the database's: a caller-chosen id could re-create a deleted row
-- elsewhere (an organization under a new parent keeps its id, and whatever other
-- services keyed by it), or copy another tenant's id.
grant insert (tenant_id, email, display_name, external_id, level, status) on authhub.users to authhub_user;
grant update (email, display_name, external_id, level, status) on authhub.users to authhub_user;
grant delete on authhub.users to authhub_user;

-------------------------------------------------------------------------------
-- organizations: org:read, org:write, tenant-wide or for a subtree

drop policy select_org_admin on authhub.organizations;
drop policy insert_org_admin on authhub.organizations;
drop policy update_org_admin on authhub.organizations;
drop policy delete_org_admin on authhub.organizations;
drop policy all_tenant_admin on authhub.organizations;

-- `parent_id in …` also covers rows created in this very statement (RETURNING).
create policy select_permitted on authhub.organizations for select to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and ((select authhub_private.has_tenant_permission('org:read'))
         or id in (select authhub_private.organizations_with_permission('org:read'))
         or parent_id in (select authhub_private.organizations_with_permission('org:read')))
  );
-- In a subtree: create below it, never at the top level.
create policy insert_permitted on authhub.organizations for insert to authhub_user
  with check (
    tenant_id = (select authhub.current_tenant_id())
    and ((select authhub_private.has_tenant_permission('org:write'))
         or parent_id in (select authhub_private.organizations_with_permission('org:write')))
  );
-- Rename with org:write; move only as a tenant admin. Moving an organization
-- changes whose scope it is in (everyone's, not only the caller's): under an
-- organization one administers it would hand one the ORG_ADMIN set there, which a
-- custom role's org:write must never amount to.
create policy update_permitted on authhub.organizations for update to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and ((select authhub_private.has_tenant_permission('org:write'))
         or id in (select authhub_private.organizations_with_permission('org:write')))
  )
  with check (
    tenant_id = (select authhub.current_tenant_id())
    and ((select authhub_private.has_tenant_permission('org:write'))
         or id in (select authhub_private.organizations_with_permission('org:write')))
    and (parent_id is not distinct from authhub_private.organization_parent_id(tenant_id, id)
         or (select authhub_private.is_tenant_admin()))
  );
-- In a subtree: delete below the organizations the permission was given for.
-- An organization where authority is anchored (an ORG_ADMIN membership, a role
-- assignment) is deleted only by a tenant admin or an org admin above it, since
-- its deletion removes that authority.
create policy delete_permitted on authhub.organizations for delete to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and ((select authhub_private.has_tenant_permission('org:write'))
         or parent_id in (select authhub_private.organizations_with_permission('org:write')))
    and ((select authhub_private.is_tenant_admin())
         or parent_id in (select authhub_private.managed_organization_ids())
         or not authhub_private.organization_holds_authority(tenant_id, id))
  );

revoke insert (tenant_id, id, slug, name, parent_id) on authhub.organizations from authhub_org_admin;
revoke update (slug, name, parent_id) on authhub.organizations from authhub_org_admin;
revoke delete on authhub.organizations from authhub_org_admin;
grant insert (tenant_id, slug, name, parent_id) on authhub.organizations to authhub_user;
grant update (slug, name) on authhub.organizations to authhub_user;
-- Moves only under a tenant-admin token (and the policy confirms the level): a
-- grant, unlike the policy's comparison with the stored parent, cannot race a
-- concurrent move.
grant update (parent_id) on authhub.organizations to authhub_tenant_admin;
grant delete on authhub.organizations to authhub_user;

-------------------------------------------------------------------------------
-- memberships: membership:read, membership:write. In a subtree, writes touch
-- only users ranked at or below the caller, and an ORG_ADMIN membership is given,
-- changed or removed only by an org admin of that organization or a tenant admin.

drop policy select_org_admin on authhub.memberships;
drop policy insert_org_admin on authhub.memberships;
drop policy update_org_admin on authhub.memberships;
drop policy delete_org_admin on authhub.memberships;
drop policy all_tenant_admin on authhub.memberships;

create policy select_permitted on authhub.memberships for select to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and ((select authhub_private.has_tenant_permission('membership:read'))
         or organization_id in (select authhub_private.organizations_with_permission('membership:read')))
  );
create policy insert_permitted on authhub.memberships for insert to authhub_user
  with check (
    tenant_id = (select authhub.current_tenant_id())
    and ((select authhub_private.has_tenant_permission('membership:write'))
         or (organization_id in (select authhub_private.organizations_with_permission('membership:write'))
             and authhub_private.user_level(tenant_id, user_id) <= (select authhub_private.current_user_level())))
    and (level = 'USER' or (select authhub_private.is_tenant_admin())
         or (organization_id in (select authhub_private.managed_organization_ids())
             and user_id <> (select authhub.current_user_id())))
  );
create policy update_permitted on authhub.memberships for update to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and ((select authhub_private.has_tenant_permission('membership:write'))
         or (organization_id in (select authhub_private.organizations_with_permission('membership:write'))
             and authhub_private.user_level(tenant_id, user_id) <= (select authhub_private.current_user_level())))
    and (level = 'USER' or (select authhub_private.is_tenant_admin())
         or organization_id in (select authhub_private.managed_organization_ids()))
  )
  with check (
    level = 'USER' or (select authhub_private.is_tenant_admin())
    or (organization_id in (select authhub_private.managed_organization_ids())
        and user_id <> (select authhub.current_user_id()))
  );
create policy delete_permitted on authhub.memberships for delete to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and ((select authhub_private.has_tenant_permission('membership:write'))
         or (organization_id in (select authhub_private.organizations_with_permission('membership:write'))
             and authhub_private.user_level(tenant_id, user_id) <= (select authhub_private.current_user_level())))
    and (level = 'USER' or (select authhub_private.is_tenant_admin())
         or organization_id in (select authhub_private.managed_organization_ids()))
  );

revoke insert (tenant_id, organization_id, user_id, level) on authhub.memberships from authhub_org_admin;
revoke update (level) on authhub.memberships from authhub_org_admin;
revoke delete on authhub.memberships from authhub_org_admin;
grant insert (tenant_id, organization_id, user_id, level) on authhub.memberships to authhub_user;
grant update (level) on authhub.memberships to authhub_user;
grant delete on authhub.memberships to authhub_user;

-------------------------------------------------------------------------------
-- roles and role_permissions: role:read anywhere reads them; role:write
-- tenant-wide edits them, for roles at or below the caller's built-in level,
-- adding only permissions the caller holds tenant-wide (BR-002).

create policy select_permitted on authhub.roles for select to authhub_user
  using (tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.has_permission_anywhere('role:read')));
create policy insert_permitted on authhub.roles for insert to authhub_user
  with check (
    tenant_id = (select authhub.current_tenant_id())
    and (select authhub_private.has_tenant_permission('role:write'))
    and level <= (select authhub_private.current_user_level())
  );
create policy update_permitted on authhub.roles for update to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and (select authhub_private.has_tenant_permission('role:write'))
    and level <= (select authhub_private.current_user_level())
  )
  with check (
    tenant_id = (select authhub.current_tenant_id())
    and (select authhub_private.has_tenant_permission('role:write'))
    and level <= (select authhub_private.current_user_level())
  );
create policy delete_permitted on authhub.roles for delete to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and (select authhub_private.has_tenant_permission('role:write'))
    and level <= (select authhub_private.current_user_level())
  );
create policy all_super_admin on authhub.roles for all to authhub_super_admin
  using ((select authhub_private.is_super_admin())) with check ((select authhub_private.is_super_admin()));
create policy all_owner on authhub.roles for all to authhub_owner using (true) with check (true);

grant select on authhub.roles to authhub_user;
grant insert (tenant_id, key, name, description, level) on authhub.roles to authhub_user;
-- The key is the role's stable identifier: no column grant changes it.
grant update (name, description, level) on authhub.roles to authhub_user;
grant delete on authhub.roles to authhub_user;

create policy select_permitted on authhub.role_permissions for select to authhub_user
  using (tenant_id = (select authhub.current_tenant_id()) and (select authhub_private.has_permission_anywhere('role:read')));
create policy insert_permitted on authhub.role_permissions for insert to authhub_user
  with check (
    tenant_id = (select authhub.current_tenant_id())
    and (select authhub_private.has_tenant_permission('role:write'))
    and authhub_private.has_tenant_permission(permission_key)
    and authhub_private.role_level(role_id) <= (select authhub_private.current_user_level())
  );
create policy delete_permitted on authhub.role_permissions for delete to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and (select authhub_private.has_tenant_permission('role:write'))
    and authhub_private.role_level(role_id) <= (select authhub_private.current_user_level())
  );
create policy all_super_admin on authhub.role_permissions for all to authhub_super_admin
  using ((select authhub_private.is_super_admin())) with check ((select authhub_private.is_super_admin()));
create policy all_owner on authhub.role_permissions for all to authhub_owner using (true) with check (true);

grant select on authhub.role_permissions to authhub_user;
-- A mapping is added or removed, never edited.
grant insert (tenant_id, role_id, permission_key) on authhub.role_permissions to authhub_user;
grant delete on authhub.role_permissions to authhub_user;

-------------------------------------------------------------------------------
-- role_assignments: read with role:read in the scope (and one's own); grant and
-- revoke with role:write in the scope (tenant-wide for tenant-wide assignments),
-- only roles the caller could hold there itself, to users not ranked above it.

create policy select_self on authhub.role_assignments for select to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and user_id = (select authhub.current_user_id())
    and (select authhub_private.is_active_user())
  );
create policy select_permitted on authhub.role_assignments for select to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and ((select authhub_private.has_tenant_permission('role:read'))
         or organization_id in (select authhub_private.organizations_with_permission('role:read')))
  );
create policy insert_permitted on authhub.role_assignments for insert to authhub_user
  with check (
    tenant_id = (select authhub.current_tenant_id())
    and (case when organization_id is null
              then (select authhub_private.has_tenant_permission('role:write'))
              else authhub_private.has_permission_at('role:write', organization_id) end)
    and authhub_private.can_grant_role(role_id, organization_id)
    and authhub_private.user_level(tenant_id, user_id) <= (select authhub_private.current_user_level())
    -- Nobody grants themselves a role (or an ORG_ADMIN membership, above): such
    -- a grant would outlive the authority it was made with.
    and user_id <> (select authhub.current_user_id())
  );
-- Revoke only what one could grant: the same scope, level and permission rules.
create policy delete_permitted on authhub.role_assignments for delete to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and (case when organization_id is null
              then (select authhub_private.has_tenant_permission('role:write'))
              else authhub_private.has_permission_at('role:write', organization_id) end)
    and authhub_private.can_grant_role(role_id, organization_id)
    and authhub_private.user_level(tenant_id, user_id) <= (select authhub_private.current_user_level())
  );
create policy all_super_admin on authhub.role_assignments for all to authhub_super_admin
  using ((select authhub_private.is_super_admin())) with check ((select authhub_private.is_super_admin()));
create policy all_owner on authhub.role_assignments for all to authhub_owner using (true) with check (true);

grant select on authhub.role_assignments to authhub_user;
-- Assignments are granted and revoked, never edited.
grant insert (tenant_id, user_id, role_id, organization_id) on authhub.role_assignments to authhub_user;
grant delete on authhub.role_assignments to authhub_user;

--! split: 140-decisions.sql
-- Answers for sibling services ("may the caller do P here?") and for admin UIs
-- ("what may I do, where?"), computed by the same helpers the policies use.

-- May the caller exercise `permission`, tenant-wide (organization_id null) or for
-- an organization of its tenant? Null for a permission not in the catalogue; false
-- for an organization that is not in the caller's tenant (another tenant's id is
-- indistinguishable from one that does not exist).
create function authhub_private.authorize(permission text, organization_id uuid) returns boolean
  language plpgsql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if not exists (select 1 from authhub.permissions p where p.key = authorize.permission) then
    return null;
  end if;
  if not authhub_private.permission_effective(authorize.permission, authorize.organization_id) then
    return false;
  end if;
  if authorize.organization_id is null then
    return authhub_private.has_tenant_permission(authorize.permission);
  end if;
  if not exists (
    select 1 from authhub.organizations o
    where o.tenant_id = authhub.current_tenant_id() and o.id = authorize.organization_id
  ) then
    return false;
  end if;
  return authhub_private.has_tenant_permission(authorize.permission)
      or (authorize.organization_id in (select authhub_private.organizations_with_permission(authorize.permission))
          and exists (select 1 from authhub.permissions p where p.key = authorize.permission and p.org_scopable));
end;
$$;

-- Answers the decision API and current_permissions give beyond the policies'
-- helpers: role:write acts only with a built-in level in the scope (custom roles
-- confer permissions, never a level), so without one it is not reported.
create function authhub_private.permission_effective(permission text, organization_id uuid) returns boolean
  language sql stable
as $$
  select permission <> 'role:write'
      or (select authhub_private.is_tenant_admin())
      or (organization_id is not null and organization_id in (select authhub_private.managed_organization_ids()))
$$;
grant execute on function authhub_private.authorize(text, uuid), authhub_private.permission_effective(text, uuid) to authhub_user;

create type authhub.permission_grant as (
  permission      authhub.permission_key,
  organization_id uuid
);
comment on type authhub.permission_grant is
  'A permission the caller holds: tenant-wide (no organization) or for an organization and its subtree.';
comment on column authhub.permission_grant.organization_id is 'The organization (with its subtree); null: the whole tenant.';

-- The caller's effective permissions per scope, for admin UIs to show or hide
-- controls. Tenant-wide grants are listed once; organization grants are listed
-- per organization (subtrees expanded), and omitted where the tenant-wide grant
-- already covers them. An array rather than a set: it is one small answer, not a
-- collection to page through.
create function authhub.current_permissions() returns authhub.permission_grant[]
  language sql stable
as $$
  select coalesce(
    array_agg(row(g.permission, g.organization_id)::authhub.permission_grant
              order by g.permission, g.organization_id nulls first),
    '{}')
  from (
    select p.key::authhub.permission_key as permission, null::uuid as organization_id
    from authhub.permissions p
    where authhub_private.has_tenant_permission(p.key)
    union all
    select p.key, o.id
    from authhub.permissions p
    cross join lateral authhub_private.organizations_with_permission(p.key) as o(id)
    where p.org_scopable and not authhub_private.has_tenant_permission(p.key)
  ) g
  where authhub_private.permission_effective(g.permission, g.organization_id)
$$;
comment on function authhub.current_permissions() is
  'What the signed-in caller may do, per scope: tenant-wide, or per organization.';
grant execute on function authhub.current_permissions() to authhub_user;
