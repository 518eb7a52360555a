--! Previous: sha1:f4ed7bad69963188822f8f443b81846c03d2fe89
--! Hash: sha1:526a0d8185ff52882d64e72f270b2ef4cd886a6c
--! Message: the sync's validation helpers inline: no search_path of their own on five immutable invoker helpers

--! split: 1-current.sql
-- retail_private.is_text, is_int, matches, is_instant and problem are immutable,
-- invoker SQL functions over built-ins only. A SET clause (search_path) keeps
-- PostgreSQL from inlining a SQL function, so every call into them was a full
-- function call: parse and validate of a 500-order sync batch took 141 ms with
-- the clause and 47 ms without it (bench/README.md, the retail section). They
-- gain no privilege (invoker), name only pg_catalog objects, which are searched
-- first whatever the caller's search_path says, and their callers are the
-- definer functions of the sync, which pin search_path themselves.
alter function retail_private.is_text(jsonb, integer) reset all;
alter function retail_private.is_int(jsonb, numeric, numeric) reset all;
alter function retail_private.matches(jsonb, text) reset all;
alter function retail_private.is_instant(jsonb) reset all;
alter function retail_private.problem(text, text) reset all;
comment on function retail_private.problem(text, text) is
  'A validation problem ({field, message}) for a refused field. No SET clause (migration 000020), though it stays a call: jsonb_build_object is only stable.';
