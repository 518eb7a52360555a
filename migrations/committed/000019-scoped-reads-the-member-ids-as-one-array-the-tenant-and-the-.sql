--! Previous: sha1:af63de0fa8a19b1963dffe7e686bafd7dd86c028
--! Hash: sha1:f4ed7bad69963188822f8f443b81846c03d2fe89
--! Message: Scoped reads: the member ids as one array, the tenant and the seeds read once per call

--! split: 1-current.sql
-- Measured with bench/README.md's breakdown and probes on PostgreSQL 18, an org
-- admin's 20-user page over a 300-member subtree:
--
-- 1. The users policy tested each row against users_in_organizations_with_permission(),
--    a definer set-returning SQL function calling another (organizations_with_permission).
--    The member ids now come from one definer function as one array, hashed by the
--    policy through unnest(): the same rows, read live at each statement as before.
-- 2. Inside a helper's query, authhub.current_tenant_id() is inlined but not folded
--    to a constant (the helper's plan is generic), so `m.tenant_id =
--    authhub.current_tenant_id()` read the setting and parsed the uuid once per row
--    scanned; permission_seeds() (not inlinable: its body has a sub-select) parsed
--    the org scope's JSON once per closure row. Both are wrapped in (select …) now:
--    one evaluation per call. Per call, 300 members: ~240 µs before, ~90 µs after.
create or replace function authhub_private.scoped_user_ids(permission text) returns uuid[]
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select coalesce(array_agg(m.user_id), '{}')
  from authhub.memberships m
  where m.tenant_id = (select authhub.current_tenant_id())
    and m.organization_id = any ((
      select array_agg(c.organization_id)
      from authhub_private.organization_closure c
      where c.tenant_id = (select authhub.current_tenant_id())
        and c.ancestor_id = any ((select authhub_private.permission_seeds(scoped_user_ids.permission))::uuid[])
    )::uuid[])
$$;
comment on function authhub_private.scoped_user_ids(text) is
  'The ids of the members of the organizations (subtrees expanded through the closure) where the caller holds the permission, as one array (a user in two of them twice): for policies, as id in (select unnest(…)).';
grant execute on function authhub_private.scoped_user_ids(text) to authhub_user;

alter policy select_permitted on authhub.users using (
  tenant_id = (select authhub.current_tenant_id())
  and ((select authhub_private.has_tenant_permission('user:read'))
       or id in (select pg_catalog.unnest(authhub_private.scoped_user_ids('user:read'))))
);

drop function if exists authhub_private.users_in_organizations_with_permission(text);

create or replace function authhub_private.organizations_with_permission(permission text) returns setof uuid
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select c.organization_id from authhub_private.organization_closure c
  where c.tenant_id = (select authhub.current_tenant_id())
    and c.ancestor_id = any ((select authhub_private.permission_seeds(organizations_with_permission.permission))::uuid[])
$$;
