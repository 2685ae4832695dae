-- The role notifier runs as (DATABASE_URL's login is a member of it): row access to notifier's
-- tables and sequences, and no DDL, so that the schema only changes through migrations run by
-- the owner (MIGRATION_DATABASE_URL).
--
-- The group role is cluster-wide and NOLOGIN: created here when absent (the owner then needs
-- CREATEROLE, or a DBA creates it first, see deploy/README.md), tolerating another database's
-- migration creating it at the same moment. Grants are per database and live here; a later
-- migration that adds a table grants the same to this role (tests/test_service_roles.py
-- checks every table).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'askvault_notifier_service') THEN
        BEGIN
            CREATE ROLE askvault_notifier_service NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created concurrently by another migration on the same cluster
        END;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA notifier TO askvault_notifier_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA notifier TO askvault_notifier_service;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA notifier TO askvault_notifier_service;
-- The migrations' own bookkeeping is the owner's alone.
REVOKE ALL ON notifier.schema_migrations FROM askvault_notifier_service;
