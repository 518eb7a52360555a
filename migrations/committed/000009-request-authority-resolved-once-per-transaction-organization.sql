--! Previous: sha1:9efcc01756fba976937f0a5a0895cee168006a16
--! Hash: sha1:6a05450443d5ce215302ffa8296232397d05f9e1
--! Message: Request authority resolved once per transaction, organization closure, nonce epoch, keys beyond their issuer authority

--! split: 100-organization-closure.sql
-- Every organization's ancestors, itself included, kept by a trigger: "the
-- subtrees of these organizations" becomes one index range scan instead of a
-- recursive walk in every statement that asks (issue 14). Organizations that
-- hold whole sellers' worth of stores make that walk the dominant cost.
create table authhub_private.organization_closure (
  tenant_id       uuid not null,
  ancestor_id     uuid not null,
  organization_id uuid not null,
  primary key (tenant_id, ancestor_id, organization_id),
  foreign key (tenant_id, ancestor_id) references authhub.organizations (tenant_id, id) on update cascade on delete cascade,
  foreign key (tenant_id, organization_id) references authhub.organizations (tenant_id, id) on update cascade on delete cascade
);
-- The foreign key to the descendant, and "the ancestors of X".
create index organization_closure_organization_idx on authhub_private.organization_closure (tenant_id, organization_id);
alter table authhub_private.organization_closure enable row level security;
alter table authhub_private.organization_closure force row level security;
create policy all_owner on authhub_private.organization_closure for all to authhub_owner using (true) with check (true);
comment on policy all_owner on authhub_private.organization_closure is
  'Only the owner: request roles reach the closure through the definer helpers of the request authority.';
comment on table authhub_private.organization_closure is
  'Pairs (ancestor, organization) for every organization and each of its ancestors, itself included. Derived from organizations.parent_id by tg_organizations__closure.';
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('authhub_private.organization_closure', 'Derived from organizations.parent_id, whose changes are audited.');

-- Insert: the new organization under each of its ancestors. A move (parent_id
-- changed): its subtree leaves the ancestors it had above it and joins the new
-- parent's. Ancestors are read from organizations itself, not from the closure,
-- so rows inserted in one statement in any order (a child before its parent)
-- still end up complete. The tenant's organization lock (the one
-- tg_organizations__prevent_cycle takes) keeps a move and an insert below the
-- moving subtree from seeing each other half done.
create function authhub_private.tg_organizations__closure() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  perform pg_advisory_xact_lock(hashtextextended('authhub.organizations:' || new.tenant_id::text, 0));
  if tg_op = 'UPDATE' then
    delete from authhub_private.organization_closure c
    where c.tenant_id = new.tenant_id
      and c.organization_id in (select s.organization_id from authhub_private.organization_closure s
                                where s.tenant_id = new.tenant_id and s.ancestor_id = new.id)
      and c.ancestor_id not in (select s.organization_id from authhub_private.organization_closure s
                                where s.tenant_id = new.tenant_id and s.ancestor_id = new.id);
  end if;
  insert into authhub_private.organization_closure (tenant_id, ancestor_id, organization_id)
  with recursive up (id) as (
    select new.id
    union
    select o.parent_id from authhub.organizations o join up on o.id = up.id
    where o.tenant_id = new.tenant_id and o.parent_id is not null
  ),
  below (id) as (
    select new.id
    union
    select s.organization_id from authhub_private.organization_closure s
    where s.tenant_id = new.tenant_id and s.ancestor_id = new.id
  )
  select new.tenant_id, up.id, below.id from up cross join below
  on conflict do nothing;
  return null;
end;
$$;
comment on function authhub_private.tg_organizations__closure() is
  'Keeps organization_closure in step with organizations.parent_id. Definer: the closure is the owner''s alone.';
create trigger _300_closure after insert or update of parent_id on authhub.organizations
  for each row execute function authhub_private.tg_organizations__closure();

insert into authhub_private.organization_closure (tenant_id, ancestor_id, organization_id)
with recursive up (tenant_id, organization_id, ancestor_id) as (
  select o.tenant_id, o.id, o.id from authhub.organizations o
  union
  select up.tenant_id, up.organization_id, o.parent_id
  from up join authhub.organizations o on o.tenant_id = up.tenant_id and o.id = up.ancestor_id
  where o.parent_id is not null
)
select tenant_id, ancestor_id, organization_id from up;

--! split: 200-request-authority.sql
-- A request's authority, resolved once per transaction (issues 12 and 14).
--
-- Before: every policy asked definer helpers (current_user_level,
-- has_tenant_permission, organizations_with_permission) that read users,
-- tenants, logins, assignments and memberships again, in every statement, once
-- per policy; and the Postgres role came from the token's claim alone, so
-- column grants followed a claim the database did not confirm.
--
-- Now: the request's first statement, as the authenticator, is
--   select set_config('role', authhub_private.begin_request(), true)
-- (db/claims.ts builds it, after the claims' set_config). begin_request reads
-- the claims once, resolves the caller's live authority in one query, keeps it
-- in transaction-local settings, and names the role to run as: the least of the
-- claim and the live level, so grants, policies and functions agree. Policies
-- read the settings through small invoker SQL accessors that the planner
-- inlines. A revoked right, a demotion or a suspension still takes effect on the
-- next request; within one request, authority is what it was when it began.
--
-- Without begin_request (a path that sets claims and a role itself) the
-- settings are empty and every accessor answers "nothing": it fails closed.

create type authhub_private.authority as (
  -- Tenant-wide level: the user's own level capped by the claim; null: none (suspended, ended login…).
  level       authhub.role_level,
  -- The level whose Postgres role the request runs as.
  role_level  authhub.role_level,
  -- Permissions held tenant-wide.
  permissions text[],
  -- Organization-scoped permissions: {permission: [organizations whose subtrees they cover]}.
  org_scope   jsonb,
  -- Organizations the caller administers (ORG_ADMIN), whose subtrees it manages.
  managed     uuid[],
  -- Organizations the caller is a member of.
  member_of   uuid[]
);
comment on type authhub_private.authority is 'A caller''s authority as begin_request resolves it for one transaction.';

-- A user's live authority in a tenant, its claimed level capping it. Null when
-- the user or tenant is not active. One definition serves the request path
-- (begin_request) and the question "does a key's issuer still hold its scopes"
-- (api_keys_beyond_issuer_authority). Definer: it reads users, memberships and
-- assignments past their policies.
create function authhub_private.user_authority(tenant_id uuid, user_id uuid, claimed authhub.role_level)
  returns authhub_private.authority
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  with u as (
    select least(u.level, coalesce(user_authority.claimed, 'USER')) as level, u.level as own_level
    from authhub.users u
    join authhub.tenants t on t.id = u.tenant_id
    where u.tenant_id = user_authority.tenant_id and u.id = user_authority.user_id
      and u.status = 'active' and t.status = 'active'
  ),
  m as (
    select coalesce(array_agg(m.organization_id), '{}') as member_of,
           coalesce(array_agg(m.organization_id) filter (where m.level = 'ORG_ADMIN'), '{}') as admin_of
    from authhub.memberships m
    where m.tenant_id = user_authority.tenant_id and m.user_id = user_authority.user_id
  ),
  a as (
    select a.organization_id, rp.permission_key::text as permission, p.org_scopable
    from authhub.role_assignments a
    join authhub.role_permissions rp on rp.tenant_id = a.tenant_id and rp.role_id = a.role_id
    join authhub.permissions p on p.key = rp.permission_key
    where a.tenant_id = user_authority.tenant_id and a.user_id = user_authority.user_id
  ),
  claims_org_admin as (
    select coalesce(user_authority.claimed, 'USER') >= 'ORG_ADMIN' as yes
  )
  select row(
    u.level,
    least(coalesce(user_authority.claimed, 'USER'),
          case when u.own_level > 'USER' then u.own_level
               when cardinality(m.admin_of) > 0 then 'ORG_ADMIN'
               else 'USER' end),
    array(
      select lp.permission_key::text from authhub.level_permissions lp
      where u.level >= 'TENANT_ADMIN' and lp.level = u.level
      union
      select a.permission from a where a.organization_id is null
    ),
    coalesce((
      select jsonb_object_agg(s.permission, s.seeds)
      from (
        select x.permission, jsonb_agg(distinct x.organization_id) as seeds
        from (
          select lp.permission_key::text as permission, seed.id as organization_id
          from authhub.level_permissions lp, unnest(m.admin_of) as seed(id), claims_org_admin c
          where lp.level = 'ORG_ADMIN' and c.yes
          union
          select a.permission, a.organization_id from a where a.organization_id is not null and a.org_scopable
        ) x
        group by x.permission
      ) s
    ), '{}'),
    case when (select yes from claims_org_admin) then m.admin_of else '{}' end,
    m.member_of
  )::authhub_private.authority
  from u cross join m
$$;
comment on function authhub_private.user_authority(uuid, uuid, authhub.role_level) is
  'A user''s live authority in a tenant, capped by the level it claims; null when the user or its tenant is not active.';

-- An Open API key's authority: USER level; its scopes tenant-wide, or, for a key
-- bound to an organization, over that organization's subtree (org-scopable ones
-- only). Null for a revoked or expired key or a suspended tenant.
create function authhub_private.key_authority(tenant_id uuid, api_key_id uuid)
  returns authhub_private.authority
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select row(
    'USER', 'USER',
    case when k.organization_id is null then k.scopes::text[] else '{}' end,
    case when k.organization_id is null then '{}'::jsonb
         else coalesce((select jsonb_object_agg(p.key, jsonb_build_array(k.organization_id))
                        from authhub.permissions p where p.key = any (k.scopes::text[]) and p.org_scopable), '{}') end,
    '{}', '{}'
  )::authhub_private.authority
  from authhub.api_keys k
  join authhub.tenants t on t.id = k.tenant_id
  where k.tenant_id = key_authority.tenant_id and k.id = key_authority.api_key_id
    and k.revoked_at is null and (k.expires_at is null or k.expires_at > now())
    and t.status = 'active'
$$;
comment on function authhub_private.key_authority(uuid, uuid) is
  'An API key''s authority (USER level, its scopes); null when the key is revoked or expired or its tenant suspended.';

-- The request's first statement (after its claims): resolves the caller once
-- and returns the Postgres role to run as. Only the authenticator may call it,
-- before it switches role; a request role cannot call it again to re-resolve.
-- Definer: it must read past RLS, and set_config('role') stays with the caller
-- (PostgreSQL refuses a role change inside a definer function).
create function authhub_private.begin_request() returns text
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  tenant uuid := authhub.current_tenant_id();
  caller uuid := authhub.current_user_id();
  key    uuid := authhub.current_api_key_id();
  a      authhub_private.authority;
  role   text := 'authhub_anonymous';
begin
  if tenant is not null and key is not null then
    role := 'authhub_api_client';
    if caller is null then
      a := authhub_private.key_authority(tenant, key);
    end if;
  elsif tenant is not null and caller is not null then
    if not authhub_private.session_ended() then
      a := authhub_private.user_authority(tenant, caller, authhub.current_claimed_level());
    end if;
    role := case coalesce(a.role_level, 'USER')
              when 'SUPER_ADMIN' then 'authhub_super_admin'
              when 'TENANT_ADMIN' then 'authhub_tenant_admin'
              when 'ORG_ADMIN' then 'authhub_org_admin'
              else 'authhub_user'
            end;
  end if;
  perform pg_catalog.set_config('authhub.level', coalesce(a.level::text, ''), true),
          pg_catalog.set_config('authhub.permissions', coalesce(a.permissions, '{}')::text, true),
          pg_catalog.set_config('authhub.org_scope', coalesce(a.org_scope, '{}')::text, true),
          pg_catalog.set_config('authhub.managed', coalesce(a.managed, '{}')::text, true),
          pg_catalog.set_config('authhub.member_of', coalesce(a.member_of, '{}')::text, true);
  return role;
end;
$$;
comment on function authhub_private.begin_request() is
  'Resolves the caller named by the claims once per transaction: keeps its authority in transaction-local settings and returns the Postgres role to run as (the least of the claim and the live level).';
grant execute on function authhub_private.begin_request() to authhub_authenticator;

-- The accessors policies use. Invoker SQL with no SET clause, so the planner
-- inlines them: inside a policy's `(select …)` each is one current_setting()
-- read per statement.
create or replace function authhub_private.current_user_level() returns authhub.role_level
  language sql stable parallel safe
as $$
  select nullif(pg_catalog.current_setting('authhub.level', true), '')::authhub.role_level
$$;
comment on function authhub_private.current_user_level() is
  'The caller''s tenant-wide level as begin_request resolved it (null: no authority).';

create or replace function authhub_private.has_tenant_permission(permission text) returns boolean
  language sql stable parallel safe
as $$
  select has_tenant_permission.permission = any (coalesce(nullif(pg_catalog.current_setting('authhub.permissions', true), ''), '{}')::text[])
$$;
comment on function authhub_private.has_tenant_permission(text) is
  'Whether the caller holds the permission tenant-wide (as begin_request resolved it).';

-- The organizations at whose subtrees the caller holds `permission` (from the
-- settings), and those subtrees (from the closure: definer, the closure is the
-- owner's).
create function authhub_private.permission_seeds(permission text) returns uuid[]
  language sql stable parallel safe
as $$
  select coalesce(array(
    select pg_catalog.jsonb_array_elements_text(
      coalesce(nullif(pg_catalog.current_setting('authhub.org_scope', true), ''), '{}')::jsonb -> permission_seeds.permission)::uuid
  ), '{}')
$$;
comment on function authhub_private.permission_seeds(text) is
  'The organizations whose subtrees an organization-scoped permission covers for the caller.';
grant execute on function authhub_private.permission_seeds(text) to authhub_user;

create or replace function authhub_private.organizations_with_permission(permission text) returns setof uuid
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select c.organization_id from authhub_private.organization_closure c
  where c.tenant_id = authhub.current_tenant_id()
    and c.ancestor_id = any (authhub_private.permission_seeds(organizations_with_permission.permission))
$$;

create or replace function authhub_private.managed_organization_ids() returns setof uuid
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select c.organization_id from authhub_private.organization_closure c
  where c.tenant_id = authhub.current_tenant_id()
    and c.ancestor_id = any (coalesce(nullif(pg_catalog.current_setting('authhub.managed', true), ''), '{}')::uuid[])
$$;

create or replace function authhub_private.member_organization_ids() returns setof uuid
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select unnest(coalesce(nullif(pg_catalog.current_setting('authhub.member_of', true), ''), '{}')::uuid[])
$$;

-- Superseded by key_authority: the caller's key is resolved by begin_request.
drop function authhub_private.current_api_key();

--! split: 300-nonce-epoch.sql
-- Replay safety across a crash (issue 12). The nonce store is unlogged (a write
-- per request, kept off the WAL), so crash recovery empties it, and a captured
-- request replayed within its 300 s window afterwards would find its nonce
-- unused. The store now carries its own epoch: a row in an unlogged table of its
-- own, emptied by the same recovery. When begin_api_request finds no epoch, the
-- store has just been (re)created, and it records one. A request signed before
-- the epoch (its X-Timestamp, whole seconds) is refused: every request whose
-- nonce the crash lost was signed before it. The cost: requests signed in the
-- second the store comes back are refused once (401), and a client re-signing
-- a second later gets through.
create unlogged table authhub_private.api_nonce_epoch (
  singleton  boolean primary key default true constraint api_nonce_epoch_singleton check (singleton),
  started_at timestamptz not null default now()
);
alter table authhub_private.api_nonce_epoch enable row level security;
alter table authhub_private.api_nonce_epoch force row level security;
create policy all_owner on authhub_private.api_nonce_epoch for all to authhub_owner using (true) with check (true);
comment on policy all_owner on authhub_private.api_nonce_epoch is 'Only the owner: written through begin_api_request.';
comment on table authhub_private.api_nonce_epoch is
  'When the unlogged nonce store was last (re)created; requests signed before it are refused.';
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('authhub_private.api_nonce_epoch', 'Replay protection bookkeeping, reset by crash recovery.');
insert into authhub_private.api_nonce_epoch default values;

drop function authhub_private.begin_api_request(uuid, uuid, text, integer);
-- A signed request's first step, committed on its own so no later failure can
-- un-record the nonce: the key is live, the request was signed after the nonce
-- store's epoch, and its nonce is new. Answers whether the request may go on;
-- a refusal is an answer, not an error, so the epoch recorded on the way
-- commits with it (an error would roll it back, and every request after a
-- crash would find no epoch, record a new one, and be refused again).
create function authhub_private.begin_api_request(api_key_id uuid, tenant_id uuid, nonce text, window_seconds integer, signed_at timestamptz)
  returns boolean
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  recorded boolean;
  epoch timestamptz;
begin
  if not exists (
    select 1 from authhub.api_keys k join authhub.tenants t on t.id = k.tenant_id
    where k.tenant_id = begin_api_request.tenant_id and k.id = begin_api_request.api_key_id
      and k.revoked_at is null and (k.expires_at is null or k.expires_at > now()) and t.status = 'active') then
    return false;
  end if;
  select e.started_at into epoch from authhub_private.api_nonce_epoch e;
  if epoch is null then
    insert into authhub_private.api_nonce_epoch default values on conflict do nothing;
    select e.started_at into epoch from authhub_private.api_nonce_epoch e;
  end if;
  if begin_api_request.signed_at < epoch then
    return false;
  end if;
  insert into authhub_private.api_nonces as n (api_key_id, nonce, expires_at)
  values (begin_api_request.api_key_id, begin_api_request.nonce, now() + make_interval(secs => 2 * window_seconds))
  on conflict (api_key_id, nonce) do update set expires_at = excluded.expires_at where n.expires_at < now()
  returning true into recorded;
  return coalesce(recorded, false);
end;
$$;
comment on function authhub_private.begin_api_request(uuid, uuid, text, integer, timestamptz) is
  'First step of a signed Open API request: whether the key is live, the request was signed after the nonce store''s epoch, and its nonce is unused (recorded now).';
grant execute on function authhub_private.begin_api_request(uuid, uuid, text, integer, timestamptz) to authhub_authenticator;

--! split: 400-key-issuer-authority.sql
-- A key outlives its issuer's demotion (issue 12): its scopes were checked
-- against its issuer's authority when it was issued, and revocation stays an
-- explicit act. Tenant admins can now list the keys whose issuer no longer holds
-- what the scopes need, and the worker flags each such key (and clears the flag
-- when the authority returns), which the audit log records as a change of the
-- key by `system:api_keys__check_issuers`.

alter table authhub.api_keys add column issuer_authority_lost_at timestamptz;
comment on column authhub.api_keys.issuer_authority_lost_at is
  'Set by the worker when the key''s issuer stopped holding every scope of the key at the key''s organization; cleared when it holds them again. Revoking stays explicit.';

-- Whether the key's issuer (created_by) still holds each of its scopes where the
-- key acts (tenant-wide, or the key's organization). Keys the operator issued
-- (the CLI, no issuer) have nothing to lose. Definer: it reads the issuer's
-- authority past RLS.
create function authhub_private.key_within_issuer_authority(tenant_id uuid, api_key_id uuid) returns boolean
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select k.created_by is null or coalesce((
    select bool_and(
      s = any (a.permissions)
      or (k.organization_id is not null and exists (
            select 1 from authhub_private.organization_closure c
            where c.tenant_id = k.tenant_id and c.organization_id = k.organization_id
              and c.ancestor_id in (select pg_catalog.jsonb_array_elements_text(a.org_scope -> s)::uuid))))
    from authhub_private.user_authority(k.tenant_id, k.created_by, 'SUPER_ADMIN') as a,
         unnest(k.scopes::text[]) as s
    where a.level is not null
  ), false)
  from authhub.api_keys k
  where k.tenant_id = key_within_issuer_authority.tenant_id and k.id = key_within_issuer_authority.api_key_id
$$;
comment on function authhub_private.key_within_issuer_authority(uuid, uuid) is
  'Whether an API key''s issuer still holds every scope of the key where the key acts (true for operator-issued keys).';
grant execute on function authhub_private.key_within_issuer_authority(uuid, uuid) to authhub_user, authhub_worker;

-- The caller's visible live keys (RLS decides which) whose issuer lost authority.
create function authhub.api_keys_beyond_issuer_authority() returns setof authhub.api_keys
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select k.* from authhub.api_keys k
  where k.revoked_at is null and (k.expires_at is null or k.expires_at > now())
    and not authhub_private.key_within_issuer_authority(k.tenant_id, k.id)
  order by k.tenant_id, k.id
$$;
comment on function authhub.api_keys_beyond_issuer_authority() is
  'Live API keys (of those the caller may read) whose issuer no longer holds every scope the key carries. Revoke them explicitly.';
grant execute on function authhub.api_keys_beyond_issuer_authority() to authhub_user;

-- The worker's pass: flags keys that went beyond their issuer's authority and
-- clears the flag of keys back within it; answers how many keys it changed.
create function authhub_private.flag_keys_beyond_issuer_authority() returns integer
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  with checked as (
    select k.tenant_id, k.id, authhub_private.key_within_issuer_authority(k.tenant_id, k.id) as within,
           k.issuer_authority_lost_at is not null as flagged
    from authhub.api_keys k
    join authhub.tenants t on t.id = k.tenant_id and t.status = 'active'
    where k.revoked_at is null and (k.expires_at is null or k.expires_at > now()) and k.created_by is not null
  ),
  changed as (
    update authhub.api_keys k
    set issuer_authority_lost_at = case when c.within then null else now() end
    from checked c
    where k.tenant_id = c.tenant_id and k.id = c.id and c.within = c.flagged
    returning 1
  )
  select count(*)::int from changed
$$;
comment on function authhub_private.flag_keys_beyond_issuer_authority() is
  'Worker: marks (and unmarks) API keys whose issuer lost (regained) the authority their scopes need.';
grant execute on function authhub_private.flag_keys_beyond_issuer_authority() to authhub_worker;
