-- The prices a customer may move to by themselves become part of a workspace's bounds (set
-- with ProposeBoundsChange; allowing a price waits for a second admin), and resubscriptions
-- (a UPI / eMandate subscription moved by subscribing anew) get their own limit.
--
-- Identity kept the self-serve list before (identity's 0004, workspaces.self_serve_price_ids).
-- Policy cannot read identity's schema, so the list is not copied here: an operator moves
-- each workspace's list once with ProposeBoundsChange (README.md, "Self-serve prices"); until
-- then the workspace gets the billing gateway's default (active recurring prices in the
-- customer's currency and interval), which never offers more than a list could have.
ALTER TABLE bounds ADD COLUMN self_serve_price_ids text[] NOT NULL DEFAULT '{}';

-- Resubscriptions were counted as plan changes: existing workspaces keep that many.
ALTER TABLE bounds ADD COLUMN resubscriptions_per_period integer;
UPDATE bounds SET resubscriptions_per_period = plan_changes_per_period;
ALTER TABLE bounds ALTER COLUMN resubscriptions_per_period SET NOT NULL;
