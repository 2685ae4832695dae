-- Escalations end in an outcome: an approved one is carried out by the billing gateway,
-- which records here how it ended (executed with the Stripe object it produced, or failed
-- with the reason nothing moved). States: open, approved, rejected, executed, failed.
ALTER TABLE escalations ADD COLUMN failure_reason text NOT NULL DEFAULT '';
ALTER TABLE escalations ADD COLUMN stripe_object_id text NOT NULL DEFAULT '';
ALTER TABLE escalations ADD COLUMN finished_at timestamptz;

-- The audit log filtered by Stripe customer and by actor (console and CLI), in chain order.
CREATE INDEX audit_events_by_customer
    ON audit_events (workspace_id, stripe_customer_id, sequence);
CREATE INDEX audit_events_by_actor ON audit_events (workspace_id, actor_id, sequence);
