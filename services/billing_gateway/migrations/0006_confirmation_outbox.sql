-- Confirmations of the gateway's own writes (plan changed, cancellation scheduled or undone)
-- waiting for the notifier to accept them: recorded when the write's outcome is, deleted once
-- the notifier took the message (or refused it for good), retried meanwhile. The notifier's
-- dedup key (dedup_key plus the recipient) makes a resend after a lost answer harmless.
CREATE TABLE pending_confirmations (
    workspace_id text NOT NULL,
    -- "<template>-<operation id>": one confirmation per operation.
    dedup_key text NOT NULL,
    stripe_customer_id text NOT NULL,
    -- askvault.notifier.v1.Template number.
    template integer NOT NULL,
    variables jsonb NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    -- When a worker may try it: an attempt in progress holds it until then (a lease), a
    -- failed one pushes it back by the backoff.
    next_attempt_at timestamptz NOT NULL,
    last_error text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, dedup_key)
);
CREATE INDEX pending_confirmations_due ON pending_confirmations (next_attempt_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON pending_confirmations TO askvault_billing_gateway_service;
