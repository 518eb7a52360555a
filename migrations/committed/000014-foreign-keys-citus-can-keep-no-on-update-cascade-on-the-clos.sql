--! Previous: sha1:afde6d0127c876fe0e7055486a30984d9753664a
--! Hash: sha1:c1fc7a1b9f750bcbbb94da9c6049dde5ea5b194a
--! Message: Foreign keys Citus can keep: no ON UPDATE CASCADE on the closure and stores, no SET NULL on orders' customer

--! split: 1-current.sql
-- Foreign keys Citus can keep (issue 15, db/distribution.ts): with the
-- distribution column in the key, Citus allows neither ON UPDATE CASCADE nor
-- ON DELETE SET NULL. Organization ids never change, so the cascades on update
-- never fired; a customer with orders is tombstoned by its store's sync, not
-- deleted, and deleting one in the hub now answers that its orders still
-- reference it (conflict) instead of unlinking them.
alter table authhub_private.organization_closure
  drop constraint organization_closure_tenant_id_ancestor_id_fkey,
  drop constraint organization_closure_tenant_id_organization_id_fkey,
  add constraint organization_closure_tenant_id_ancestor_id_fkey foreign key (tenant_id, ancestor_id) references authhub.organizations (tenant_id, id) on delete cascade,
  add constraint organization_closure_tenant_id_organization_id_fkey foreign key (tenant_id, organization_id) references authhub.organizations (tenant_id, id) on delete cascade;
alter table retail.stores
  drop constraint stores_organization_fkey,
  add constraint stores_organization_fkey foreign key (tenant_id, id) references authhub.organizations (tenant_id, id) on delete cascade;
alter table retail.orders
  drop constraint orders_customer_fkey,
  add constraint orders_customer_fkey foreign key (tenant_id, store_id, customer_id) references retail.customers (tenant_id, store_id, id);
