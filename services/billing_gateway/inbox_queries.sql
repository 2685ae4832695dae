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
-- `o.target_id <> ''` is the predicate of operations_by_target: without it the planner cannot
-- use that partial index and scans every operation on every webhook batch.
SELECT o.workspace_id, o.target_id, o.created_at, o.trace_context
FROM operations AS o
JOIN unnest($1::text[], $2::text[]) AS t(workspace_id, target_id)
  ON o.workspace_id = t.workspace_id AND o.target_id = t.target_id
WHERE o.target_id <> '' AND o.created_at > now() - interval '1 day'
  AND o.trace_context <> '{}';

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
