-- The SQL of bounds and their changes, by name; bounds_store.py runs it.

-- name: get_bounds
SELECT * FROM bounds WHERE workspace_id = $1;

-- name: upsert_bounds
INSERT INTO bounds (workspace_id, askvault_plan, refund_caps, refund_window,
                    plan_changes_per_period, cancellation_grace, confirm_refunds,
                    confirm_plan_changes, counter_period, updated_at, time_zone,
                    self_serve_price_ids, resubscriptions_per_period)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (workspace_id) DO UPDATE SET
    askvault_plan = excluded.askvault_plan,
    refund_caps = excluded.refund_caps,
    refund_window = excluded.refund_window,
    plan_changes_per_period = excluded.plan_changes_per_period,
    cancellation_grace = excluded.cancellation_grace,
    confirm_refunds = excluded.confirm_refunds,
    confirm_plan_changes = excluded.confirm_plan_changes,
    counter_period = excluded.counter_period,
    updated_at = excluded.updated_at,
    time_zone = excluded.time_zone,
    self_serve_price_ids = excluded.self_serve_price_ids,
    resubscriptions_per_period = excluded.resubscriptions_per_period
RETURNING *;

-- name: supersede_pending_changes
UPDATE bounds_changes SET state = 'superseded'
WHERE workspace_id = $1 AND state = 'pending';

-- name: insert_bounds_change
INSERT INTO bounds_changes (workspace_id, change_id, proposed, state, proposed_by,
                            approved_by, loosened_fields, created_at, applied_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING *;

-- name: get_bounds_change_for_update
SELECT * FROM bounds_changes WHERE workspace_id = $1 AND change_id = $2 FOR UPDATE;

-- name: apply_bounds_change
UPDATE bounds_changes SET state = 'applied', approved_by = $3, applied_at = $4
WHERE workspace_id = $1 AND change_id = $2
RETURNING *;

-- name: list_bounds_changes
SELECT * FROM bounds_changes
WHERE workspace_id = $1 AND ($2 = '' OR state = $2)
ORDER BY created_at DESC, change_id DESC
LIMIT 500;

-- name: claim_with_bounds
-- runtime.idempotency's claim and the workspace's bounds in one round trip; claimed is false
-- when the key was already taken (the caller then replays or refuses through
-- idempotency.claim). The bounds columns are NULL when the workspace has none.
WITH claimed AS (
    INSERT INTO idempotency_keys (workspace_id, idempotency_key, method, fingerprint)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT DO NOTHING
    RETURNING true AS claimed
)
SELECT coalesce((SELECT claimed FROM claimed), false) AS claimed, b.*
FROM (SELECT 1) AS one
LEFT JOIN bounds b ON b.workspace_id = $1;
