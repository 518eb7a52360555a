--! Previous: sha1:7de0a49ad0f7346cf922e2e7c35d2e88740b99a7
--! Hash: sha1:b4e095b36737bfe6d5d3a96184e42b207312730b
--! Message: rollup sweep: store-days left dirty by a fold that failed or whose job was superseded are folded again within a minute

--! split: 1-current.sql
-- The fold job of a tenant is queued by the writes that mark its days. If that
-- job fails with an ordinary error after a newer write superseded it (the
-- newer job under the same key used up its attempts), or its worker died past
-- the attempts it had, the marked days would wait for the tenant's next write.
-- The sweep, run every minute by the worker, queues the fold again for every
-- tenant with a day marked over a minute ago (the key keeps it to one job).
create or replace function retail_private.sweep_rollups() returns integer
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  n integer;
begin
  -- plpgsql, not sql: graphile_worker's schema is created after the migrations.
  with stale as (
    select distinct d.tenant_id from retail_private.rollup_dirty d where d.marked_at < now() - interval '1 minute'
  )
  select count(*)::integer
  from stale s,
       lateral (select graphile_worker.add_job('retail_rollups__fold', json_build_object('tenant_id', s.tenant_id),
                                               job_key := 'retail-rollups:' || s.tenant_id,
                                               job_key_mode := 'preserve_run_at')) j
  into n;
  return n;
end;
$$;
comment on function retail_private.sweep_rollups() is
  'Queues the rollup fold again for every tenant with a store-day marked over a minute ago (a fold that failed or was superseded); run every minute by retail_rollups__sweep.';
revoke all on function retail_private.sweep_rollups() from public;
grant execute on function retail_private.sweep_rollups() to authhub_worker;
