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
