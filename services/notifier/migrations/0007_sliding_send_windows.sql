-- The contact's and the workspace's send limits as sliding windows: a send counts against
-- the sends of the last hour, not of the clock hour, so a burst across an hour boundary
-- cannot pass twice the limit. One row per (workspace, scope): the sends of each of the last
-- 61 minutes in a ring (slot = minute since the epoch mod 61; head_minute is the newest
-- minute written). A send is one upsert that locks the row (concurrent sends queue behind it
-- and cannot jointly pass the limit); counting 61 minutes, not 60, errs on the side of the
-- customer: no 60-minute span ever holds more than the limit.
--
-- send_counters (the clock-hour buckets) is no longer written; it stays until every replica
-- runs this version (a rolling deploy's older replicas still count in it) and the
-- housekeeping empties it within two hours.
CREATE TABLE send_windows (
    workspace_id text NOT NULL,
    scope text NOT NULL,
    head_minute bigint NOT NULL,
    counts integer[] NOT NULL CHECK (cardinality(counts) = 61),
    PRIMARY KEY (workspace_id, scope)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON send_windows TO askvault_notifier_service;
