--! Previous: sha1:69ee6f24332b080167ef6a975fe459e29d4d2eb9
--! Hash: sha1:a0a42af85f73c8040ba6d46b049c3c884d39d83e
--! Message: open api: keys, secrets, key authority, request bookkeeping

--! split: 600-api-keys.sql
-- Open API keys (issue 6, DESIGN.md §6). A key belongs to a tenant and
-- optionally an organization, carries scopes from the permission catalogue, a
-- per-minute limit and an expiry. Its public id is `ak_` + 22 base62
-- characters; its secret (`sk_` + 43) is shown once, stored only encrypted
-- under the master key (which SQL never sees) with a SHA-256 fingerprint, in
-- authhub_private where no API reads it. Requests made with a key run as
-- authhub_api_client under the same policies as everyone else: the key's
-- scopes are its permissions (tenant-wide, or for its organization's subtree),
-- and its level is USER, so it manages plain users only.

create domain authhub.api_key_id as text
  constraint api_key_id_format check (value ~ '^ak_[0-9A-Za-z]{22}$');

-- A ceiling all of a tenant's keys share (requests per minute), set by the
-- platform (super admins), not by the tenant: null, none.
alter table authhub.tenants add column api_rate_limit_per_minute integer
  constraint tenants_api_rate_limit_range check (api_rate_limit_per_minute between 1 and 1000000);
comment on column authhub.tenants.api_rate_limit_per_minute is
  'Requests per minute all the tenant''s API keys share (null: no ceiling beyond each key''s). Super admins only.';
grant update (api_rate_limit_per_minute) on authhub.tenants to authhub_super_admin;

create table authhub.api_keys (
  tenant_id             uuid not null default authhub.current_tenant_id()
    references authhub.tenants (id) on delete cascade,
  id                    uuid not null default gen_random_uuid(),
  key_id                authhub.api_key_id not null,
  organization_id       uuid,
  name                  authhub.display_text not null,
  scopes                authhub.permission_key[] not null
    constraint api_keys_scopes_size check (cardinality(scopes) between 1 and 20 and array_position(scopes, null) is null),
  rate_limit_per_minute integer not null default 1000
    constraint api_keys_rate_limit_range check (rate_limit_per_minute between 1 and 1000000),
  expires_at            timestamptz,
  -- Who issued it (null: the operator CLI, or a user since deleted).
  created_by            uuid,
  created_at            timestamptz not null default now(),
  updated_at            timestamptz not null default now(),
  revoked_at            timestamptz,
  primary key (tenant_id, id),
  -- Requests name a key by this id alone, so it is unique across tenants (131 random bits).
  constraint api_keys_key_id_key unique (key_id),
  constraint api_keys_organization_fkey foreign key (tenant_id, organization_id)
    references authhub.organizations (tenant_id, id) on delete cascade,
  constraint api_keys_created_by_fkey foreign key (tenant_id, created_by)
    references authhub.users (tenant_id, id) on delete set null (created_by)
);
create index api_keys_organization on authhub.api_keys (tenant_id, organization_id);
alter table authhub.api_keys enable row level security;
alter table authhub.api_keys force row level security;
create trigger _100_timestamps before insert or update on authhub.api_keys
  for each row execute function authhub_private.tg__timestamps();

comment on table authhub.api_keys is E'@behavior -insert -delete\nOpen API keys: created with createApiKey (the secret is shown once), revoked with revokeApiKey.';
comment on column authhub.api_keys.key_id is 'The public key id (`ak_…`), sent as X-Api-Key.';
comment on column authhub.api_keys.scopes is 'Permissions the key holds: tenant-wide, or for its organization''s subtree.';
comment on column authhub.api_keys.rate_limit_per_minute is 'Requests per minute (default 1000).';
comment on column authhub.api_keys.revoked_at is 'When the key was revoked; it stops working within a second.';
comment on constraint api_keys_organization_fkey on authhub.api_keys is E'@fieldName organization\n@foreignFieldName apiKeys';
comment on constraint api_keys_created_by_fkey on authhub.api_keys is E'@fieldName createdByUser\n@foreignFieldName issuedApiKeys';

create table authhub_private.api_key_secrets (
  tenant_id        uuid not null,
  api_key_id       uuid not null,
  -- sha256 of the secret, hex: names it without revealing it.
  fingerprint      text not null constraint api_key_secrets_fingerprint_format check (fingerprint ~ '^[0-9a-f]{64}$'),
  secret_encrypted text not null,
  created_at       timestamptz not null default now(),
  -- Null: the current secret. Set: rotated out, still accepted until then (the grace period).
  expires_at       timestamptz,
  primary key (tenant_id, api_key_id, fingerprint),
  foreign key (tenant_id, api_key_id) references authhub.api_keys (tenant_id, id) on delete cascade
);
alter table authhub_private.api_key_secrets enable row level security;
alter table authhub_private.api_key_secrets force row level security;
create policy all_owner on authhub_private.api_key_secrets for all to authhub_owner using (true) with check (true);

-- Usage and nonces change on every request: unlogged (no WAL, no commit flush),
-- so counting costs a request almost nothing; a crash forgets recent counts and
-- nonces (a replay window of at most 300 s after a crash, which the timestamp
-- check bounds).
create unlogged table authhub_private.api_key_usage (
  tenant_id     uuid not null,
  api_key_id    uuid not null,
  last_used_at  timestamptz not null,
  request_count bigint not null,
  primary key (tenant_id, api_key_id),
  foreign key (tenant_id, api_key_id) references authhub.api_keys (tenant_id, id) on delete cascade
);
create unlogged table authhub_private.api_nonces (
  api_key_id uuid not null,
  nonce      text not null,
  expires_at timestamptz not null,
  primary key (api_key_id, nonce)
);
alter table authhub_private.api_key_usage enable row level security;
alter table authhub_private.api_key_usage force row level security;
alter table authhub_private.api_nonces enable row level security;
alter table authhub_private.api_nonces force row level security;
create policy all_owner on authhub_private.api_key_usage for all to authhub_owner using (true) with check (true);
create policy all_owner on authhub_private.api_nonces for all to authhub_owner using (true) with check (true);

select authhub_private.audit_table('authhub.api_keys', 'tenant_id', 'organization_id');
insert into authhub_private.audit_secret_columns (table_name, column_name) values ('api_key_secrets', 'secret_encrypted');
select authhub_private.audit_table('authhub_private.api_key_secrets', 'tenant_id', null);
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('authhub_private.api_key_usage', 'Request counters, changed by every request.'),
  ('authhub_private.api_nonces', 'Replay protection, written by every request.');

--! split: 610-api-key-authority.sql
-- Requests made with an API key (issue 6). The server sets the role
-- authhub_api_client (a member of authhub_user, so every authhub_user policy
-- and grant applies to it as to anyone) and the claims jwt.claims.api_key_id
-- and jwt.claims.tenant_id, never jwt.claims.sub. The authority helpers below
-- answer for a key from its row, read live: a revoked or expired key, or a
-- suspended tenant, holds nothing from the next statement on.

create function authhub.current_api_key_id() returns uuid
  language sql stable parallel safe
as $$
  select nullif(pg_catalog.current_setting('jwt.claims.api_key_id', true), '')::uuid
$$;
comment on function authhub.current_api_key_id() is E'@behavior -queryField\nThe calling API key''s id (claim `api_key_id`), if any.';
grant execute on function authhub.current_api_key_id() to authhub_anonymous, authhub_user, authhub_api_client, authhub_worker;

-- The calling key's scopes and organization, when it is live; no row otherwise
-- (and for callers that are not keys).
create function authhub_private.current_api_key() returns table (scopes text[], organization_id uuid)
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select k.scopes::text[], k.organization_id
  from authhub.api_keys k
  join authhub.tenants t on t.id = k.tenant_id
  where k.tenant_id = authhub.current_tenant_id() and k.id = authhub.current_api_key_id()
    and authhub.current_user_id() is null
    and k.revoked_at is null and (k.expires_at is null or k.expires_at > now())
    and t.status = 'active'
$$;

-- The RBAC helpers again. current_user_level, where every authority check
-- starts, now refuses an ended session (session_ended, from the Auth API
-- migration) and answers for keys: a live key is a USER. has_tenant_permission
-- starts from it rather than repeating its lookup; a key holds a permission
-- tenant-wide when it has the scope and no organization, and (below) for its
-- organization's subtree when it has the scope and an organization.
create or replace function authhub_private.current_user_level() returns authhub.role_level
  language plpgsql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if authhub.current_api_key_id() is not null then
    return case when exists (select 1 from authhub_private.current_api_key()) then 'USER'::authhub.role_level end;
  end if;
  if authhub_private.session_ended() then
    return null;
  end if;
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

create or replace function authhub_private.has_tenant_permission(permission text) returns boolean
  language plpgsql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  caller_level authhub.role_level;
begin
  if authhub.current_api_key_id() is not null then
    return exists (
      select 1 from authhub_private.current_api_key() k
      where k.organization_id is null and has_tenant_permission.permission = any(k.scopes));
  end if;
  caller_level := authhub_private.current_user_level();
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

create or replace function authhub_private.organizations_with_permission(permission text) returns setof uuid
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
    union
    -- A key scoped to an organization (a user has no key, a key no user: one arm at most answers).
    select k.organization_id from authhub_private.current_api_key() k
    where k.organization_id is not null and organizations_with_permission.permission = any(k.scopes)
      and exists (select 1 from authhub.permissions p where p.key = organizations_with_permission.permission and p.org_scopable)
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

--! split: 620-api-key-management.sql
-- Who sees and manages keys. apikey:read lists them (tenant-wide, or those of
-- the organizations in one's scope); apikey:write issues, renames, re-limits,
-- rotates and revokes them. Issuing goes through authhub_private.issue_api_key
-- (the server generates the secret and encrypts it: SQL never sees it in the
-- clear), which refuses scopes beyond the issuer's own at the key's scope.

-- The operator: the CLI, which logs in as the owner and acts as no user. Not
-- the worker, which logs in as the owner too but takes the worker role, nor
-- anything running under a request role.
create function authhub_private.is_operator() returns boolean
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select session_user = 'authhub_owner' and current_setting('role') = 'none' and authhub.current_user_id() is null
$$;

-- Whether the caller may manage keys at `organization_id` (null: tenant-wide).
create function authhub_private.can_manage_api_keys(organization_id uuid) returns boolean
  language sql stable
as $$
  select authhub.current_user_id() is not null
     and coalesce(authhub_private.has_permission_at('apikey:write', organization_id), false)
$$;
grant execute on function authhub_private.can_manage_api_keys(uuid) to authhub_user;

-- Whether the caller holds every one of `scopes` at `organization_id`: what it
-- takes to issue a key with them, and to rotate, extend or re-limit one (its
-- new secret would hand over all of them). Unknown counts as no.
create function authhub_private.holds_api_key_scopes(scopes text[], organization_id uuid) returns boolean
  language sql stable
as $$
  select not exists (
    select 1 from unnest(scopes) s
    where not coalesce(authhub_private.has_permission_at(s, holds_api_key_scopes.organization_id), false))
$$;
grant execute on function authhub_private.holds_api_key_scopes(text[], uuid) to authhub_user;

create policy select_permitted on authhub.api_keys for select to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and ((select authhub_private.has_tenant_permission('apikey:read'))
         or organization_id in (select authhub_private.organizations_with_permission('apikey:read')))
  );
-- Changing a key (name, limit, expiry) is for users: a key never manages keys,
-- as it cannot issue, rotate or revoke them (can_manage_api_keys).
create policy update_permitted on authhub.api_keys for update to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and (select authhub.current_user_id()) is not null
    and ((select authhub_private.has_tenant_permission('apikey:write'))
         or organization_id in (select authhub_private.organizations_with_permission('apikey:write')))
  )
  with check (
    tenant_id = (select authhub.current_tenant_id())
    and (select authhub.current_user_id()) is not null
    and ((select authhub_private.has_tenant_permission('apikey:write'))
         or organization_id in (select authhub_private.organizations_with_permission('apikey:write')))
    and authhub_private.holds_api_key_scopes(scopes::text[], organization_id)
  );
create policy all_owner on authhub.api_keys for all to authhub_owner using (true) with check (true);
grant select on authhub.api_keys to authhub_user;
-- Scopes, organization and ids never change: a different key is a new key.
grant update (name, rate_limit_per_minute, expires_at) on authhub.api_keys to authhub_user;

-- Issues a key. As a signed-in user: needs apikey:write at the key's scope and
-- every scope the key gets at that scope (tenant-wide, or for the organization:
-- then only organization-scopable permissions). As the operator (the CLI, which
-- logs in as the owner): the same validation, no authority check.
create function authhub_private.issue_api_key(
  key_id text, name text, scopes text[], organization_id uuid, rate_limit_per_minute integer, expires_at timestamptz,
  fingerprint text, secret_encrypted text, tenant_id uuid default null
) returns authhub.api_keys
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  operator boolean := authhub_private.is_operator();
  t_id uuid := case when operator then issue_api_key.tenant_id else authhub.current_tenant_id() end;
  unknown text;
  created authhub.api_keys;
begin
  if t_id is null or (not operator and issue_api_key.tenant_id is not null and issue_api_key.tenant_id <> t_id) then
    raise exception 'No tenant to issue the key in.' using errcode = 'AH403';
  end if;
  if scopes is null or cardinality(scopes) = 0 then
    raise exception 'A key needs at least one scope.' using errcode = 'AH422', column = 'scopes';
  end if;
  select s into unknown from unnest(scopes) s
  where not exists (select 1 from authhub.permissions p where p.key = s) limit 1;
  if found then
    raise exception 'Unknown scope: %.', unknown using errcode = 'AH422', column = 'scopes';
  end if;
  if issue_api_key.organization_id is not null then
    if not exists (select 1 from authhub.organizations o where o.tenant_id = t_id and o.id = issue_api_key.organization_id) then
      raise exception 'No such organization.' using errcode = 'AH404', column = 'organizationId';
    end if;
    select s into unknown from unnest(scopes) s
    where not exists (select 1 from authhub.permissions p where p.key = s and p.org_scopable) limit 1;
    if found then
      raise exception 'Scope % cannot be held for an organization.', unknown using errcode = 'AH422', column = 'scopes';
    end if;
  end if;
  if expires_at is not null and expires_at <= now() then
    raise exception 'The expiry must be in the future.' using errcode = 'AH422', column = 'expiresAt';
  end if;
  if not operator then
    if not authhub_private.can_manage_api_keys(issue_api_key.organization_id) then
      raise exception 'Issuing keys here needs apikey:write.' using errcode = 'AH403';
    end if;
    if not authhub_private.holds_api_key_scopes(scopes, issue_api_key.organization_id) then
      raise exception 'A key cannot be given scopes its issuer does not hold here.' using errcode = 'AH403', column = 'scopes';
    end if;
  end if;
  insert into authhub.api_keys (tenant_id, key_id, organization_id, name, scopes, rate_limit_per_minute, expires_at, created_by)
  values (t_id, issue_api_key.key_id, issue_api_key.organization_id, issue_api_key.name,
          (select array_agg(distinct s order by s) from unnest(scopes) s)::authhub.permission_key[],
          coalesce(issue_api_key.rate_limit_per_minute, 1000), issue_api_key.expires_at, authhub.current_user_id())
  returning * into created;
  insert into authhub_private.api_key_secrets (tenant_id, api_key_id, fingerprint, secret_encrypted)
  values (t_id, created.id, issue_api_key.fingerprint, issue_api_key.secret_encrypted);
  return created;
end;
$$;
grant execute on function authhub_private.issue_api_key(text, text, text[], uuid, integer, timestamptz, text, text, uuid) to authhub_user;

-- The key `id`, locked, for rotating or revoking: one the caller may manage
-- (apikey:write at its scope, as a user), or any for the operator; else AH404.
create function authhub_private.api_key_to_manage(id uuid) returns authhub.api_keys
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  operator boolean := authhub_private.is_operator();
  k authhub.api_keys;
begin
  select * into k from authhub.api_keys a
  where a.id = api_key_to_manage.id and (operator or a.tenant_id = authhub.current_tenant_id())
  for update;
  if k.id is null or (not operator and not authhub_private.can_manage_api_keys(k.organization_id)) then
    raise exception 'No such key.' using errcode = 'AH404';
  end if;
  return k;
end;
$$;

-- Rotates a key's secret: the new one works at once; the old one keeps working
-- for `grace` (zero: not at all), then only the new one does.
create function authhub_private.rotate_api_key_secret(id uuid, fingerprint text, secret_encrypted text, grace interval)
  returns authhub.api_keys
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  operator boolean := authhub_private.is_operator();
  k authhub.api_keys;
begin
  k := authhub_private.api_key_to_manage(rotate_api_key_secret.id);
  -- A new secret hands over every scope of the key: only to who holds them all.
  if not operator and not authhub_private.holds_api_key_scopes(k.scopes::text[], k.organization_id) then
    raise exception 'Rotating this key needs every scope it has.' using errcode = 'AH403';
  end if;
  if k.revoked_at is not null then
    raise exception 'A revoked key cannot be rotated.' using errcode = 'AH409';
  end if;
  if grace is null or grace < interval '0' or grace > interval '7 days' then
    raise exception 'The grace period is between 0 and 7 days.' using errcode = 'AH422', column = 'gracePeriodSeconds';
  end if;
  update authhub_private.api_key_secrets s set expires_at = least(coalesce(s.expires_at, 'infinity'), now() + grace)
  where s.tenant_id = k.tenant_id and s.api_key_id = k.id and (s.expires_at is null or s.expires_at > now());
  insert into authhub_private.api_key_secrets (tenant_id, api_key_id, fingerprint, secret_encrypted)
  values (k.tenant_id, k.id, rotate_api_key_secret.fingerprint, rotate_api_key_secret.secret_encrypted);
  update authhub.api_keys a set updated_at = now() where a.tenant_id = k.tenant_id and a.id = k.id returning * into k;
  return k;
end;
$$;
grant execute on function authhub_private.rotate_api_key_secret(uuid, text, text, interval) to authhub_user;

-- Revokes a key (GraphQL revokeApiKey): it stops working within a second.
create function authhub.revoke_api_key(id uuid) returns authhub.api_keys
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  k authhub.api_keys;
begin
  k := authhub_private.api_key_to_manage(revoke_api_key.id);
  update authhub.api_keys a set revoked_at = coalesce(a.revoked_at, now())
  where a.tenant_id = k.tenant_id and a.id = k.id returning * into k;
  return k;
end;
$$;
comment on function authhub.revoke_api_key(uuid) is E'@resultFieldName apiKey\nRevokes an API key: it stops working within a second.';
grant execute on function authhub.revoke_api_key(uuid) to authhub_user;

-- When a key was last used and how many requests it has made (GraphQL fields).
create function authhub.api_keys_last_used_at(k authhub.api_keys) returns timestamptz
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select u.last_used_at from authhub_private.api_key_usage u
  where u.tenant_id = k.tenant_id and u.api_key_id = k.id and k.tenant_id = authhub.current_tenant_id()
$$;
create function authhub.api_keys_request_count(k authhub.api_keys) returns bigint
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select coalesce((select u.request_count from authhub_private.api_key_usage u
                   where u.tenant_id = k.tenant_id and u.api_key_id = k.id and k.tenant_id = authhub.current_tenant_id()), 0)
$$;
grant execute on function authhub.api_keys_last_used_at(authhub.api_keys), authhub.api_keys_request_count(authhub.api_keys) to authhub_user;

-------------------------------------------------------------------------------
-- Serving requests. The server's login role reads a key by its public id (to
-- check the signature, the secrets it may be signed with, encrypted), then
-- runs the request as authhub_api_client, whose first statement records the
-- nonce (refusing a reuse within its window) and counts the use.

create function authhub_private.api_key_for_request(key_id text)
  returns table (id uuid, tenant_id uuid, organization_id uuid, name text, scopes text[], rate_limit_per_minute integer,
                 tenant_rate_limit_per_minute integer, expires_at timestamptz, secrets text[])
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select k.id, k.tenant_id, k.organization_id, k.name::text, k.scopes::text[], k.rate_limit_per_minute,
         t.api_rate_limit_per_minute, k.expires_at,
         array(select s.secret_encrypted from authhub_private.api_key_secrets s
               where s.tenant_id = k.tenant_id and s.api_key_id = k.id and (s.expires_at is null or s.expires_at > now())
               order by s.expires_at nulls first)
  from authhub.api_keys k
  join authhub.tenants t on t.id = k.tenant_id
  where k.key_id = api_key_for_request.key_id
    and k.revoked_at is null and (k.expires_at is null or k.expires_at > now())
    and t.status = 'active'
$$;
grant execute on function authhub_private.api_key_for_request(text) to authhub_authenticator;

-- Before a key's request: the key is still live (revocation holds from the
-- commit that made it, whatever the server cached) and the nonce is new for
-- this key within its window. The server commits this on its own, ahead of the
-- request's transaction, so a request that fails or is refused cannot be
-- replayed. Raises AH401 otherwise, which the server answers like every
-- authentication failure. (Use is counted apart, by record_api_key_usage: a
-- per-key row updated by every request would make them wait on each other.)
create function authhub_private.begin_api_request(api_key_id uuid, tenant_id uuid, nonce text, window_seconds integer) returns void
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  recorded boolean;
begin
  if not exists (
    select 1 from authhub.api_keys k join authhub.tenants t on t.id = k.tenant_id
    where k.tenant_id = begin_api_request.tenant_id and k.id = begin_api_request.api_key_id
      and k.revoked_at is null and (k.expires_at is null or k.expires_at > now()) and t.status = 'active') then
    raise exception 'The API key is not valid.' using errcode = 'AH401';
  end if;
  insert into authhub_private.api_nonces as n (api_key_id, nonce, expires_at)
  values (begin_api_request.api_key_id, begin_api_request.nonce, now() + make_interval(secs => 2 * window_seconds))
  on conflict (api_key_id, nonce) do update set expires_at = excluded.expires_at where n.expires_at < now()
  returning true into recorded;
  if recorded is null then
    raise exception 'The nonce was used already.' using errcode = 'AH401';
  end if;
end;
$$;
grant execute on function authhub_private.begin_api_request(uuid, uuid, text, integer) to authhub_authenticator;

-- Requests served per key since the last call, added up by each server and
-- recorded about once a second (server/openapi/usage.ts).
create function authhub_private.record_api_key_usage(tenant_ids uuid[], api_key_ids uuid[], counts integer[], last_used_at timestamptz)
  returns void
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  insert into authhub_private.api_key_usage as u (tenant_id, api_key_id, last_used_at, request_count)
  select x.tenant_id, x.api_key_id, record_api_key_usage.last_used_at, x.n
  from unnest(tenant_ids, api_key_ids, counts) as x (tenant_id, api_key_id, n)
  join authhub.api_keys k on k.tenant_id = x.tenant_id and k.id = x.api_key_id
  where x.n > 0
  on conflict (tenant_id, api_key_id) do update
    set last_used_at = greatest(u.last_used_at, excluded.last_used_at), request_count = u.request_count + excluded.request_count
$$;
grant execute on function authhub_private.record_api_key_usage(uuid[], uuid[], integer[], timestamptz) to authhub_authenticator;

-- Expired nonces, removed by the worker's open_api__cleanup job.
create function authhub_private.purge_expired_nonces(max_rows integer) returns integer
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  with gone as (
    delete from authhub_private.api_nonces n
    where (n.api_key_id, n.nonce) in (select x.api_key_id, x.nonce from authhub_private.api_nonces x where x.expires_at < now() limit max_rows)
    returning 1
  )
  select count(*)::integer from gone
$$;
grant execute on function authhub_private.purge_expired_nonces(integer) to authhub_worker;

-- A user's authority ends with the user: suspending or deleting a user revokes
-- the keys they issued (a key never outlives its issuer's standing; demotions
-- are for the tenant admin to review: apiKeys shows createdByUser).
create function authhub_private.tg_users__revoke_issued_keys() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  update authhub.api_keys k set revoked_at = now()
  where k.tenant_id = old.tenant_id and k.created_by = old.id and k.revoked_at is null;
  -- BEFORE DELETE: the row goes ahead (AFTER UPDATE ignores this).
  return old;
end;
$$;
create trigger _400_revoke_issued_keys after update of status on authhub.users
  for each row when (new.status <> 'active' and old.status = 'active')
  execute function authhub_private.tg_users__revoke_issued_keys();
create trigger _400_revoke_issued_keys_on_delete before delete on authhub.users
  for each row execute function authhub_private.tg_users__revoke_issued_keys();
