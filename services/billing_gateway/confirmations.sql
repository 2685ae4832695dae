-- The confirmation outbox's statements (confirmation_outbox.py).

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
