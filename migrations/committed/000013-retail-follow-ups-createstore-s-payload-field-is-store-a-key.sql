--! Previous: sha1:cda0f21d766ab56de89262b0beeed2f274d08b77
--! Hash: sha1:afde6d0127c876fe0e7055486a30984d9753664a
--! Message: Retail follow-ups: createStore's payload field is store; a key reads back every row it sent that was rejected

--! split: 1-current.sql
-- Retail follow-ups (issue 16).
-- createStore's payload names its store `store` (PostGraphile's default is `result`).
comment on function retail.create_store(authhub.slug, authhub.display_text, text, text, uuid) is
  E'@resultFieldName store\nCreates a store: an organization (under parentId, e.g. a seller) and its store settings (IANA time zone, ISO 4217 currency).';

-- A store system's key reads back every row it sent that was rejected, including a
-- row naming a store it may not write (kept without a store).
drop policy select_permitted on retail.sync_rejects;
create policy select_permitted on retail.sync_rejects for select to authhub_user using (
  tenant_id = (select authhub.current_tenant_id())
  and ((select authhub_private.has_tenant_permission('retail:read')) or (select authhub_private.has_tenant_permission('sync:write'))
       or store_id in (select authhub_private.organizations_with_permission('retail:read'))
       or store_id in (select authhub_private.organizations_with_permission('sync:write'))
       or api_key_id = (select authhub.current_api_key_id())));
comment on policy select_permitted on retail.sync_rejects is
  'The store''s admins (retail:read) and its system''s key (sync:write) read its rejected rows; a key also every row it sent itself; rows naming no store, tenant-wide holders only.';
