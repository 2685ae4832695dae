-- The role policy runs as (DATABASE_URL's login is a member of it): row access to policy's
-- tables, but only SELECT and INSERT on the audit log, and no DDL anywhere, so that a
-- compromised service cannot drop the append-only triggers or rewrite history.
--
-- The group role is cluster-wide and NOLOGIN: created here when absent (the owner then needs
-- CREATEROLE, or a DBA creates it first, see deploy/README.md), tolerating another database's
-- migration creating it at the same moment. Grants are per database and live here; a later
-- migration that adds a table grants the same to this role (tests/test_service_roles.py
-- checks every table).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'askvault_policy_service') THEN
        BEGIN
            CREATE ROLE askvault_policy_service NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created concurrently by another migration on the same cluster
        END;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA policy TO askvault_policy_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA policy TO askvault_policy_service;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA policy TO askvault_policy_service;
-- The migrations' own bookkeeping is the owner's alone.
REVOKE ALL ON policy.schema_migrations FROM askvault_policy_service;

-- The audit log is append-only for the service: it may add entries and read them, nothing
-- else. The triggers refuse UPDATE, DELETE and TRUNCATE from anyone; without these privileges
-- the service's role could not even try, and it cannot drop the triggers (only the owner can).
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM askvault_policy_service;
