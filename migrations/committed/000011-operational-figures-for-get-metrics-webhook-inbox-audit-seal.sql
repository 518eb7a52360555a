--! Previous: sha1:eb63c01ce57cce491196d4aef016bf47fc368fb1
--! Hash: sha1:218cf6c4f3697df3379850e7bde202aa3b3b316e
--! Message: Operational figures for GET /metrics (webhook inbox, audit sealing, job queue)

--! split: 1-current.sql
-- Operational figures for GET /metrics (issue 15), read at each scrape by the
-- server's login role: the webhook inbox's depth, its oldest pending delivery and
-- how late the drains run; how far audit sealing lags; graphile-worker's queue.
-- Cross-tenant counts only, never a row: /metrics is an operator's endpoint
-- (a token, or a loopback port). Definer: it reads past RLS and the worker schema.
drop function if exists authhub_private.operational_metrics();
-- graphile-worker's schema is installed after the migrations (db/migrate.ts), so a new
-- database has no graphile_worker.jobs yet when this runs: the body is checked at first use.
set local check_function_bodies = off;
create function authhub_private.operational_metrics()
  returns table (
    inbox_pending bigint,
    inbox_oldest_pending_seconds double precision,
    inbox_drain_lag_seconds double precision,
    inbox_failed bigint,
    audit_unsealed_events bigint,
    audit_seal_lag_seconds double precision,
    jobs_queued bigint,
    jobs_due bigint,
    jobs_locked bigint,
    jobs_failed_permanently bigint
  )
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select
    (select count(*) from authhub.webhook_deliveries d where d.state = 'pending'),
    coalesce((select extract(epoch from now() - min(d.received_at)) from authhub.webhook_deliveries d where d.state = 'pending'), 0),
    coalesce((select extract(epoch from now() - min(d.due_at)) from authhub.webhook_deliveries d where d.state = 'pending' and d.due_at <= now()), 0),
    (select count(*) from authhub.webhook_deliveries d where d.state = 'failed'),
    unsealed.n,
    unsealed.lag,
    (select count(*) from graphile_worker.jobs j),
    (select count(*) from graphile_worker.jobs j where j.run_at <= now() and j.locked_at is null and j.attempts < j.max_attempts),
    (select count(*) from graphile_worker.jobs j where j.locked_at is not null),
    (select count(*) from graphile_worker.jobs j where j.attempts >= j.max_attempts)
  from (
    -- Events not yet sealed: past their tenant's last seal. Read through the BRIN index on
    -- transaction_id from the least advanced tenant's seal on, so a scrape reads the log's
    -- tail, not the log (a tenant never sealed yet is counted from there too).
    select count(*) as n, coalesce(extract(epoch from now() - min(e.occurred_at)), 0) as lag
    from authhub.audit_events e
    where e.transaction_id >= (select coalesce(min(t.upto), 0)
                               from (select max(s.to_transaction) as upto from authhub_private.audit_seals s group by s.tenant_id) t)
      and e.transaction_id >= coalesce((select max(s.to_transaction) from authhub_private.audit_seals s where s.tenant_id = e.tenant_id), 0)
  ) unsealed
$$;
comment on function authhub_private.operational_metrics() is
  'Counts and lags for GET /metrics: webhook inbox, audit sealing, job queue. No row of any tenant.';
grant execute on function authhub_private.operational_metrics() to authhub_authenticator;
