-- The time zone whose midnights start a workspace's counter periods (IANA name). Existing
-- workspaces keep counting in UTC, as they did.
ALTER TABLE bounds ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC';
