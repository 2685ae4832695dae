-- The self-serve prices moved to policy's bounds (policy's 0007_self_serve_prices.sql): policy
-- decides which prices a customer may switch to, and the edge reads them from policy. Identity
-- reads this column nowhere any more. It is kept (not dropped) so that an operator can move
-- each workspace's list to policy once (README.md, "Self-serve prices") and so that rolling
-- back identity stays possible; a later migration may drop it.
COMMENT ON COLUMN workspaces.self_serve_price_ids IS
    'Deprecated: moved to policy bounds.self_serve_price_ids; read by nothing.';
