-- name: upsert_account
INSERT INTO accounts (workspace_id, secret_key_ciphertext, connected_account_id, livemode,
                      webhook_endpoint_id, webhook_url, enabled_events)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (workspace_id) DO UPDATE
SET secret_key_ciphertext = EXCLUDED.secret_key_ciphertext,
    connected_account_id = EXCLUDED.connected_account_id,
    livemode = EXCLUDED.livemode,
    webhook_endpoint_id = EXCLUDED.webhook_endpoint_id,
    webhook_url = EXCLUDED.webhook_url,
    enabled_events = EXCLUDED.enabled_events,
    updated_at = now()
RETURNING *;

-- name: get_account
SELECT * FROM accounts WHERE workspace_id = $1;

-- name: insert_webhook_secret
-- A secret once retired stays retired: storing it again never brings it back.
INSERT INTO webhook_secrets (workspace_id, secret_id, ciphertext)
VALUES ($1, $2, $3)
ON CONFLICT (workspace_id, secret_id) DO UPDATE SET ciphertext = EXCLUDED.ciphertext;

-- name: unretired_webhook_secrets
-- Secrets not retired at $2 (those with a retirement still ahead included, with its time).
SELECT secret_id, ciphertext, retired_at FROM webhook_secrets
WHERE workspace_id = $1 AND (retired_at IS NULL OR retired_at > $2)
ORDER BY created_at DESC, secret_id;

-- name: webhook_secret_metadata
SELECT secret_id, created_at, retired_at FROM webhook_secrets
WHERE workspace_id = $1
ORDER BY created_at DESC, secret_id;

-- name: retire_webhook_secret
-- Only ever brought forward: an earlier retirement already set is kept.
UPDATE webhook_secrets
SET retired_at = LEAST(COALESCE(retired_at, $3), $3)
WHERE workspace_id = $1 AND secret_id = $2
RETURNING secret_id, created_at, retired_at;

-- name: insert_operation
INSERT INTO operations (workspace_id, operation_id, idempotency_key, fingerprint, action, state,
                        grant_id, stripe_customer_id, target_id, parameters, run_at,
                        trace_context, confirmation)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (workspace_id, idempotency_key) DO NOTHING
RETURNING *;

-- name: get_operation_by_key
SELECT * FROM operations WHERE workspace_id = $1 AND idempotency_key = $2;

-- name: get_operation
SELECT * FROM operations WHERE workspace_id = $1 AND operation_id = $2;

-- name: lock_operation
SELECT * FROM operations WHERE workspace_id = $1 AND operation_id = $2 FOR UPDATE;

-- name: update_operation
UPDATE operations
SET state = $3, stripe_object_id = $4, error_reason = $5, run_at = $6,
    response = coalesce($7, response), attempts = attempts + 1, updated_at = now()
WHERE workspace_id = $1 AND operation_id = $2
RETURNING *;

-- name: set_grant_resolution
UPDATE operations SET grant_resolution = $3, updated_at = now()
WHERE workspace_id = $1 AND operation_id = $2
RETURNING *;

-- name: claim_due_scheduled
SELECT * FROM operations
WHERE state = 'scheduled' AND run_at <= $1
ORDER BY run_at
LIMIT 1
FOR UPDATE SKIP LOCKED;

-- name: claim_in_flight
SELECT * FROM operations
WHERE state = 'in_flight' AND updated_at <= $1 AND NOT (operation_id = ANY($2::text[]))
ORDER BY updated_at
LIMIT 1
FOR UPDATE SKIP LOCKED;

-- name: claim_unresolved
SELECT * FROM operations
WHERE grant_resolution = '' AND state IN ('succeeded', 'failed', 'voided') AND grant_id <> ''
  AND NOT (operation_id = ANY($1::text[]))
ORDER BY updated_at
LIMIT 1
FOR UPDATE SKIP LOCKED;

-- name: pending_cancellation
SELECT * FROM operations
WHERE workspace_id = $1 AND stripe_customer_id = $2 AND action = 'cancel_subscription'
  AND state = 'scheduled' AND ($3 = '' OR target_id = $3)
ORDER BY created_at DESC
LIMIT 1;

-- name: insert_event
INSERT INTO stripe_events (workspace_id, event_id, event_type, event_created_at, payload)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (workspace_id, event_id) DO NOTHING
RETURNING true;

-- name: claim_events
-- Up to $1 due unprocessed events, locked until the claiming transaction ends (rows another
-- worker or replica holds are skipped).
SELECT workspace_id, event_id, event_type, event_created_at, payload, attempts
FROM stripe_events
WHERE processed_at IS NULL AND next_attempt_at <= now()
ORDER BY next_attempt_at
LIMIT $1
FOR UPDATE SKIP LOCKED;

-- name: lock_event_objects
-- Of these (workspace/object) keys, those whose transaction-scoped lock this transaction now
-- holds: never waits, so two batches never deadlock over the objects their events are about.
SELECT key FROM unnest($1::text[]) AS key
WHERE pg_try_advisory_xact_lock(1651, hashtext(key));

-- name: lock_unprocessed_event
-- The event, locked, while it is unprocessed and no other worker holds it.
SELECT true FROM stripe_events
WHERE workspace_id = $1 AND event_id = $2 AND processed_at IS NULL
FOR UPDATE SKIP LOCKED;

-- name: finish_events
-- Per event (workspace, event, outcome, delay seconds, error): a NULL delay marks it
-- processed with its outcome; a delay leaves it unprocessed, due again after it. An event
-- whose deferral is no failed attempt (counted false: a rate limit's wait) keeps its attempts.
UPDATE stripe_events AS e
SET attempts = e.attempts + d.counted::int,
    processed_at = CASE WHEN d.delay IS NULL THEN now() END,
    outcome = CASE WHEN d.delay IS NULL THEN d.outcome ELSE e.outcome END,
    last_error = CASE WHEN d.delay IS NULL THEN '' ELSE d.error END,
    last_error_at = CASE WHEN d.delay IS NOT NULL OR d.outcome <> '' THEN now() END,
    next_attempt_at = CASE WHEN d.delay IS NULL THEN e.next_attempt_at
                           ELSE now() + make_interval(secs => d.delay) END
FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::bool[])
     AS d(workspace_id, event_id, outcome, delay, error, counted)
WHERE e.workspace_id = d.workspace_id AND e.event_id = d.event_id
  AND e.processed_at IS NULL;

-- name: trace_contexts_of_targets
-- The trace contexts of recent operations on any of these (workspace, Stripe object) pairs.
SELECT o.workspace_id, o.target_id, o.created_at, o.trace_context
FROM operations AS o
JOIN unnest($1::text[], $2::text[]) AS t(workspace_id, target_id)
  ON o.workspace_id = t.workspace_id AND o.target_id = t.target_id
WHERE o.created_at > now() - interval '1 day' AND o.trace_context <> '{}';

-- name: record_payment_failed
-- A failed invoice's case (opened by its first report) and the report's timeline entries, in
-- one statement; no row when the case was opened by a transaction this one cannot see yet.
WITH opened AS (
    INSERT INTO recovery_cases (workspace_id, case_id, stripe_customer_id, invoice_id,
                                amount_due_minor, currency, opened_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (workspace_id, invoice_id) DO NOTHING
    RETURNING case_id
), the_case AS (
    SELECT case_id FROM opened
    UNION ALL
    SELECT case_id FROM recovery_cases WHERE workspace_id = $1 AND invoice_id = $4
    LIMIT 1
), added AS (
    INSERT INTO recovery_events (workspace_id, case_id, occurred_at, kind, detail, source_id)
    SELECT $1, c.case_id, $7, e.kind, e.detail, $8
    FROM the_case AS c,
         unnest($9::text[], $10::text[]) WITH ORDINALITY AS e(kind, detail, position)
    ORDER BY e.position
    ON CONFLICT (workspace_id, case_id, source_id, kind) DO NOTHING
)
SELECT case_id FROM the_case;

-- name: payment_failed_notice
SELECT recipients, variables FROM payment_failed_notices
WHERE workspace_id = $1 AND invoice_id = $2;

-- name: decide_payment_failed_notice
-- The first decision stands: no row when the invoice has one already.
INSERT INTO payment_failed_notices (workspace_id, invoice_id, recipients, variables)
VALUES ($1, $2, $3::jsonb, $4::jsonb)
ON CONFLICT (workspace_id, invoice_id) DO NOTHING
RETURNING recipients, variables;

-- name: get_event_status
SELECT event_id, event_type, processed_at, attempts, outcome, last_error FROM stripe_events
WHERE workspace_id = $1 AND event_id = $2;

-- name: make_events_due
UPDATE stripe_events SET next_attempt_at = now()
WHERE workspace_id = $1 AND processed_at IS NULL;

-- name: last_event_received_at
SELECT max(received_at) FROM stripe_events WHERE workspace_id = $1;

-- name: webhook_health
-- Events received since $2, and the latest processing error (deferred: its error; finished
-- with an effect that could not happen: its outcome).
SELECT (SELECT count(*) FROM stripe_events WHERE workspace_id = $1 AND received_at >= $2)
           AS received,
       e.error, e.error_at
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT CASE WHEN processed_at IS NULL THEN last_error ELSE outcome END AS error,
           last_error_at AS error_at
    FROM stripe_events
    WHERE workspace_id = $1 AND last_error_at IS NOT NULL
    ORDER BY last_error_at DESC
    LIMIT 1
) AS e ON true;

-- name: open_case
INSERT INTO recovery_cases (workspace_id, case_id, stripe_customer_id, invoice_id,
                            amount_due_minor, currency, opened_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (workspace_id, invoice_id) DO NOTHING
RETURNING *;

-- name: case_by_invoice
SELECT * FROM recovery_cases WHERE workspace_id = $1 AND invoice_id = $2 FOR UPDATE;

-- name: close_case
UPDATE recovery_cases SET state = $3, closed_at = $4
WHERE workspace_id = $1 AND case_id = $2 AND state = 'open'
RETURNING *;

-- name: open_cases_of_customer
SELECT * FROM recovery_cases
WHERE workspace_id = $1 AND stripe_customer_id = $2 AND state = 'open'
FOR UPDATE;

-- name: add_case_event
INSERT INTO recovery_events (workspace_id, case_id, occurred_at, kind, detail, source_id)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (workspace_id, case_id, source_id, kind) DO NOTHING;

-- name: list_cases
SELECT * FROM recovery_cases
WHERE workspace_id = $1 AND ($2 = '' OR state = $2)
  AND ($3::timestamptz IS NULL OR (opened_at, case_id) < ($3, $4))
ORDER BY opened_at DESC, case_id DESC
LIMIT $5;

-- name: case_events
SELECT case_id, occurred_at, kind, detail FROM recovery_events
WHERE workspace_id = $1 AND case_id = ANY($2::text[])
ORDER BY occurred_at, sequence;

-- name: cases_opened_between
SELECT opened_at, state, closed_at FROM recovery_cases
WHERE workspace_id = $1 AND opened_at >= $2 AND opened_at < $3;

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

-- name: lock_escalation
-- One decision on an escalation at a time (CarryOutEscalation, DeclineEscalation), held until
-- the caller's transaction ends (or its connection drops with a crashed replica); waits at
-- most the transaction's lock_timeout.
SELECT pg_advisory_xact_lock(1652, hashtext($1 || ':' || $2));

-- name: adopt_operation
-- A write Stripe shows done that the ledger lacks (restored from an older backup): recorded
-- as succeeded, its grant left to reconciliation to commit.
INSERT INTO operations (workspace_id, operation_id, idempotency_key, fingerprint, action, state,
                        grant_id, stripe_customer_id, target_id, parameters, stripe_object_id)
VALUES ($1, $2, $3, '\x'::bytea, $4, 'succeeded', $5, $6, $7, $8, $9)
ON CONFLICT DO NOTHING
RETURNING operation_id;

-- name: operation_exists
SELECT EXISTS (SELECT 1 FROM operations WHERE workspace_id = $1 AND operation_id = $2);

-- name: mirrored_charge_customer
SELECT customer_id FROM stripe_objects
WHERE workspace_id = $1 AND object_type = 'charge' AND object_id = $2;

-- name: correct_not_performed
-- Reconciliation settled the operation as not performed (Stripe's object no longer showed it:
-- a later write replaced its metadata), and an event shows Stripe made it. Its grant, released
-- when it was settled, is left unresolved again: reconciliation's pass commits it (a late
-- commit at policy, which counts the reservation again).
UPDATE operations
SET state = 'succeeded', stripe_object_id = $3, error_reason = '', grant_resolution = '',
    updated_at = now()
WHERE workspace_id = $1 AND operation_id = $2 AND state = 'failed'
  AND error_reason = 'NOT_PERFORMED'
RETURNING operation_id;
