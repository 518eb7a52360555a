--! Previous: sha1:4cec9d94f77f6cef9f9abc7532a21f6d3578aa10
--! Hash: sha1:7e488cca9696d227799ca2c18f38112a74ee2dd0
--! Message: auth: sessions with rotating refresh tokens, key rotation, rate limits

--! split: 500-auth-sessions.sql
-- The Auth API (issue 5): sessions started by token exchange, carried by
-- refresh tokens that rotate on every use, revoked as a family on reuse.
--
-- A family is one login: a user in a tenant (and optionally an organization),
-- from a subject token of a trusted issuer. Its refresh tokens are stored only
-- as SHA-256 hashes. The server reaches these tables through the definer
-- functions below only, as its login role (authhub_authenticator), before any
-- identity exists; the functions answer nothing that tells an unknown user
-- from a suspended one or a tenant the user is not in.

create table authhub_private.refresh_families (
  tenant_id       uuid not null references authhub.tenants (id) on delete cascade,
  id              uuid not null default gen_random_uuid(),
  user_id         uuid not null,
  organization_id uuid,
  -- Who vouched for the login (the subject token's issuer).
  issuer          text not null constraint refresh_families_issuer_length check (length(issuer) between 1 and 500),
  created_at      timestamptz not null default now(),
  -- The family's absolute end: rotation never extends a login past it.
  expires_at      timestamptz not null,
  revoked_at      timestamptz,
  revoked_reason  text constraint refresh_families_revoked_reason check (revoked_reason in ('revoked', 'reuse', 'inactive')),
  primary key (tenant_id, id),
  foreign key (tenant_id, user_id) references authhub.users (tenant_id, id) on delete cascade,
  foreign key (tenant_id, organization_id) references authhub.organizations (tenant_id, id) on delete cascade,
  constraint refresh_families_revocation check ((revoked_at is null) = (revoked_reason is null))
);
create index refresh_families_user on authhub_private.refresh_families (tenant_id, user_id);

create table authhub_private.refresh_tokens (
  tenant_id      uuid not null,
  -- sha256 of the token; the token itself is never stored.
  token_hash     bytea not null constraint refresh_tokens_hash_length check (length(token_hash) = 32),
  family_id      uuid not null,
  created_at     timestamptz not null default now(),
  expires_at     timestamptz not null,
  -- Set when the token is exchanged for its successor (whose hash is kept, so a
  -- retry within the grace period can be answered with the same successor).
  rotated_at     timestamptz,
  successor_hash bytea,
  primary key (tenant_id, token_hash),
  foreign key (tenant_id, family_id) references authhub_private.refresh_families (tenant_id, id) on delete cascade,
  constraint refresh_tokens_rotation check ((rotated_at is null) = (successor_hash is null))
);
-- A refresh request names only the token: found by hash across tenants.
create index refresh_tokens_by_hash on authhub_private.refresh_tokens (token_hash);
create index refresh_tokens_family on authhub_private.refresh_tokens (tenant_id, family_id);

alter table authhub_private.refresh_families enable row level security;
alter table authhub_private.refresh_families force row level security;
alter table authhub_private.refresh_tokens enable row level security;
alter table authhub_private.refresh_tokens force row level security;
create policy all_owner on authhub_private.refresh_families for all to authhub_owner using (true) with check (true);
create policy all_owner on authhub_private.refresh_tokens for all to authhub_owner using (true) with check (true);
comment on table authhub_private.refresh_families is 'Logins: one per token exchange, revoked as a whole.';
comment on table authhub_private.refresh_tokens is 'Refresh tokens (hashes only), rotated on every use.';

-- Logins and revocations are security events: the family table is audited
-- (its organization scopes org-level readers); the rotation of each token is
-- not (churn, and nothing but hashes).
select authhub_private.audit_table('authhub_private.refresh_families', 'tenant_id', 'organization_id');
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('authhub_private.refresh_tokens', 'Rotation churn of hashed tokens; logins and revocations are audited on refresh_families.');

-- The built-in level a token for this user carries (the `roles` claim): the
-- user's level, or ORG_ADMIN for a USER who administers the selected
-- organization (or, with none selected, any organization). Null when the user
-- or tenant is not active, or the user is not a member of the organization.
create function authhub_private.token_level(tenant_id uuid, user_id uuid, organization_id uuid) returns authhub.role_level
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select case
           when u.level <> 'USER' then u.level
           when exists (select 1 from authhub.memberships m
                        where m.tenant_id = u.tenant_id and m.user_id = u.id and m.level = 'ORG_ADMIN'
                          and (token_level.organization_id is null or m.organization_id = token_level.organization_id))
             then 'ORG_ADMIN'::authhub.role_level
           else 'USER'::authhub.role_level
         end
  from authhub.users u
  join authhub.tenants t on t.id = u.tenant_id
  where u.tenant_id = token_level.tenant_id and u.id = token_level.user_id
    and u.status = 'active' and t.status = 'active'
    and (token_level.organization_id is null
         or exists (select 1 from authhub.memberships m
                    where m.tenant_id = u.tenant_id and m.user_id = u.id and m.organization_id = token_level.organization_id))
$$;

-- The key that signs now: its kid and encrypted private part (useless without
-- the master key, which only the server and the CLI hold).
create function authhub_private.active_signing_key() returns table (kid text, private_key_encrypted text)
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select k.kid, k.private_key_encrypted from authhub_private.signing_keys k where k.status = 'active'
$$;

-- Token exchange: the active user with this external id in the tenant named
-- (slug or id), optionally in an organization they belong to (slug or id),
-- gets a new family and its first refresh token. No row when any of that
-- fails, whichever part it was.
create function authhub_private.start_session(
  tenant text, organization text, external_id text, issuer text,
  token_hash bytea, token_ttl interval, family_ttl interval
) returns table (tenant_id uuid, user_id uuid, organization_id uuid, level authhub.role_level, family_id uuid, signing_kid text)
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  t_id uuid;
  u_id uuid;
  o_id uuid;
  lvl authhub.role_level;
  f_id uuid;
  is_uuid constant text := '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
begin
  select t.id into t_id from authhub.tenants t
  where case when start_session.tenant ~ is_uuid then t.id = start_session.tenant::uuid else t.slug::text = start_session.tenant end;
  if t_id is null then return; end if;
  select u.id into u_id from authhub.users u where u.tenant_id = t_id and u.external_id::text = start_session.external_id;
  if u_id is null then return; end if;
  if start_session.organization is not null then
    select o.id into o_id from authhub.organizations o
    where o.tenant_id = t_id
      and case when start_session.organization ~ is_uuid then o.id = start_session.organization::uuid else o.slug::text = start_session.organization end;
    if o_id is null then return; end if;
  end if;
  lvl := authhub_private.token_level(t_id, u_id, o_id);
  if lvl is null then return; end if;
  -- The login is the user's own act: the audit log names them.
  perform set_config('authhub.actor', 'user:' || u_id, true);
  insert into authhub_private.refresh_families (tenant_id, user_id, organization_id, issuer, expires_at)
  values (t_id, u_id, o_id, start_session.issuer, now() + family_ttl)
  returning id into f_id;
  insert into authhub_private.refresh_tokens (tenant_id, token_hash, family_id, expires_at)
  values (t_id, start_session.token_hash, f_id, least(now() + token_ttl, now() + family_ttl));
  return query select t_id, u_id, o_id, lvl, f_id, (select k.kid from authhub_private.signing_keys k where k.status = 'active');
end;
$$;

-- Refresh: exchanges a refresh token for its successor (whose hash the server
-- derives from the token, so a retry derives the same one). Outcomes:
--   rotated   the token was current: the successor is stored and answered;
--   replayed  the token was rotated less than `grace` ago and its successor is
--             unused: the same successor is answered again (a client retry);
--   reuse     any other use of a rotated token: the whole family is revoked;
--   inactive  the user, tenant or membership is no longer active: revoked;
--   invalid   unknown, expired or revoked.
-- Never raises for these, so a revocation it makes is committed.
create function authhub_private.rotate_refresh_token(token_hash bytea, successor_hash bytea, token_ttl interval, grace interval)
  returns table (outcome text, tenant_id uuid, user_id uuid, organization_id uuid, level authhub.role_level, family_id uuid, signing_kid text)
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  tok authhub_private.refresh_tokens;
  fam authhub_private.refresh_families;
  successor authhub_private.refresh_tokens;
  lvl authhub.role_level;
begin
  -- Concurrent refreshes with one token queue here; the second sees the first's rotation.
  select * into tok from authhub_private.refresh_tokens r
  where r.token_hash = rotate_refresh_token.token_hash
  for update;
  if tok.token_hash is null then
    return query select 'invalid', null::uuid, null::uuid, null::uuid, null::authhub.role_level, null::uuid, null::text;
    return;
  end if;
  select * into fam from authhub_private.refresh_families f
  where f.tenant_id = tok.tenant_id and f.id = tok.family_id
  for update;
  if fam.revoked_at is not null or fam.expires_at <= now() or tok.expires_at <= now() then
    return query select 'invalid', null::uuid, null::uuid, null::uuid, null::authhub.role_level, null::uuid, null::text;
    return;
  end if;
  lvl := authhub_private.token_level(fam.tenant_id, fam.user_id, fam.organization_id);
  if lvl is null then
    perform set_config('authhub.actor', 'system:auth:refresh', true);
    update authhub_private.refresh_families f set revoked_at = now(), revoked_reason = 'inactive'
    where f.tenant_id = fam.tenant_id and f.id = fam.id;
    return query select 'inactive', fam.tenant_id, fam.user_id, null::uuid, null::authhub.role_level, fam.id, null::text;
    return;
  end if;
  if tok.rotated_at is not null then
    select * into successor from authhub_private.refresh_tokens r
    where r.tenant_id = tok.tenant_id and r.token_hash = tok.successor_hash;
    if tok.rotated_at > now() - grace and tok.successor_hash = rotate_refresh_token.successor_hash
       and successor.token_hash is not null and successor.rotated_at is null then
      return query select 'replayed', fam.tenant_id, fam.user_id, fam.organization_id, lvl, fam.id,
                          (select k.kid from authhub_private.signing_keys k where k.status = 'active');
      return;
    end if;
    -- Whoever presented it, a rotated token came back: the login is compromised.
    perform set_config('authhub.actor', 'system:auth:reuse-detection', true);
    update authhub_private.refresh_families f set revoked_at = now(), revoked_reason = 'reuse'
    where f.tenant_id = fam.tenant_id and f.id = fam.id;
    return query select 'reuse', fam.tenant_id, fam.user_id, null::uuid, null::authhub.role_level, fam.id, null::text;
    return;
  end if;
  update authhub_private.refresh_tokens r set rotated_at = now(), successor_hash = rotate_refresh_token.successor_hash
  where r.tenant_id = tok.tenant_id and r.token_hash = tok.token_hash;
  insert into authhub_private.refresh_tokens (tenant_id, token_hash, family_id, expires_at)
  values (fam.tenant_id, rotate_refresh_token.successor_hash, fam.id, least(now() + token_ttl, fam.expires_at));
  return query select 'rotated', fam.tenant_id, fam.user_id, fam.organization_id, lvl, fam.id,
                      (select k.kid from authhub_private.signing_keys k where k.status = 'active');
end;
$$;

-- RFC 7009: revokes the family of a refresh token (any of its tokens, rotated
-- or not). True when a live family was revoked; unknown tokens are no error.
create function authhub_private.revoke_refresh_token(token_hash bytea) returns boolean
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  tok authhub_private.refresh_tokens;
  revoked integer;
begin
  select * into tok from authhub_private.refresh_tokens r where r.token_hash = revoke_refresh_token.token_hash;
  if tok.token_hash is null then return false; end if;
  -- The holder of a login's token ends it: the audit log names the login's user.
  perform set_config('authhub.actor', 'user:' || f.user_id, true)
  from authhub_private.refresh_families f where f.tenant_id = tok.tenant_id and f.id = tok.family_id;
  update authhub_private.refresh_families f set revoked_at = now(), revoked_reason = 'revoked'
  where f.tenant_id = tok.tenant_id and f.id = tok.family_id and f.revoked_at is null;
  get diagnostics revoked = row_count;
  return revoked > 0;
end;
$$;

grant execute on function
  authhub_private.active_signing_key(),
  authhub_private.start_session(text, text, text, text, bytea, interval, interval),
  authhub_private.rotate_refresh_token(bytea, bytea, interval, interval),
  authhub_private.revoke_refresh_token(bytea)
to authhub_authenticator;

-- Ended logins (expired, or revoked a day ago: long enough to answer a late
-- retry the same way) are deleted by the worker's auth__cleanup job, a batch at
-- a time; their tokens go with them. A deleted family was audited when it began
-- and ended.
create function authhub_private.purge_ended_sessions(max_families integer) returns integer
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  with ended as (
    select f.tenant_id, f.id from authhub_private.refresh_families f
    where f.expires_at < now() - interval '1 day' or f.revoked_at < now() - interval '1 day'
    limit purge_ended_sessions.max_families
  ), gone as (
    delete from authhub_private.refresh_families f using ended
    where f.tenant_id = ended.tenant_id and f.id = ended.id
    returning 1
  )
  select count(*)::integer from gone
$$;
grant execute on function authhub_private.purge_ended_sessions(integer) to authhub_worker;

--! split: 510-signing-key-rotation.sql
-- Signing-key rotation (issue 5). `npx authhub keys rotate` makes a new key
-- pair and calls rotate_signing_key: the active key retires but stays
-- published (JWKS, verification) until every token it signed has expired,
-- then drops out; the new key signs from the same commit on. Owner only (the
-- operator's CLI): nobody else is granted it.
create function authhub_private.rotate_signing_key(kid text, public_jwk jsonb, private_key_encrypted text, publish_for interval)
  returns table (retired_kid text, publish_until timestamptz)
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
as $$
begin
  -- Zero retires the old key at once (a compromised key: its tokens stop verifying).
  if publish_for < interval '0' then
    raise exception 'A retired key''s publication period cannot be negative.' using errcode = 'AH422';
  end if;
  return query
    update authhub_private.signing_keys k
    set status = 'retired', retired_at = now(), publish_until = now() + publish_for
    where k.status = 'active'
    returning k.kid, k.publish_until;
  insert into authhub_private.signing_keys (kid, public_jwk, private_key_encrypted)
  values (rotate_signing_key.kid, rotate_signing_key.public_jwk, rotate_signing_key.private_key_encrypted);
end;
$$;

-- Key changes are audited too, under the all-zero tenant (global events, read
-- by super admins): the trigger takes '' as "no tenant column".
delete from authhub_private.audit_exemptions where table_name = 'authhub_private.signing_keys'::regclass;
insert into authhub_private.audit_secret_columns (table_name, column_name) values ('signing_keys', 'private_key_encrypted');
select authhub_private.audit_table('authhub_private.signing_keys', '', null);

--! split: 520-rate-limits.sql
-- Rate-limit counters (the Auth API's abuse limits, the Open API's per-key
-- limits): rate-limiter-flexible's Postgres store (server/rateLimit.ts), so
-- limits hold across server instances sharing the database. The columns are
-- the library's (key, points consumed, window end in epoch ms), in its order.
-- Unlogged: counters are not worth WAL or a commit flush per request, and a
-- crash that loses them only forgives the current windows.
create unlogged table authhub_private.rate_limits (
  key    varchar(255) primary key,
  points integer not null default 0,
  expire bigint
);
alter table authhub_private.rate_limits enable row level security;
alter table authhub_private.rate_limits force row level security;
create policy all_owner on authhub_private.rate_limits for all to authhub_owner using (true) with check (true);
-- The server counts as its login role, outside any request's transaction: the
-- one table it writes directly. Counters only; nothing here names a user.
create policy counting on authhub_private.rate_limits for all to authhub_authenticator using (true) with check (true);
grant select, insert, update, delete on authhub_private.rate_limits to authhub_authenticator;
insert into authhub_private.audit_exemptions (table_name, reason) values
  ('authhub_private.rate_limits', 'Transient request counters, not data anyone changes.');
