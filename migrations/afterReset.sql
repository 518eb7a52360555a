-- Runs as the root role after `graphile-migrate reset` has recreated the database.
-- Roles are cluster-wide and created by db/setup.ts (idempotent); here we only restore
-- what `reset` takes away: reset revokes CONNECT from PUBLIC, so the owner and the
-- authenticator need it back, and nobody else gets it.
grant connect on database :DATABASE_NAME to authhub_owner, authhub_authenticator;
grant all on database :DATABASE_NAME to :DATABASE_OWNER;
