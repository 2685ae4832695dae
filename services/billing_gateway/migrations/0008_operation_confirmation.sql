-- The confirmation an operation owes the customer, recorded with the operation before Stripe
-- is called: {"template", "variables", "due_state", "effective_date_variable"}. The
-- transaction that moves the operation to due_state (succeeded for a plan change, scheduled
-- for a cancellation) moves it into pending_confirmations and clears it here, whichever path
-- records that outcome (the write itself, reconciliation, a Stripe event): the confirmation
-- exists exactly when the outcome does, and is queued once. NULL: nothing (left) to confirm.
ALTER TABLE operations ADD COLUMN confirmation jsonb;
