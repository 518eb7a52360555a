--! Previous: sha1:325ce42ec9ab01149319c2973e8cda9ccdd1fd3d
--! Hash: sha1:9efcc01756fba976937f0a5a0895cee168006a16
--! Message: identity sync: a burst of deliveries is handed to the running drain

--! split: 700-webhook-drain-handoff.sql
-- Identity sync (issue 7): a burst of deliveries is handed to the drain that
-- is already running, instead of every delivery updating the endpoint's drain
-- job. Measured before this change, queuing the job (graphile-worker's
-- add_job, its row lock shared by every concurrent delivery, and the wake-up
-- of an idle worker each time) was three quarters of a delivery's cost in the
-- receiver, and drains queued that way overlapped, waited on one another's
-- lock and applied about five deliveries each.
--
-- The hand-off, made safe by two locks per endpoint:
--  * the drain lock: one drain at a time. A drain that finds it taken returns
--    at once instead of holding a worker slot while it waits (the running one
--    will take its deliveries), and leaves a look two seconds on in case the
--    running one fails.
--  * the accept lock: a delivery takes it, shared, once stored, and holds it
--    until it commits. A drain takes it exclusively when it has applied its
--    batch, so it waits for the deliveries in flight to commit, and only then
--    looks for what is left.
-- A delivery that finds the drain lock taken queues nothing: the drain holding
-- it has not yet reached its look (which waits for this delivery to commit),
-- so the look will see it and queue the next drain. With no drain running, a
-- delivery queues one as before. Before its look, a drain also applies what
-- was handed to it while it ran, up to its batch, so a steady stream is applied
-- without a job each. If a worker dies in the middle of a drain, what was
-- handed to it waits for the sweep (a minute), as the drain's own deliveries
-- always did.
--
-- Nothing a delivery waits for while it holds the accept lock may wait for the
-- drain's look, or the two deadlock:
--  * the delivery's insert comes before the lock: a redelivery of an id the
--    drain has just applied waits for the drain's row, and must not hold the
--    lock the drain's look asks for;
--  * a drain touches no job before its look: a job row it updated earlier
--    could be one a delivery in flight waits for. So clerk_apply's wake (a user
--    or organization arriving for memberships that waited) now only marks the
--    memberships due, and the look queues them. clerk_apply also counts a
--    delivery's attempt in the update that records its outcome, one update
--    fewer per delivery.

-- What waits for a user or organization: memberships that came first. An
-- arriving user or organization looks for them in an index of its own (few
-- wait: a drain applies users and organizations before memberships).
-- Through the index of every pending delivery it read the endpoint's whole
-- backlog each time: about 1 ms a delivery at a backlog of 2,000, growing with
-- it. Only a pending delivery waits (now a rule), so the look need not name
-- the state, and the index of every pending delivery, whose statistics say
-- "almost none" between bursts, is never the planner's pick for it.
-- (Locked first: a drain of the previous release must not finish a waiting
-- delivery between the update and the constraint.)
lock table authhub.webhook_deliveries in share row exclusive mode;
update authhub.webhook_deliveries set waiting_for = null where state <> 'pending' and waiting_for is not null;
alter table authhub.webhook_deliveries
  add constraint webhook_deliveries_waiting_pending check (waiting_for is null or state = 'pending');
create index webhook_deliveries_waiting on authhub.webhook_deliveries (tenant_id, endpoint_id)
  where waiting_for is not null;

-- An endpoint's advisory lock keys, named once: 'clerk-drain' (one drain at a
-- time) and 'clerk-accept' (deliveries in flight, shared; a drain's look,
-- exclusive).
create function authhub_private.clerk_endpoint_lock(purpose text, endpoint_id uuid) returns bigint
  language sql immutable parallel safe
as $$
  select pg_catalog.hashtextextended(purpose || ':' || endpoint_id::text, 0)
$$;

-- As before (000007), except that a look later keeps the earliest time asked
-- for: one two seconds on replaces a backoff's hour (that drain's look queues
-- the hour again), where graphile-worker's preserve_run_at would keep the hour.
create or replace function authhub_private.queue_clerk_drain(tenant_id uuid, endpoint_id uuid, run_at timestamptz default null) returns void
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  later boolean := coalesce(queue_clerk_drain.run_at > clock_timestamp(), false);
begin
  if later and exists (select 1 from graphile_worker.jobs j
                       where j.key = 'clerk-later:' || queue_clerk_drain.endpoint_id
                         and j.locked_at is null and j.attempts < j.max_attempts
                         and j.run_at <= queue_clerk_drain.run_at) then
    return;
  end if;
  perform graphile_worker.add_job(
    'clerk_event__apply',
    json_build_object('tenant_id', queue_clerk_drain.tenant_id, 'endpoint_id', queue_clerk_drain.endpoint_id),
    run_at => queue_clerk_drain.run_at,
    max_attempts => 12,
    job_key => case when later then 'clerk-later:' else 'clerk:' end || queue_clerk_drain.endpoint_id,
    job_key_mode => 'replace');
end;
$$;

-- As before (000007), with the hand-off: the accept lock is held from the
-- insert to commit, and a drain is queued only when none is running.
create or replace function authhub_private.store_delivery(endpoint_id uuid, svix_id text, event_type text, entity text, body text)
  returns boolean
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  t_id uuid;
  stored boolean;
  drain_running boolean;
begin
  select e.tenant_id into t_id
  from authhub.webhook_endpoints e join authhub.tenants t on t.id = e.tenant_id
  where e.id = store_delivery.endpoint_id and e.enabled and t.status = 'active';
  if t_id is null then
    raise exception 'No such endpoint.' using errcode = 'AH404';
  end if;
  insert into authhub.webhook_deliveries (tenant_id, endpoint_id, svix_id, event_type, entity, body)
  values (t_id, store_delivery.endpoint_id, store_delivery.svix_id, store_delivery.event_type, store_delivery.entity, store_delivery.body)
  on conflict do nothing
  returning true into stored;
  if stored is null then
    return false;
  end if;
  perform pg_advisory_xact_lock_shared(authhub_private.clerk_endpoint_lock('clerk-accept', store_delivery.endpoint_id));
  -- Is a drain running? The drain lock is tried in a subtransaction that is
  -- then undone, which releases it whatever happens (a session lock could
  -- outlive a cancel between taking and releasing it). A drain that starts in
  -- that instant finds it taken and leaves its deliveries to the job queued
  -- here.
  begin
    drain_running := not pg_try_advisory_xact_lock_shared(authhub_private.clerk_endpoint_lock('clerk-drain', store_delivery.endpoint_id));
    raise sqlstate 'AHPRB';
  exception when sqlstate 'AHPRB' then
    null;
  end;
  -- Running: its look waits for this transaction and will see this delivery.
  if not drain_running then
    perform authhub_private.queue_clerk_drain(t_id, store_delivery.endpoint_id);
  end if;
  return true;
end;
$$;

-- As before (000007), with the hand-off: a drain that finds another running
-- returns at once. One that runs applies what is due, then what became due
-- meanwhile (deliveries handed to it, memberships it woke), until nothing more
-- is or it has taken max_rows; then its look waits for the deliveries in
-- flight and queues what is left. Each row returned says when that delivery's
-- application began.
drop function authhub_private.clerk_drain(uuid, uuid, integer);
create function authhub_private.clerk_drain(tenant_id uuid, endpoint_id uuid, max_rows integer)
  returns table (svix_id text, outcome text, started_at timestamptz)
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  item record;
  claimed integer := 0;
  taken integer;
  next_due timestamptz;
begin
  if not pg_try_advisory_xact_lock(authhub_private.clerk_endpoint_lock('clerk-drain', clerk_drain.endpoint_id)) then
    -- The running drain takes what is due when it ends; should it fail instead, this look comes back.
    perform authhub_private.queue_clerk_drain(clerk_drain.tenant_id, clerk_drain.endpoint_id, clock_timestamp() + interval '2 seconds');
    return;
  end if;
  loop
    taken := 0;
    for item in
      with due as (
        select w.svix_id, w.entity, w.received_at from authhub.webhook_deliveries w
        where w.tenant_id = clerk_drain.tenant_id and w.endpoint_id = clerk_drain.endpoint_id
          -- The clock, not the transaction's start: what arrived meanwhile is due too.
          and w.state = 'pending' and w.due_at <= clock_timestamp()
        order by w.due_at
        limit clerk_drain.max_rows - claimed
        for update skip locked
      )
      select due.svix_id from due
      -- One order for every drain, so two never wait on each other's entities.
      order by case split_part(due.entity, ':', 1) when 'user' then 0 when 'organization' then 1 else 2 end,
               due.entity, due.received_at, due.svix_id
    loop
      taken := taken + 1;
      claimed := claimed + 1;
      svix_id := item.svix_id;
      started_at := clock_timestamp();
      begin
        outcome := authhub_private.clerk_apply(clerk_drain.tenant_id, clerk_drain.endpoint_id, item.svix_id);
      exception when others then
        -- Undone alone. The reason is kept as a code only: the inbox is read by tenant admins.
        update authhub.webhook_deliveries w
        set attempts = w.attempts + 1,
            state = case when w.attempts + 1 >= 12 then 'failed' else 'pending' end,
            waiting_for = case when w.attempts + 1 < 12 then w.waiting_for end,
            processed_at = case when w.attempts + 1 >= 12 then now() end,
            last_error = format('a temporary failure (SQLSTATE %s)%s', sqlstate, case when w.attempts + 1 >= 12 then ', 12 times' else '; tried again later' end),
            -- From the clock: a drain that has run a while must not find it due again.
            due_at = clock_timestamp() + authhub_private.clerk_backoff(w.attempts + 1)
        where w.tenant_id = clerk_drain.tenant_id and w.endpoint_id = clerk_drain.endpoint_id and w.svix_id = item.svix_id
        returning case when w.state = 'failed' then 'failed: a temporary failure, 12 times' else 'retry' end into outcome;
      end;
      return next;
    end loop;
    -- Up to max_rows deliveries: each costs two subtransactions, and a transaction
    -- with many slows every snapshot taken meanwhile (50 measured far cheaper than 500).
    exit when taken = 0 or claimed >= max_rows;
  end loop;
  -- The look: every delivery stored while this drain ran has committed (and
  -- queued no drain of its own); anything due is this drain's to queue.
  perform pg_advisory_xact_lock(authhub_private.clerk_endpoint_lock('clerk-accept', clerk_drain.endpoint_id));
  if claimed >= max_rows then
    perform authhub_private.queue_clerk_drain(clerk_drain.tenant_id, clerk_drain.endpoint_id);
  else
    select min(w.due_at) into next_due from authhub.webhook_deliveries w
    where w.tenant_id = clerk_drain.tenant_id and w.endpoint_id = clerk_drain.endpoint_id and w.state = 'pending';
    if next_due is not null then
      perform authhub_private.queue_clerk_drain(clerk_drain.tenant_id, clerk_drain.endpoint_id, greatest(next_due, clock_timestamp()));
    end if;
  end if;
end;
$$;
grant execute on function authhub_private.clerk_drain(uuid, uuid, integer) to authhub_worker;

-- As before (000007), except that a wake only marks the memberships that waited
-- as due (the drain's look queues them: a drain touches no job before it) and
-- finds them through their own index; a delivery's attempt is counted in the
-- update that records its outcome, which also clears what it waited for.
create or replace function authhub_private.clerk_apply(tenant_id uuid, endpoint_id uuid, svix_id text) returns text
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
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
        outcome := 'failed: ' || sqlerrm;
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
$$;
