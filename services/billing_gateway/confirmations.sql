-- The confirmation outbox's statements (confirmation_outbox.py).

-- name: take_confirmation_draft
-- The operation's confirmation, once the operation is in the state it confirms: taken off the
-- operation (in the transaction recording that state), so that it is queued once however
-- often that outcome is recorded again. The row lock orders two takers: the second finds none.
WITH draft AS (
    SELECT workspace_id, operation_id, confirmation FROM operations
    WHERE workspace_id = $1 AND operation_id = $2 AND state = confirmation->>'due_state'
    FOR UPDATE
)
UPDATE operations AS o SET confirmation = NULL
FROM draft
WHERE o.workspace_id = draft.workspace_id AND o.operation_id = draft.operation_id
RETURNING draft.confirmation, o.stripe_customer_id, o.run_at, o.updated_at;

-- name: record_confirmation
INSERT INTO pending_confirmations
    (workspace_id, dedup_key, stripe_customer_id, template, variables, next_attempt_at)
VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
ON CONFLICT (workspace_id, dedup_key) DO NOTHING
RETURNING true;

-- name: claim_due_confirmations
UPDATE pending_confirmations
SET next_attempt_at = now() + make_interval(secs => $2), attempts = attempts + 1
WHERE (workspace_id, dedup_key) IN (
    SELECT workspace_id, dedup_key FROM pending_confirmations
    WHERE next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING workspace_id, dedup_key, stripe_customer_id, template, variables, attempts;

-- name: claim_confirmation
-- One confirmation for an attempt right after its write, unless a worker holds it or it waits
-- out a backoff (then the worker sends it when due).
UPDATE pending_confirmations
SET next_attempt_at = now() + make_interval(secs => $3), attempts = attempts + 1
WHERE workspace_id = $1 AND dedup_key = $2 AND next_attempt_at <= now()
RETURNING workspace_id, dedup_key, stripe_customer_id, template, variables, attempts;

-- name: defer_confirmation
-- $5: the deferral is a rate limit's wait, no failed attempt: the claim's count is given back.
UPDATE pending_confirmations
SET next_attempt_at = now() + make_interval(secs => $3), last_error = $4,
    attempts = CASE WHEN $5::bool THEN greatest(attempts - 1, 0) ELSE attempts END
WHERE workspace_id = $1 AND dedup_key = $2;

-- name: delete_confirmation
DELETE FROM pending_confirmations WHERE workspace_id = $1 AND dedup_key = $2;

-- name: count_pending_confirmations
SELECT count(*) FROM pending_confirmations WHERE workspace_id = $1;
