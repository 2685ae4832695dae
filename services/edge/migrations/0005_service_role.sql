-- The role edge runs as (DATABASE_URL's login is a member of it): row access to edge's
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
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'askvault_edge_service') THEN
        BEGIN
            CREATE ROLE askvault_edge_service NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created concurrently by another migration on the same cluster
        END;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA edge TO askvault_edge_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA edge TO askvault_edge_service;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA edge TO askvault_edge_service;
-- The migrations' own bookkeeping is the owner's alone.
REVOKE ALL ON edge.schema_migrations FROM askvault_edge_service;
