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
