-- Counters per Stripe customer beside the per-visitor ones (several contacts of one customer
-- share its bounds), and the quote a person confirmed kept with the decision's audit entry.

-- Committed plus reserved usage of one Stripe customer, one counter, one currency, one
-- period; the same shape and limits as the per-visitor counters. A reservation locks the
-- customer's row before the visitor's, everywhere, so concurrent reservations never deadlock.
CREATE TABLE customer_counters (
    workspace_id text NOT NULL,
    stripe_customer_id text NOT NULL,
    -- refund_amount (minor units) or plan_changes (a count).
    counter text NOT NULL,
    -- '' for counts.
    currency text NOT NULL,
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL,
    used bigint NOT NULL CHECK (used >= 0),
    PRIMARY KEY (workspace_id, stripe_customer_id, counter, currency, period_start)
);

-- What the grants already reserved or spent counts for their customers too, so that a grant
-- issued before this migration frees exactly what it now holds on both rows.
INSERT INTO customer_counters (workspace_id, stripe_customer_id, counter, currency,
                               period_start, period_end, used)
SELECT g.workspace_id, g.stripe_customer_id, g.counter, g.counter_currency,
       g.counter_period_start, max(c.period_end), sum(g.quantity)
FROM grants g
JOIN counters c ON c.workspace_id = g.workspace_id AND c.contact_id = g.contact_id
               AND c.counter = g.counter AND c.currency = g.counter_currency
               AND c.period_start = g.counter_period_start
WHERE g.counter IS NOT NULL AND g.stripe_customer_id <> ''
  AND g.state IN ('reserved', 'redeemed', 'committed')
GROUP BY g.workspace_id, g.stripe_customer_id, g.counter, g.counter_currency,
         g.counter_period_start;

-- For a decision on a confirmed request: {"quote_id", "summary", "terms_hash", "expires_at",
-- "channel", "confirmed_at"}, covered by the entry's hash; NULL otherwise. Adding a column
-- changes no stored row, so the append-only triggers are not involved.
ALTER TABLE audit_events ADD COLUMN confirmation jsonb;
