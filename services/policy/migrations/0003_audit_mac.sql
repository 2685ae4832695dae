-- The audit chain is keyed: new entries are linked with HMAC-SHA256 under one of policy's
-- audit MAC keys (AUDIT_MAC_KEYS, never in the database), and each names its key here.
-- Entries written before carry '' and keep their plain SHA-256 hashes, which still verify.
-- Adding a column with a constant default rewrites no stored row, so the append-only
-- triggers are not involved.
ALTER TABLE audit_events ADD COLUMN key_id text NOT NULL DEFAULT '';
