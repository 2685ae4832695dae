-- The trace context (W3C traceparent/tracestate) of the call that recorded each operation, so
-- that the webhook Stripe later sends about its object continues the same trace.
ALTER TABLE operations ADD COLUMN trace_context jsonb NOT NULL DEFAULT '{}';
CREATE INDEX operations_by_target ON operations (workspace_id, target_id, created_at DESC)
    WHERE target_id <> '';
