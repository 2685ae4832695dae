-- name: lock_mirrored
SELECT version_time, data, deleted FROM stripe_objects
WHERE workspace_id = $1 AND object_type = $2 AND object_id = $3
FOR UPDATE;

-- name: store_mirrored
INSERT INTO stripe_objects (workspace_id, object_type, object_id, customer_id, created, status,
                            data, version_time, version_source, deleted, confirmed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::bigint, $9, $10, to_timestamp($8::bigint))
ON CONFLICT (workspace_id, object_type, object_id) DO UPDATE
SET customer_id = EXCLUDED.customer_id, created = EXCLUDED.created, status = EXCLUDED.status,
    data = EXCLUDED.data, version_time = EXCLUDED.version_time,
    version_source = EXCLUDED.version_source, deleted = EXCLUDED.deleted,
    confirmed_at = EXCLUDED.confirmed_at;

-- name: confirm_mirrored
UPDATE stripe_objects
SET confirmed_at = greatest(confirmed_at, to_timestamp($4::bigint))
WHERE workspace_id = $1 AND object_type = $2 AND object_id = $3;

-- name: get_mirrored
SELECT * FROM stripe_objects WHERE workspace_id = $1 AND object_type = $2 AND object_id = $3;

-- name: mirrored_of_customer
-- A customer's objects of one type, newest first, within a created range and status.
SELECT * FROM stripe_objects
WHERE workspace_id = $1 AND object_type = $2 AND customer_id = $3 AND NOT deleted
  AND ($4::bigint IS NULL OR created >= $4) AND ($5::bigint IS NULL OR created < $5)
  AND ($6 = '' OR status = $6)
  AND ($7::bigint IS NULL OR (created, object_id) < ($7, $8))
ORDER BY created DESC, object_id DESC
LIMIT $9;

-- name: customer_and_objects
-- get_mirrored of the customer ($2; deleted or not) and mirrored_of_customer of its objects of
-- one type ($3; not deleted, newest first, at most $4), in one statement: the customer's row
-- first (part 0), then the objects (part 1).
SELECT * FROM (
    (SELECT 0 AS part, * FROM stripe_objects
     WHERE workspace_id = $1 AND object_type = 'customer' AND object_id = $2)
    UNION ALL
    (SELECT 1 AS part, * FROM stripe_objects
     WHERE workspace_id = $1 AND object_type = $3 AND customer_id = $2 AND NOT deleted
     ORDER BY created DESC, object_id DESC
     LIMIT $4)
) found
ORDER BY part, created DESC, object_id DESC;

-- name: mirrored_of_type
SELECT * FROM stripe_objects
WHERE workspace_id = $1 AND object_type = $2 AND NOT deleted
ORDER BY created DESC, object_id DESC;

-- name: count_mirrored
SELECT count(*) FROM stripe_objects WHERE workspace_id = $1;

-- name: start_mirror
INSERT INTO mirror_workspaces (workspace_id, caught_up_to, connected_at) VALUES ($1, $2, $2)
ON CONFLICT (workspace_id) DO UPDATE
SET caught_up_to = EXCLUDED.caught_up_to, connected_at = EXCLUDED.connected_at,
    next_catch_up_at = now();

-- name: start_backfill
-- A reconnect starts every list over; copies already held stay (newer versions win anyway).
INSERT INTO mirror_backfills (workspace_id, object_type) VALUES ($1, $2)
ON CONFLICT (workspace_id, object_type) DO UPDATE
SET cursor = '', done = false, objects_copied = 0, pages_copied = 0, started_at = NULL,
    finished_at = NULL, last_error = '', next_attempt_at = now();

-- name: claim_backfill
SELECT * FROM mirror_backfills
WHERE NOT done AND next_attempt_at <= now()
ORDER BY next_attempt_at, workspace_id, object_type
LIMIT 1
FOR UPDATE SKIP LOCKED;

-- name: advance_backfill
UPDATE mirror_backfills
SET cursor = $3, done = $4, objects_copied = objects_copied + $5, pages_copied = pages_copied + 1,
    started_at = coalesce(started_at, now()), finished_at = CASE WHEN $4 THEN now() END,
    last_error = '', next_attempt_at = now()
WHERE workspace_id = $1 AND object_type = $2;

-- name: defer_backfill
UPDATE mirror_backfills
SET last_error = $3, next_attempt_at = now() + make_interval(secs => $4),
    started_at = coalesce(started_at, now())
WHERE workspace_id = $1 AND object_type = $2;

-- name: backfills_of
SELECT * FROM mirror_backfills WHERE workspace_id = $1 ORDER BY object_type;

-- name: mirror_workspace
SELECT * FROM mirror_workspaces WHERE workspace_id = $1;

-- name: set_mirror_max_age
INSERT INTO mirror_workspaces (workspace_id, max_age_seconds) VALUES ($1, $2)
ON CONFLICT (workspace_id) DO UPDATE SET max_age_seconds = EXCLUDED.max_age_seconds
RETURNING *;

-- name: claim_catch_up
SELECT m.* FROM mirror_workspaces m JOIN accounts a USING (workspace_id)
WHERE m.next_catch_up_at <= now() AND m.caught_up_to IS NOT NULL
ORDER BY m.next_catch_up_at
LIMIT 1
FOR UPDATE OF m SKIP LOCKED;

-- name: finish_catch_up
UPDATE mirror_workspaces
SET caught_up_to = greatest(coalesce(caught_up_to, 0), $2),
    next_catch_up_at = now() + make_interval(secs => $3)
WHERE workspace_id = $1;

-- name: mirror_freshness
-- (the workspace's own bound or NULL, its catch-up position, whether every list is backfilled)
SELECT (SELECT max_age_seconds FROM mirror_workspaces WHERE workspace_id = $1) AS max_age_seconds,
       (SELECT caught_up_to FROM mirror_workspaces WHERE workspace_id = $1) AS caught_up_to,
       coalesce((SELECT bool_and(done) FROM mirror_backfills WHERE workspace_id = $1), false)
           AS backfilled;

-- name: get_mirrored_many
SELECT * FROM stripe_objects
WHERE workspace_id = $1 AND (object_type, object_id) IN (
    SELECT * FROM unnest($2::text[], $3::text[])
);

-- name: customers_by_email
SELECT * FROM stripe_objects
WHERE workspace_id = $1 AND object_type = 'customer' AND NOT deleted
  AND lower(data->>'email') = lower($2)
ORDER BY created DESC, object_id DESC
LIMIT 100;

-- name: customers_by_metadata
SELECT * FROM stripe_objects
WHERE workspace_id = $1 AND object_type = 'customer' AND NOT deleted
  AND data->'metadata' @> jsonb_build_object($2::text, $3::text)
ORDER BY created DESC, object_id DESC
LIMIT 10;

-- name: mirrored_charge_customer
SELECT customer_id FROM stripe_objects
WHERE workspace_id = $1 AND object_type = 'charge' AND object_id = $2;
