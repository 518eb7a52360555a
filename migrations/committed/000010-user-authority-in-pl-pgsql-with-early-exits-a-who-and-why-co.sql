--! Previous: sha1:6a05450443d5ce215302ffa8296232397d05f9e1
--! Hash: sha1:eb63c01ce57cce491196d4aef016bf47fc368fb1
--! Message: User authority in PL/pgSQL with early exits; a who-and-why comment on every policy; Clerk deliveries refused by a rule record a safe reason

--! split: 1-current.sql
-- user_authority as PL/pgSQL with early exits (issue 14, measured): the single
-- SQL statement of 000009 took about 175 µs a call on this machine, most of it
-- for the parts that are empty for most callers (custom roles, organization
-- scopes). Now the user and its memberships are one index read each, a tenant
-- admin's permissions one read of the level catalogue, and custom roles are
-- looked at only when the user has an assignment.
create or replace function authhub_private.user_authority(tenant_id uuid, user_id uuid, claimed authhub.role_level)
  returns authhub_private.authority
  language plpgsql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  a authhub_private.authority;
  own authhub.role_level;
  claim authhub.role_level := coalesce(user_authority.claimed, 'USER');
  admin_of uuid[];
  has_roles boolean;
begin
  -- The common case in one statement: the user, its memberships, its level's permissions.
  select u.level,
         least(u.level, claim),
         coalesce((select array_agg(m.organization_id) from authhub.memberships m
                   where m.tenant_id = u.tenant_id and m.user_id = u.id), '{}'),
         coalesce((select array_agg(m.organization_id) from authhub.memberships m
                   where m.tenant_id = u.tenant_id and m.user_id = u.id and m.level = 'ORG_ADMIN'), '{}'),
         case when least(u.level, claim) >= 'TENANT_ADMIN'
              then coalesce((select array_agg(lp.permission_key::text) from authhub.level_permissions lp where lp.level = least(u.level, claim)), '{}')
              else '{}' end,
         exists (select 1 from authhub.role_assignments ra where ra.tenant_id = u.tenant_id and ra.user_id = u.id)
    into own, a.level, a.member_of, admin_of, a.permissions, has_roles
  from authhub.users u
  join authhub.tenants t on t.id = u.tenant_id
  where u.tenant_id = user_authority.tenant_id and u.id = user_authority.user_id
    and u.status = 'active' and t.status = 'active';
  if not found then
    return null;
  end if;
  a.role_level := least(claim, case when own > 'USER' then own when cardinality(admin_of) > 0 then 'ORG_ADMIN' else 'USER' end);
  -- ORG_ADMIN memberships count only for a caller claiming at least ORG_ADMIN.
  a.managed := case when claim >= 'ORG_ADMIN' then admin_of else '{}' end;
  a.org_scope := '{}';
  if cardinality(a.managed) > 0 then
    select coalesce(jsonb_object_agg(lp.permission_key, to_jsonb(a.managed)), '{}') into a.org_scope
    from authhub.level_permissions lp where lp.level = 'ORG_ADMIN';
  end if;
  if has_roles then
    a.permissions := array(
      select unnest(a.permissions)
      union
      select rp.permission_key::text
      from authhub.role_assignments ra
      join authhub.role_permissions rp on rp.tenant_id = ra.tenant_id and rp.role_id = ra.role_id
      where ra.tenant_id = user_authority.tenant_id and ra.user_id = user_authority.user_id and ra.organization_id is null);
    select coalesce(jsonb_object_agg(x.permission, x.seeds), '{}') into a.org_scope
    from (
      select s.permission, jsonb_agg(distinct s.organization_id) as seeds
      from (
        select lp.permission_key::text as permission, seed.id as organization_id
        from authhub.level_permissions lp, unnest(a.managed) as seed(id)
        where lp.level = 'ORG_ADMIN'
        union
        select rp.permission_key::text, ra.organization_id
        from authhub.role_assignments ra
        join authhub.role_permissions rp on rp.tenant_id = ra.tenant_id and rp.role_id = ra.role_id
        join authhub.permissions p on p.key = rp.permission_key and p.org_scopable
        where ra.tenant_id = user_authority.tenant_id and ra.user_id = user_authority.user_id and ra.organization_id is not null
      ) s
      group by s.permission
    ) x;
  end if;
  return a;
end;
$$;
-- Plans chosen once: its statements are the same every call, and a custom plan
-- per call (the default for the first five) costs more than running it.
alter function authhub_private.user_authority(uuid, uuid, authhub.role_level) set plan_cache_mode = force_generic_plan;

-- Policy comments.
-- Every policy carries its who and why, so the current definition (db/schema/,
-- `npm run db:dump`) says it beside the rule (issue 13).
do $$
declare
  p record;
begin
  for p in
    select schemaname, tablename, policyname from pg_policies
    where policyname in ('all_owner', 'insert_owner', 'select_owner', 'update_owner', 'delete_owner')
  loop
    execute format(
      'comment on policy %I on %I.%I is %L', p.policyname, p.schemaname, p.tablename,
      'The owner (authhub_owner: migrations, the CLI, the worker''s connection before it switches to authhub_worker). No request runs as the owner.');
  end loop;
end;
$$;

comment on policy select_permitted on authhub.api_keys is
  'Holders of apikey:read see the tenant''s keys (tenant-wide) or those of the organizations in their scope.';
comment on policy update_permitted on authhub.api_keys is
  'Holders of apikey:write may rename a key, change its limit or expiry, tenant-wide or in their scope; only users (a key never manages keys), and the key''s scopes must stay within what the caller holds there.';
comment on policy select_permitted on authhub.audit_events is
  'Holders of audit:read: tenant-wide, or the events of organizations in their scope (deleted ones included, through the tombstones).';
comment on policy select_super_admin on authhub.audit_events is
  'Super admins read every tenant''s events (the role alone is not enough: the live level must be SUPER_ADMIN).';
comment on policy select_all on authhub.level_permissions is
  'Every signed-in caller reads which permissions each built-in level holds (a global catalogue).';
comment on policy select_all on authhub.permissions is
  'Every signed-in caller reads the permission catalogue.';
comment on policy counting on authhub_private.rate_limits is
  'The server''s login role counts requests here (rate-limiter-flexible), before any request role is chosen.';

comment on policy all_super_admin on authhub.memberships is 'Super admins manage memberships in every tenant.';
comment on policy all_super_admin on authhub.organizations is 'Super admins manage organizations in every tenant.';
comment on policy all_super_admin on authhub.role_assignments is 'Super admins manage role assignments in every tenant.';
comment on policy all_super_admin on authhub.role_permissions is 'Super admins manage role permissions in every tenant.';
comment on policy all_super_admin on authhub.roles is 'Super admins manage custom roles in every tenant.';
comment on policy all_super_admin on authhub.tenants is 'Super admins create, change and delete tenants.';
comment on policy all_super_admin on authhub.users is 'Super admins manage users in every tenant.';

comment on policy select_permitted on authhub.memberships is
  'Holders of membership:read: tenant-wide, or the memberships of organizations in their scope.';
comment on policy select_self on authhub.memberships is
  'An active user sees its own memberships (which organizations it belongs to).';
comment on policy insert_permitted on authhub.memberships is
  'Holders of membership:write add members (tenant-wide, or to organizations in their scope, never someone above their own level); making an ORG_ADMIN takes a tenant admin, or an org admin of the organization naming someone else.';
comment on policy update_permitted on authhub.memberships is
  'As insert_permitted: holders of membership:write change a membership''s level within the same limits.';
comment on policy delete_permitted on authhub.memberships is
  'Holders of membership:write remove members within their scope and level; removing an ORG_ADMIN membership takes a tenant admin or an org admin above it.';

comment on policy select_member on authhub.organizations is
  'A user sees the organizations it is a member of.';
comment on policy select_permitted on authhub.organizations is
  'Holders of org:read: tenant-wide, or the organizations in their scope and the children of those.';
comment on policy insert_permitted on authhub.organizations is
  'Holders of org:write create organizations: tenant-wide, or below an organization in their scope.';
comment on policy update_permitted on authhub.organizations is
  'Holders of org:write rename organizations in their scope; moving one (parent_id) takes a tenant admin.';
comment on policy delete_permitted on authhub.organizations is
  'Holders of org:write delete organizations below their scope; one that holds authority (an ORG_ADMIN, a role assignment) only a tenant admin or its managing org admin.';

comment on policy select_permitted on authhub.role_assignments is
  'Holders of role:read: tenant-wide, or the assignments for organizations in their scope.';
comment on policy select_self on authhub.role_assignments is
  'An active user sees its own role assignments.';
comment on policy insert_permitted on authhub.role_assignments is
  'Holders of role:write where the assignment applies assign roles they could grant (level and permissions within their own) to users not above them, never to themselves.';
comment on policy delete_permitted on authhub.role_assignments is
  'As insert_permitted, for removing an assignment (themselves included).';

comment on policy select_permitted on authhub.role_permissions is
  'Holders of role:read anywhere read the permissions of the tenant''s roles.';
comment on policy insert_permitted on authhub.role_permissions is
  'Holders of role:write add to roles at or below their level only permissions they hold tenant-wide.';
comment on policy delete_permitted on authhub.role_permissions is
  'Holders of role:write remove permissions from roles at or below their level.';

comment on policy select_permitted on authhub.roles is
  'Holders of role:read anywhere read the tenant''s custom roles.';
comment on policy insert_permitted on authhub.roles is
  'Holders of role:write (tenant-wide) create roles at or below their own level.';
comment on policy update_permitted on authhub.roles is
  'Holders of role:write (tenant-wide) change roles at or below their own level, and keep them there.';
comment on policy delete_permitted on authhub.roles is
  'Holders of role:write (tenant-wide) delete roles at or below their own level.';

comment on policy select_member on authhub.tenants is
  'An active user reads its own tenant.';
comment on policy update_config on authhub.tenants is
  'Holders of tenant:config change their tenant''s branding and settings (the columns granted to authhub_user).';
comment on policy update_guard on authhub.tenants is
  'Restrictive: slug and status change only by a super admin (the column grants say the same; this holds if a grant is ever widened).';
comment on policy update_retention_guard on authhub.tenants is
  'Restrictive: the audit retention changes only by a tenant admin.';

comment on policy select_permitted on authhub.users is
  'Holders of user:read: tenant-wide, or the members of organizations in their scope.';
comment on policy select_self on authhub.users is
  'An active user reads itself.';
comment on policy insert_permitted on authhub.users is
  'Holders of user:write (tenant-wide) create users at or below their own level.';
comment on policy update_permitted on authhub.users is
  'Holders of user:write change users at or below their level; users holding authority (a level, an ORG_ADMIN membership, a role) only a tenant admin.';
comment on policy update_self on authhub.users is
  'An active user changes its own row (update_guard keeps its level, status and identity as they are).';
comment on policy update_guard on authhub.users is
  'Restrictive: level, status, e-mail and external identity change only by someone allowed to (user:write at or above the level; authority holders by a tenant admin); SUPER_ADMIN only by a super admin.';
comment on policy update_issuer_guard on authhub.users is
  'Restrictive: which identity provider a user signs in through changes only by a tenant admin.';
comment on policy delete_permitted on authhub.users is
  'Holders of user:write delete users at or below their level; users holding authority only a tenant admin.';

comment on policy select_tenant_admin on authhub.webhook_deliveries is
  'Tenant admins read their tenant''s webhook inbox (every delivery and its state).';
comment on policy select_tenant_admin on authhub.webhook_endpoints is
  'Tenant admins read their tenant''s webhook endpoints (never their secrets, kept elsewhere).';
comment on policy update_tenant_admin on authhub.webhook_endpoints is
  'Tenant admins enable, disable, rename and re-map their tenant''s endpoints.';

-- A delivery that breaks a rule is recorded with a reason tenant admins read
-- (webhook_deliveries.last_error): the reason, never the database's own
-- message, which names constraints and internal objects (issue 12).
create function authhub_private.public_reason(sqlstate text, constraint_name text, column_name text, message text) returns text
  language sql stable parallel safe
  set search_path = pg_catalog, pg_temp
as $$
  with field as (
    -- The column named by the error, else the columns of the constraint it names (tenant_id aside).
    select coalesce(nullif(public_reason.column_name, ''), (
      select string_agg(a.attname, ', ' order by a.attnum)
      from pg_catalog.pg_constraint c
      join pg_catalog.pg_attribute a on a.attrelid = c.conrelid and a.attnum = any (c.conkey)
      where c.conname = public_reason.constraint_name and c.connamespace = 'authhub'::regnamespace and a.attname <> 'tenant_id'
    )) as name
  )
  select case
    -- AuthHub's own refusals were written to be read.
    when public_reason.sqlstate like 'AH%' then public_reason.message
    when public_reason.sqlstate = '23505' then 'another record already has this ' || coalesce(field.name, 'value')
    when public_reason.sqlstate = '23514' then coalesce(field.name || ' ', 'a value ') || 'breaks a rule'
    when public_reason.sqlstate = '23502' then coalesce(field.name, 'a required value') || ' is missing'
    when public_reason.sqlstate = '23503' then 'a record it refers to does not exist'
    when public_reason.sqlstate = '23001' then 'the record is still referenced by others'
    when public_reason.sqlstate like '22%' then 'a value has the wrong format or length'
    else 'the change was refused (SQLSTATE ' || public_reason.sqlstate || ')'
  end
  from field
$$;
comment on function authhub_private.public_reason(text, text, text, text) is
  'A refusal as a reason safe to show a tenant admin: AuthHub''s own messages as written, the standard constraint classes in words, never the database''s message.';

CREATE OR REPLACE FUNCTION authhub_private.clerk_apply(tenant_id uuid, endpoint_id uuid, svix_id text)
 RETURNS text
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
#variable_conflict use_column
declare
  failed_state text;
  failed_constraint text;
  failed_column text;
  failed_message text;
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
        get stacked diagnostics failed_state = returned_sqlstate, failed_constraint = constraint_name, failed_column = column_name, failed_message = message_text;
        outcome := 'failed: ' || authhub_private.public_reason(failed_state, failed_constraint, failed_column, failed_message);
    end;
  end if;

  if outcome = 'retry' and d.attempts + 1 >= 12 then
    outcome := 'failed: its organization or user never arrived';
  elsif outcome = 'retry' then
    update authhub.webhook_deliveries w
    set attempts = w.attempts + 1,
        last_error = 'waiting for its organization or user',
        -- From the clock, not the transaction's start: the drain's next pass must not take it again.
        due_at = clock_timestamp() + authhub_private.clerk_backoff(d.attempts + 1),
        waiting_for = array_remove(array[
          case when the_org is null then 'organization:' || (data #>> '{organization,id}') end,
          case when the_user is null then 'user:' || (data #>> '{public_user_data,user_id}') end], null)
    where w.tenant_id = d.tenant_id and w.endpoint_id = d.endpoint_id and w.svix_id = d.svix_id;
    return outcome;
  end if;
  -- A user or organization arrived: memberships that were waiting for it are due now
  -- (the drain's look queues them; one another transaction holds is tried again after
  -- its backoff).
  if outcome = 'done' and kind in ('user.created', 'user.updated', 'organization.created', 'organization.updated') then
    with waiting as (
      select w.tenant_id, w.endpoint_id, w.svix_id from authhub.webhook_deliveries w
      -- Only pending deliveries wait (webhook_deliveries_waiting_pending).
      where w.tenant_id = d.tenant_id and w.endpoint_id = d.endpoint_id
        and w.waiting_for is not null and w.waiting_for @> array[d.entity] and w.svix_id <> d.svix_id
      for update skip locked
    )
    update authhub.webhook_deliveries w set due_at = now()
    from waiting
    where w.tenant_id = waiting.tenant_id and w.endpoint_id = waiting.endpoint_id and w.svix_id = waiting.svix_id;
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
  set attempts = w.attempts + 1,
      state = case when outcome like 'failed%' then 'failed' else outcome end,
      waiting_for = null,
      last_error = case when outcome like 'failed%' then substr(outcome, 9) end,
      processed_at = clock_timestamp()
  where w.tenant_id = d.tenant_id and w.endpoint_id = d.endpoint_id and w.svix_id = d.svix_id;
  return outcome;
end;
$function$;
