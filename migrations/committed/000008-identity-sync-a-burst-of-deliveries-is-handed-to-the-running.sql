--! Previous: sha1:325ce42ec9ab01149319c2973e8cda9ccdd1fd3d
--! Hash: sha1:b6cf25361db570281e744a66aded964c3dd663d6
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
--  * the accept lock: every delivery holds it, shared, until it commits. A
--    drain takes it exclusively when it has applied its batch, so it waits for
--    the deliveries in flight to commit, and only then looks for what is left.
-- A delivery that finds the drain lock taken queues nothing: the drain holding
-- it has not yet reached its look (which waits for this delivery to commit),
-- so the look will see it and queue the next drain. With no drain running, a
-- delivery queues one as before.
--
-- A drain touches no job before its look: a job row it updated earlier could
-- be one a delivery in flight waits for, while the drain waits for that
-- delivery. So a wake (a user or organization arriving for memberships that
-- waited) inside a drain only marks the memberships due; the look queues.

-- An endpoint's advisory lock keys, named once: 'clerk-drain' (one drain at a
-- time) and 'clerk-accept' (deliveries in flight, shared; a drain's look,
-- exclusive).
create function authhub_private.clerk_endpoint_lock(purpose text, endpoint_id uuid) returns bigint
  language sql immutable parallel safe
as $$
  select pg_catalog.hashtextextended(purpose || ':' || endpoint_id::text, 0)
$$;

-- As before (000007), except inside this endpoint's own drain, whose look
-- queues what is left once the deliveries in flight have committed.
create or replace function authhub_private.queue_clerk_drain(tenant_id uuid, endpoint_id uuid, run_at timestamptz default null) returns void
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  later boolean := coalesce(queue_clerk_drain.run_at > clock_timestamp(), false);
begin
  if current_setting('authhub.clerk_draining', true) = queue_clerk_drain.endpoint_id::text then
    return;
  end if;
  perform graphile_worker.add_job(
    'clerk_event__apply',
    json_build_object('tenant_id', queue_clerk_drain.tenant_id, 'endpoint_id', queue_clerk_drain.endpoint_id),
    run_at => queue_clerk_drain.run_at,
    max_attempts => 12,
    -- Later (a retry): its own key, keeping the time first asked for; now: the drain's.
    job_key => case when later then 'clerk-later:' else 'clerk:' end || queue_clerk_drain.endpoint_id,
    job_key_mode => case when later then 'preserve_run_at' else 'replace' end);
end;
$$;

-- As before (000007), with the hand-off: the accept lock is held to commit,
-- and a drain is queued only when none is running.
create or replace function authhub_private.store_delivery(endpoint_id uuid, svix_id text, event_type text, entity text, body text)
  returns boolean
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  t_id uuid;
  stored boolean;
  drain_lock bigint := authhub_private.clerk_endpoint_lock('clerk-drain', store_delivery.endpoint_id);
begin
  select e.tenant_id into t_id
  from authhub.webhook_endpoints e join authhub.tenants t on t.id = e.tenant_id
  where e.id = store_delivery.endpoint_id and e.enabled and t.status = 'active';
  if t_id is null then
    raise exception 'No such endpoint.' using errcode = 'AH404';
  end if;
  perform pg_advisory_xact_lock_shared(authhub_private.clerk_endpoint_lock('clerk-accept', store_delivery.endpoint_id));
  insert into authhub.webhook_deliveries (tenant_id, endpoint_id, svix_id, event_type, entity, body)
  values (t_id, store_delivery.endpoint_id, store_delivery.svix_id, store_delivery.event_type, store_delivery.entity, store_delivery.body)
  on conflict do nothing
  returning true into stored;
  if stored is null then
    return false;
  end if;
  -- A drain running now will see this delivery (its look waits for this
  -- transaction). Free: none is running, so one is queued. The probe holds the
  -- lock for an instant only; a drain that starts in that instant and finds
  -- the lock taken leaves its deliveries to the job queued here.
  if pg_try_advisory_lock_shared(drain_lock) then
    perform pg_advisory_unlock_shared(drain_lock);
    perform authhub_private.queue_clerk_drain(t_id, store_delivery.endpoint_id);
  end if;
  return true;
end;
$$;

-- As before (000007), with the hand-off: a drain that finds another running
-- returns at once; one that runs applies its batch, waits for the deliveries
-- in flight, and then queues what is left.
create or replace function authhub_private.clerk_drain(tenant_id uuid, endpoint_id uuid, max_rows integer)
  returns table (svix_id text, outcome text)
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  item record;
  claimed integer := 0;
  next_due timestamptz;
begin
  if not pg_try_advisory_xact_lock(authhub_private.clerk_endpoint_lock('clerk-drain', clerk_drain.endpoint_id)) then
    -- The running drain takes what is due when it ends; should it fail instead, this look comes back.
    perform authhub_private.queue_clerk_drain(clerk_drain.tenant_id, clerk_drain.endpoint_id, clock_timestamp() + interval '2 seconds');
    return;
  end if;
  perform set_config('authhub.clerk_draining', clerk_drain.endpoint_id::text, true);
  for item in
    with due as (
      select w.svix_id, w.entity, w.received_at from authhub.webhook_deliveries w
      where w.tenant_id = clerk_drain.tenant_id and w.endpoint_id = clerk_drain.endpoint_id
        and w.state = 'pending' and w.due_at <= clock_timestamp()
      order by w.due_at
      limit clerk_drain.max_rows
      for update skip locked
    )
    select due.svix_id from due
    -- One order for every drain, so two never wait on each other's entities.
    order by case split_part(due.entity, ':', 1) when 'user' then 0 when 'organization' then 1 else 2 end,
             due.entity, due.received_at, due.svix_id
  loop
    claimed := claimed + 1;
    svix_id := item.svix_id;
    begin
      outcome := authhub_private.clerk_apply(clerk_drain.tenant_id, clerk_drain.endpoint_id, item.svix_id);
    exception when others then
      -- Undone alone. The reason is kept as a code only: the inbox is read by tenant admins.
      update authhub.webhook_deliveries w
      set attempts = w.attempts + 1,
          state = case when w.attempts + 1 >= 12 then 'failed' else 'pending' end,
          processed_at = case when w.attempts + 1 >= 12 then now() end,
          last_error = format('a temporary failure (SQLSTATE %s)%s', sqlstate, case when w.attempts + 1 >= 12 then ', 12 times' else '; tried again later' end),
          due_at = now() + authhub_private.clerk_backoff(w.attempts + 1)
      where w.tenant_id = clerk_drain.tenant_id and w.endpoint_id = clerk_drain.endpoint_id and w.svix_id = item.svix_id;
      outcome := case when (select w.state from authhub.webhook_deliveries w
                            where w.tenant_id = clerk_drain.tenant_id and w.endpoint_id = clerk_drain.endpoint_id
                              and w.svix_id = item.svix_id) = 'failed'
                      then 'failed: a temporary failure, 12 times' else 'retry' end;
    end;
    return next;
  end loop;
  -- The look: every delivery stored while this drain ran has committed (and
  -- queued no drain of its own); anything due is this drain's to queue.
  perform pg_advisory_xact_lock(authhub_private.clerk_endpoint_lock('clerk-accept', clerk_drain.endpoint_id));
  perform set_config('authhub.clerk_draining', '', true);
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
