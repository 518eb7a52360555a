--! Previous: sha1:4cec9d94f77f6cef9f9abc7532a21f6d3578aa10
--! Hash: sha1:69ee6f24332b080167ef6a975fe459e29d4d2eb9
--! Message: auth: sessions with rotating refresh tokens, key rotation, rate limits

--! split: 490-external-identity.sql
-- Which identity provider vouches for a user (issue 5). A user's external_id is
-- the provider's id for them; external_issuer names that provider. With one
-- trusted issuer configured it may stay null (the only issuer speaks for every
-- linked user); with several, a user is matched only for the issuer recorded,
-- so one provider can never sign in as another provider's user.
create domain authhub.issuer as text
  constraint issuer_format check (length(value) between 1 and 500 and value !~ '[[:space:][:cntrl:]]');
comment on domain authhub.issuer is 'A token issuer (`iss`), usually the identity provider''s URL.';

alter table authhub.users add column external_issuer authhub.issuer;
comment on column authhub.users.external_issuer is
  'The identity provider (token issuer) that external_id belongs to. Required for sign-in when several issuers are trusted.';
-- As external_id: user:write holders set it on users they create; changing it
-- on an existing user re-points an identity, which only a tenant admin does.
grant insert (external_issuer), update (external_issuer) on authhub.users to authhub_user;

create function authhub_private.user_issuer_unchanged(tenant_id uuid, id uuid, external_issuer text) returns boolean
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select exists (
    select 1 from authhub.users u
    where u.tenant_id = user_issuer_unchanged.tenant_id and u.id = user_issuer_unchanged.id
      and u.tenant_id = authhub.current_tenant_id()
      and u.external_issuer::text is not distinct from user_issuer_unchanged.external_issuer
  )
$$;
grant execute on function authhub_private.user_issuer_unchanged(uuid, uuid, text) to authhub_user;
create policy update_issuer_guard on authhub.users as restrictive for update to authhub_user
  using (true)
  with check ((select authhub_private.is_tenant_admin()) or authhub_private.user_issuer_unchanged(tenant_id, id, external_issuer));

-- Whether a trusted issuer speaks for this user: the user's recorded issuer, or,
-- when none is recorded, whichever issuer is trusted if it is the only one.
create function authhub_private.issuer_speaks_for(user_issuer text, issuer text, trusted_issuers text[]) returns boolean
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$
  select issuer = any(trusted_issuers)
     and (user_issuer = issuer or (user_issuer is null and cardinality(trusted_issuers) = 1))
$$;

-- A trusted issuer's user id → the AuthHub user, for bearer tokens at /graphql
-- (server/auth/verify.ts). Replaces the issuer-blind version.
drop function authhub_private.user_id_for_external_id(uuid, text);
create function authhub_private.user_id_for_external_id(tenant_id uuid, issuer text, external_id text, trusted_issuers text[]) returns uuid
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select u.id
  from authhub.users u
  join authhub.tenants t on t.id = u.tenant_id
  where u.tenant_id = user_id_for_external_id.tenant_id
    and u.external_id = user_id_for_external_id.external_id
    and authhub_private.issuer_speaks_for(u.external_issuer, user_id_for_external_id.issuer, user_id_for_external_id.trusted_issuers)
    and u.status = 'active' and t.status = 'active'
$$;
grant execute on function authhub_private.user_id_for_external_id(uuid, text, text, text[]) to authhub_authenticator;

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
  -- Who vouched for the login (the subject token's issuer) and for whom (its
  -- subject): a refresh holds only while that issuer is trusted and the user
  -- still holds that identity.
  issuer          authhub.issuer not null,
  external_id     authhub.external_id not null,
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
-- A refresh request names only the token: found by hash across tenants (a hash
-- of 32 random bytes; unique anyway, and enforced so).
create unique index refresh_tokens_by_hash on authhub_private.refresh_tokens (token_hash);
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

-- The session functions run as the server's login role, outside any request
-- role; for the audit log they name the request's trace and, where the act is
-- the user's own, the user (as a request of theirs would).
create function authhub_private.act_as(user_id uuid, trace_id text) returns void
  language sql volatile
  set search_path = pg_catalog, pg_temp
as $$
  select set_config('jwt.claims.sub', coalesce(act_as.user_id::text, ''), true),
         set_config('authhub.trace_id', coalesce(act_as.trace_id, ''), true)
$$;

-- Token exchange: the active user with this external id in the tenant named
-- (slug or id), for whom the issuer speaks (authhub_private.issuer_speaks_for),
-- optionally in an organization they belong to (slug or id), gets a new family
-- and its first refresh token. No row when any of that fails, whichever part.
create function authhub_private.start_session(
  tenant text, organization text, external_id text, issuer text, trusted_issuers text[],
  token_hash bytea, token_ttl interval, family_ttl interval, trace_id text
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
  select u.id into u_id from authhub.users u
  where u.tenant_id = t_id and u.external_id::text = start_session.external_id
    and authhub_private.issuer_speaks_for(u.external_issuer, start_session.issuer, start_session.trusted_issuers);
  if start_session.organization is not null then
    select o.id into o_id from authhub.organizations o
    where o.tenant_id = t_id
      and case when start_session.organization ~ is_uuid then o.id = start_session.organization::uuid else o.slug::text = start_session.organization end;
    if o_id is null then
      return;
    end if;
  end if;
  lvl := authhub_private.token_level(t_id, u_id, o_id);
  if lvl is null then
    return;
  end if;
  -- The login is the user's own act: the audit log names them and the request.
  perform authhub_private.act_as(u_id, start_session.trace_id);
  insert into authhub_private.refresh_families (tenant_id, user_id, organization_id, issuer, external_id, expires_at)
  values (t_id, u_id, o_id, start_session.issuer, start_session.external_id, now() + family_ttl)
  returning id into f_id;
  insert into authhub_private.refresh_tokens (tenant_id, token_hash, family_id, expires_at)
  values (t_id, start_session.token_hash, f_id, least(now() + token_ttl, now() + family_ttl));
  return query select t_id, u_id, o_id, lvl, f_id, (select k.kid from authhub_private.active_signing_key() k);
end;
$$;

-- The family a refresh token belongs to (for the per-login rate limit, counted
-- before the token is spent), or nothing.
create function authhub_private.refresh_token_family(token_hash bytea) returns uuid
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select r.family_id from authhub_private.refresh_tokens r where r.token_hash = refresh_token_family.token_hash
$$;

-- Ends a login on the server's own finding (the user changed, a spent token
-- came back): the audit log names the finding as the actor, and the request.
create function authhub_private.end_login(tenant_id uuid, family_id uuid, reason text, actor text, trace_id text) returns void
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  perform authhub_private.act_as(null, end_login.trace_id);
  perform set_config('authhub.actor', end_login.actor, true);
  update authhub_private.refresh_families f set revoked_at = now(), revoked_reason = end_login.reason
  where f.tenant_id = end_login.tenant_id and f.id = end_login.family_id;
end;
$$;

-- Refresh: exchanges a refresh token for its successor. The server derives the
-- successor from the token (so a retry derives the same one) under each master
-- key it holds, current first, and passes their hashes; `successor` answers
-- which one stands (1 for a fresh rotation). Outcomes:
--   rotated   the token was current: the successor is stored and answered;
--   replayed  the token was rotated less than `grace` ago into one of the
--             candidates, which is unused: that successor is answered again;
--   reuse     any other use of a rotated token: the whole family is revoked;
--   inactive  the user, tenant, membership or identity (the external id and
--             issuer the login used) no longer holds: revoked;
--   invalid   unknown, expired or revoked; or an issuer this server does not
--             trust now, or a retry it cannot derive: refused, not revoked.
-- Never raises for these, so a revocation it makes is committed. Locks the
-- family, then the token (the order deletions take, so they cannot deadlock).
create function authhub_private.rotate_refresh_token(
  token_hash bytea, successor_hashes bytea[], trusted_issuers text[], token_ttl interval, grace interval, trace_id text
) returns table (outcome text, successor integer, tenant_id uuid, user_id uuid, organization_id uuid, level authhub.role_level, family_id uuid, signing_kid text)
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  f_tenant uuid;
  f_id uuid;
  tok authhub_private.refresh_tokens;
  fam authhub_private.refresh_families;
  successor_row authhub_private.refresh_tokens;
  lvl authhub.role_level;
  candidate integer;
begin
  select r.tenant_id, r.family_id into f_tenant, f_id from authhub_private.refresh_tokens r
  where r.token_hash = rotate_refresh_token.token_hash;
  -- Concurrent refreshes of one login queue here; the second sees the first's rotation.
  select * into fam from authhub_private.refresh_families f where f.tenant_id = f_tenant and f.id = f_id for update;
  select * into tok from authhub_private.refresh_tokens r where r.token_hash = rotate_refresh_token.token_hash for update;
  if fam.id is null or tok.token_hash is null
     or fam.revoked_at is not null or fam.expires_at <= now() or tok.expires_at <= now() then
    return query select 'invalid', null::integer, null::uuid, null::uuid, null::uuid, null::authhub.role_level, null::uuid, null::text;
    return;
  end if;
  lvl := authhub_private.token_level(fam.tenant_id, fam.user_id, fam.organization_id);
  -- The user, or the identity the login used, changed: the login ends.
  if lvl is null or not exists (
       select 1 from authhub.users u
       where u.tenant_id = fam.tenant_id and u.id = fam.user_id and u.external_id::text = fam.external_id
         and (u.external_issuer is null or u.external_issuer::text = fam.issuer)) then
    perform authhub_private.end_login(fam.tenant_id, fam.id, 'inactive', 'system:auth:refresh', rotate_refresh_token.trace_id);
    return query select 'inactive', null::integer, fam.tenant_id, fam.user_id, null::uuid, null::authhub.role_level, fam.id, null::text;
    return;
  end if;
  -- The issuer is not trusted by this server now (configuration): refused, but
  -- the login is not ended for it (a server configured otherwise may serve it).
  if not exists (select 1 from authhub.users u
                 where u.tenant_id = fam.tenant_id and u.id = fam.user_id
                   and authhub_private.issuer_speaks_for(u.external_issuer, fam.issuer, rotate_refresh_token.trusted_issuers)) then
    return query select 'invalid', null::integer, null::uuid, null::uuid, null::uuid, null::authhub.role_level, null::uuid, null::text;
    return;
  end if;
  if tok.rotated_at is not null then
    candidate := array_position(rotate_refresh_token.successor_hashes, tok.successor_hash);
    select * into successor_row from authhub_private.refresh_tokens r
    where r.tenant_id = tok.tenant_id and r.token_hash = tok.successor_hash;
    if tok.rotated_at > now() - grace and candidate is not null
       and successor_row.token_hash is not null and successor_row.rotated_at is null then
      return query select 'replayed', candidate, fam.tenant_id, fam.user_id, fam.organization_id, lvl, fam.id,
                          (select k.kid from authhub_private.active_signing_key() k);
      return;
    end if;
    -- A retry within the grace period whose successor this server cannot derive
    -- (it lacks the master key another server used): refused, not taken for reuse.
    if tok.rotated_at > now() - grace and candidate is null then
      return query select 'invalid', null::integer, null::uuid, null::uuid, null::uuid, null::authhub.role_level, null::uuid, null::text;
      return;
    end if;
    -- Whoever presented it, a spent token came back: the login is compromised.
    perform authhub_private.end_login(fam.tenant_id, fam.id, 'reuse', 'system:auth:reuse-detection', rotate_refresh_token.trace_id);
    return query select 'reuse', null::integer, fam.tenant_id, fam.user_id, null::uuid, null::authhub.role_level, fam.id, null::text;
    return;
  end if;
  update authhub_private.refresh_tokens r set rotated_at = now(), successor_hash = rotate_refresh_token.successor_hashes[1]
  where r.tenant_id = tok.tenant_id and r.token_hash = tok.token_hash;
  insert into authhub_private.refresh_tokens (tenant_id, token_hash, family_id, expires_at)
  values (fam.tenant_id, rotate_refresh_token.successor_hashes[1], fam.id, least(now() + token_ttl, fam.expires_at));
  return query select 'rotated', 1, fam.tenant_id, fam.user_id, fam.organization_id, lvl, fam.id,
                      (select k.kid from authhub_private.active_signing_key() k);
end;
$$;

-- RFC 7009: revokes the family of a refresh token (any of its tokens, rotated
-- or not). True when a live family was revoked; unknown tokens are no error.
create function authhub_private.revoke_refresh_token(token_hash bytea, trace_id text) returns boolean
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  f_tenant uuid;
  f_id uuid;
  f_user uuid;
  revoked integer;
begin
  select r.tenant_id, r.family_id into f_tenant, f_id from authhub_private.refresh_tokens r
  where r.token_hash = revoke_refresh_token.token_hash;
  select f.user_id into f_user from authhub_private.refresh_families f where f.tenant_id = f_tenant and f.id = f_id;
  if f_user is null then
    return false;
  end if;
  -- The holder of a login's token ends it: the audit log names the login's user.
  perform authhub_private.act_as(f_user, revoke_refresh_token.trace_id);
  update authhub_private.refresh_families f set revoked_at = now(), revoked_reason = 'revoked'
  where f.tenant_id = f_tenant and f.id = f_id and f.revoked_at is null;
  get diagnostics revoked = row_count;
  return revoked > 0;
end;
$$;

-- Authority is live for sessions too: a token that names a login (an access
-- token from /auth/token: the server sets `authhub.session_id` to its `sid`)
-- stops working once that login ends (signed out, reuse detected, user gone
-- inactive, expired, deleted), not at the token's expiry. One primary-key
-- probe. Tokens not tied to a login (the CLI's, a trusted issuer's) set none.
-- The Open API migration (000006) wires it into current_user_level, where every
-- authority check starts.
create function authhub_private.session_ended() returns boolean
  language plpgsql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  sid text := nullif(pg_catalog.current_setting('authhub.session_id', true), '');
begin
  if sid is null then
    return false;
  end if;
  return sid !~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' or not exists (
    select 1 from authhub_private.refresh_families f
    where f.tenant_id = authhub.current_tenant_id() and f.id = sid::uuid
      and f.revoked_at is null and f.expires_at > now());
end;
$$;

grant execute on function
  authhub_private.active_signing_key(),
  authhub_private.start_session(text, text, text, text, text[], bytea, interval, interval, text),
  authhub_private.refresh_token_family(bytea),
  authhub_private.rotate_refresh_token(bytea, bytea[], text[], interval, interval, text),
  authhub_private.revoke_refresh_token(bytea, text)
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
