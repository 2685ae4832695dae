-- The SQL of grants and the counters they reserve on, by name; grant_store.py runs it.

-- name: reserve_customer
-- The customer's row, always locked before the visitor's (reserve below): adds the quantity
-- unless the counter would pass the limit; no row back means it did not fit. Concurrent
-- reservations queue on the row lock and re-check the condition after it.
INSERT INTO customer_counters AS c (workspace_id, stripe_customer_id, counter, currency,
                                    period_start, period_end, used)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (workspace_id, stripe_customer_id, counter, currency, period_start)
DO UPDATE SET used = c.used + excluded.used
WHERE c.used + excluded.used <= $8
RETURNING used;

-- name: free_customer
UPDATE customer_counters SET used = greatest(used - $6, 0)
WHERE workspace_id = $1 AND stripe_customer_id = $2 AND counter = $3 AND currency = $4
  AND period_start = $5
RETURNING used;

-- name: reserve
-- The visitor's row, locked after the customer's; as reserve_customer.
INSERT INTO counters AS c (workspace_id, contact_id, counter, currency, period_start,
                           period_end, used)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (workspace_id, contact_id, counter, currency, period_start)
DO UPDATE SET used = c.used + excluded.used
WHERE c.used + excluded.used <= $8
RETURNING used;

-- name: counters_used
SELECT coalesce((SELECT used FROM customer_counters
                 WHERE workspace_id = $1 AND stripe_customer_id = $2 AND counter = $4
                   AND currency = $5 AND period_start = $6), 0) AS customer_used,
       coalesce((SELECT used FROM counters
                 WHERE workspace_id = $1 AND contact_id = $3 AND counter = $4
                   AND currency = $5 AND period_start = $6), 0) AS visitor_used;

-- name: free
UPDATE counters SET used = greatest(used - $6, 0)
WHERE workspace_id = $1 AND contact_id = $2 AND counter = $3 AND currency = $4
  AND period_start = $5
RETURNING used;

-- name: insert_grant
INSERT INTO grants (workspace_id, grant_id, contact_id, action, stripe_customer_id, charge_id,
                    subscription_id, invoice_id, amount_minor, currency, charge_created_at,
                    target_price_id, state, expires_at, created_at, cancellation_grace,
                    counter, counter_currency, counter_period_start, quantity, escalation_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'reserved', $13, $14, $15, $16, $17,
        $18, $19, $20)
RETURNING *;

-- name: get_grant_for_update
SELECT * FROM grants WHERE workspace_id = $1 AND grant_id = $2 FOR UPDATE;

-- name: redeem_grant
UPDATE grants SET state = 'redeemed', redeem_key = $3, redeemed_at = $4
WHERE workspace_id = $1 AND grant_id = $2
RETURNING *;

-- name: release_grant
UPDATE grants SET state = 'released', release_reason = $3, resolved_at = $4
WHERE workspace_id = $1 AND grant_id = $2
RETURNING *;

-- name: expire_grant
UPDATE grants SET state = 'expired', resolved_at = $3
WHERE workspace_id = $1 AND grant_id = $2
RETURNING *;

-- name: recount_customer
-- A late commit (grant_store.recount_reservation): the released quantity counted again on the
-- customer's row, past its limit if so (the action happened); locked before the visitor's.
INSERT INTO customer_counters AS c (workspace_id, stripe_customer_id, counter, currency,
                                    period_start, period_end, used)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (workspace_id, stripe_customer_id, counter, currency, period_start)
DO UPDATE SET used = c.used + excluded.used
RETURNING used;

-- name: recount
-- The same on the visitor's row.
INSERT INTO counters AS c (workspace_id, contact_id, counter, currency, period_start,
                           period_end, used)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (workspace_id, contact_id, counter, currency, period_start)
DO UPDATE SET used = c.used + excluded.used
RETURNING used;

-- name: workspaces_with_due_grants
SELECT DISTINCT workspace_id FROM grants
WHERE state = 'reserved' AND expires_at <= $1
LIMIT $2;

-- name: claim_due_grants
-- Rows another replica is expiring are skipped, not waited for.
SELECT * FROM grants
WHERE workspace_id = $1 AND state = 'reserved' AND expires_at <= $2
ORDER BY expires_at, grant_id
LIMIT $3
FOR UPDATE SKIP LOCKED;

-- name: reserve_and_grant
-- One round trip for a decision's counters and grant (migration 0006's function).
SELECT fits, customer_used, visitor_used
FROM reserve_and_grant($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                       $17, $18, $19, $20, $21, $22);

-- name: claim_with_grant
-- The claim and the grant, locked until the transaction ends, in one round trip.
WITH claimed AS (
    INSERT INTO idempotency_keys (workspace_id, idempotency_key, method, fingerprint)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT DO NOTHING
    RETURNING true AS claimed
)
SELECT coalesce((SELECT claimed FROM claimed), false) AS claimed, g.*
FROM (SELECT 1) AS one
LEFT JOIN (SELECT * FROM grants WHERE workspace_id = $1 AND grant_id = $5 FOR UPDATE) g ON true;
