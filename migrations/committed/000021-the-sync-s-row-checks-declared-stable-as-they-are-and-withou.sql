--! Previous: sha1:526a0d8185ff52882d64e72f270b2ef4cd886a6c
--! Hash: sha1:c04f6b2824ca36c82127e4e308b9776e3b82d2eb
--! Message: the sync's row checks declared stable, as they are, and without a SET clause of their own

--! split: 1-current.sql
-- problem() was declared immutable though jsonb_build_object is only stable, which
-- kept PostgreSQL from inlining it; envelope_problems, customer_problems,
-- inventory_problems, order_problems and product_problems were declared immutable
-- though order_problems and product_problems read retail.currencies (a table:
-- stable at most; an immutable call with constant arguments may be folded into a
-- cached plan and miss a change of the table). The five also carried SET
-- search_path, which makes every call save and restore settings; they run once
-- per synced row. (They still are not inlined: their bodies hold sub-selects.)
-- All six are invoker SQL functions over built-ins and schema-qualified names;
-- their one caller, retail_private.sync_parse, pins search_path itself.
alter function retail_private.problem(text, text) stable;
alter function retail_private.envelope_problems(jsonb, text, text) stable reset all;
alter function retail_private.customer_problems(jsonb) stable reset all;
alter function retail_private.inventory_problems(jsonb) stable reset all;
alter function retail_private.order_problems(jsonb) stable reset all;
alter function retail_private.product_problems(jsonb) stable reset all;
comment on function retail_private.problem(text, text) is
  'A validation problem ({field, message}) for a refused field; stable like jsonb_build_object and without a SET clause, so it is inlined where it is called (migration 000021).';
