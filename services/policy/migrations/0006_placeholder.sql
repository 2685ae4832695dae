-- Placeholder, changes nothing. Version 6 belongs to the audit-chaining work on another
-- branch, merged separately; migrations must be numbered 1..n, so this branch's own
-- 0007_self_serve_prices.sql needs a 6 before it. Delete this file when that branch's 0006
-- is merged (no database outside tests has applied it).
SELECT 1;
