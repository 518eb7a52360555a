--! Previous: sha1:d3a89331ad88dc10cfe830831b708cc767663999
--! Hash: sha1:4cec9d94f77f6cef9f9abc7532a21f6d3578aa10
--! Message: audit: one jsonb per row, key changes kept, deleted organizations' history

--! split: 400-audit-trigger.sql
-- The generic audit trigger, revised (issue 4).
--  * Each row is turned into jsonb once: the subqueries are fenced (OFFSET 0) so
--    the planner cannot flatten them and re-evaluate to_jsonb() for every
--    reference (tenant, key, organization, values): five calls per row before,
--    measured as most of a 100-row statement's audit cost.
--  * Updates pair old and new rows by primary key with a FULL join: a statement
--    that changes a key still records every row (as an UPDATE with the side it
--    could not pair), where an inner join dropped it silently.
--  * A table with no tenant column (enrolled with tenant column ''; the signing
--    keys) records its events under the all-zero tenant, like TRUNCATE: global
--    events, which super admins read.
-- Same arguments as before (tenant column, organization column, secret columns,
-- key columns), so enrolled tables keep their triggers.
create or replace function authhub_private.tg__audit() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  tenant_column text := nullif(tg_argv[0], '');
  global_tenant constant uuid := '00000000-0000-0000-0000-000000000000';
  organization_column text := nullif(tg_argv[1], '');
  secrets text[] := coalesce(string_to_array(nullif(tg_argv[2], ''), ','), '{}');
  key_columns text[] := tg_argv[3:];
  actor text := authhub_private.current_actor();
  actor_user uuid := authhub.current_user_id();
  trace text := authhub.current_trace_id();
begin
  if tg_op = 'TRUNCATE' then
    insert into authhub.audit_events (tenant_id, table_name, operation, actor, actor_user_id, trace_id)
    values (global_tenant, tg_table_name, 'TRUNCATE', actor, actor_user, trace);
    return null;
  end if;
  if tg_op = 'INSERT' then
    insert into authhub.audit_events (tenant_id, table_name, operation, row_key, organization_id, new, actor, actor_user_id, trace_id)
    select coalesce((r ->> tenant_column)::uuid, global_tenant), tg_table_name, 'INSERT',
           case cardinality(key_columns)
             when 1 then jsonb_build_object(key_columns[1], r -> key_columns[1])
             when 2 then jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2])
             when 3 then jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2], key_columns[3], r -> key_columns[3])
             else jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2], key_columns[3], r -> key_columns[3], key_columns[4], r -> key_columns[4])
           end,
           (r ->> organization_column)::uuid,
           r - secrets, actor, actor_user, trace
    from (select to_jsonb(n) as r from new_rows n offset 0) x;
  elsif tg_op = 'DELETE' then
    insert into authhub.audit_events (tenant_id, table_name, operation, row_key, organization_id, old, actor, actor_user_id, trace_id)
    select coalesce((r ->> tenant_column)::uuid, global_tenant), tg_table_name, 'DELETE',
           case cardinality(key_columns)
             when 1 then jsonb_build_object(key_columns[1], r -> key_columns[1])
             when 2 then jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2])
             when 3 then jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2], key_columns[3], r -> key_columns[3])
             else jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2], key_columns[3], r -> key_columns[3], key_columns[4], r -> key_columns[4])
           end,
           (r ->> organization_column)::uuid,
           r - secrets, actor, actor_user, trace
    from (select to_jsonb(o) as r from old_rows o offset 0) x;
  else
    insert into authhub.audit_events (tenant_id, table_name, operation, row_key, organization_id, old, new, changed_columns, actor, actor_user_id, trace_id)
    select coalesce((coalesce(n.r, o.r) ->> tenant_column)::uuid, global_tenant), tg_table_name, 'UPDATE', coalesce(n.k, o.k),
           (coalesce(n.r, o.r) ->> organization_column)::uuid,
           o.r - secrets, n.r - secrets,
           array(select c from (select jsonb_object_keys(n.r) union select jsonb_object_keys(o.r)) keys (c)
                 where n.r -> c is distinct from o.r -> c order by c),
           actor, actor_user, trace
    from (select r, case cardinality(key_columns)
                    when 1 then jsonb_build_object(key_columns[1], r -> key_columns[1])
                    when 2 then jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2])
                    when 3 then jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2], key_columns[3], r -> key_columns[3])
                    else jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2], key_columns[3], r -> key_columns[3], key_columns[4], r -> key_columns[4])
                  end as k
          from (select to_jsonb(x) as r from new_rows x offset 0) y) n
    full join
         (select r, case cardinality(key_columns)
                    when 1 then jsonb_build_object(key_columns[1], r -> key_columns[1])
                    when 2 then jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2])
                    when 3 then jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2], key_columns[3], r -> key_columns[3])
                    else jsonb_build_object(key_columns[1], r -> key_columns[1], key_columns[2], r -> key_columns[2], key_columns[3], r -> key_columns[3], key_columns[4], r -> key_columns[4])
                  end as k
          from (select to_jsonb(x) as r from old_rows x offset 0) y) o
      on o.k = n.k;
  end if;
  return null;
end;
$$;

--! split: 410-audit-organization-history.sql
-- Org-scoped audit readers keep the history of organizations deleted from their
-- subtree (issue 4). audit:read held in an organization reaches the events of
-- that organization and everything below it; once a descendant is deleted it is
-- no longer "below" anything, and its whole history (the deletion included)
-- would vanish from the view of the very admins who should see who removed it.
-- A tombstone remembers where each deleted organization hung, and the audit
-- read policy walks live organizations and tombstones alike. Visibility follows
-- the current hierarchy otherwise: an organization moved elsewhere (a tenant
-- admin's act) takes its history with it.
create table authhub_private.organization_tombstones (
  tenant_id  uuid not null,
  id         uuid not null,
  -- Where it hung when deleted (null: a top-level organization).
  parent_id  uuid,
  deleted_at timestamptz not null default now(),
  primary key (tenant_id, id)
);
create index organization_tombstones_parent on authhub_private.organization_tombstones (tenant_id, parent_id);
alter table authhub_private.organization_tombstones enable row level security;
alter table authhub_private.organization_tombstones force row level security;
create policy all_owner on authhub_private.organization_tombstones for all to authhub_owner using (true) with check (true);
comment on table authhub_private.organization_tombstones is 'Where each deleted organization hung: keeps its audit history in its former subtree.';

create function authhub_private.tg_organizations__tombstone() returns trigger
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  insert into authhub_private.organization_tombstones (tenant_id, id, parent_id)
  select o.tenant_id, o.id, o.parent_id from old_rows o
  -- Not for a tenant being deleted as a whole: nobody reads its history by organization.
  where exists (select 1 from authhub.tenants t where t.id = o.tenant_id)
  on conflict (tenant_id, id) do update set parent_id = excluded.parent_id, deleted_at = excluded.deleted_at;
  return null;
end;
$$;
create trigger _900_tombstone after delete on authhub.organizations
  referencing old table as old_rows
  for each statement execute function authhub_private.tg_organizations__tombstone();
alter table authhub.organizations enable always trigger _900_tombstone;

insert into authhub_private.audit_exemptions (table_name, reason) values
  ('authhub_private.organization_tombstones', 'Derived from organization deletions, which are audited themselves.');

-- Organizations whose audit history the caller reads through `permission`:
-- those organizations_with_permission lists, plus the deleted organizations
-- (at any depth) that hung below them.
create function authhub_private.audit_organizations_with_permission(permission text) returns setof uuid
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  with recursive tree (id) as (
    select authhub_private.organizations_with_permission(audit_organizations_with_permission.permission)
    union
    select t.id from authhub_private.organization_tombstones t join tree on t.parent_id = tree.id
    where t.tenant_id = authhub.current_tenant_id()
  )
  select id from tree
$$;
grant execute on function authhub_private.audit_organizations_with_permission(text) to authhub_user;

drop policy select_permitted on authhub.audit_events;
create policy select_permitted on authhub.audit_events for select to authhub_user
  using (
    tenant_id = (select authhub.current_tenant_id())
    and ((select authhub_private.has_tenant_permission('audit:read'))
         or organization_id in (select authhub_private.audit_organizations_with_permission('audit:read')))
  );
