-- The SQL of escalations, by name; escalation_store.py runs it.

-- name: insert_escalation
INSERT INTO escalations (workspace_id, escalation_id, contact_id, stripe_customer_id, action,
                         details, context, reason, state, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $9)
RETURNING *;

-- name: get_escalation
SELECT * FROM escalations WHERE workspace_id = $1 AND escalation_id = $2;

-- name: get_escalation_for_update
SELECT * FROM escalations WHERE workspace_id = $1 AND escalation_id = $2 FOR UPDATE;

-- name: decide_escalation
UPDATE escalations SET state = $3, decided_at = $4, decided_by = $5, decision_note = $6,
                       grant_id = $7
WHERE workspace_id = $1 AND escalation_id = $2
RETURNING *;

-- name: list_escalations
SELECT * FROM escalations
WHERE workspace_id = $1 AND ($2 = '' OR state = $2)
  AND ($3::timestamptz IS NULL OR (created_at, escalation_id) < ($3, $4))
ORDER BY created_at DESC, escalation_id DESC
LIMIT $5;

-- name: list_escalations_oldest_first
SELECT * FROM escalations
WHERE workspace_id = $1 AND ($2 = '' OR state = $2)
  AND ($3::timestamptz IS NULL OR (created_at, escalation_id) > ($3, $4))
ORDER BY created_at, escalation_id
LIMIT $5;

-- name: finish_escalation
-- An approved escalation -> executed | failed, as the billing gateway reports it.
UPDATE escalations SET state = $3, stripe_object_id = $4, failure_reason = $5, finished_at = $6
WHERE workspace_id = $1 AND escalation_id = $2
RETURNING *;
