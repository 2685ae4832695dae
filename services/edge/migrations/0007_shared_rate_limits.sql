-- The request limits (per client address, per verified contact, per Stripe customer) shared by
-- every edge replica: one row per key, its window starting at the key's first hit, counted by
-- one atomic upsert per request (queries.sql hit_rate_limit). Unlogged: a limit is flood
-- protection, not accounting; after a database crash (or on a promoted standby) the budgets
-- start afresh, and no write-ahead log is spent on a counter per request. Ended windows are
-- deleted by the replicas about once a minute.
CREATE UNLOGGED TABLE rate_limit_windows (
    key text PRIMARY KEY,
    window_start timestamptz NOT NULL,
    hits integer NOT NULL
);

CREATE INDEX rate_limit_windows_by_start ON rate_limit_windows (window_start);

GRANT SELECT, INSERT, UPDATE, DELETE ON rate_limit_windows TO askvault_edge_service;
