-- The prices a workspace offers for self-serve plan changes (as Stripe's Customer Portal lists
-- products); empty offers the default: the active recurring prices in the customer's currency
-- and interval. A new column of a granted table: the service role's grants cover it.
ALTER TABLE workspaces ADD COLUMN self_serve_price_ids text[] NOT NULL DEFAULT '{}';
