-- The billing gateway's schema: connected Stripe accounts (keys and webhook signing secrets
-- encrypted), the operation ledger, the webhook inbox and failed-payment recovery cases.
-- Every key starts with the workspace id, so the data partitions by workspace.

CREATE TABLE accounts (
    workspace_id text PRIMARY KEY,
    -- AES-GCM ciphertext of the secret key, bound to "<workspace>/stripe/secret_key".
    secret_key_ciphertext bytea NOT NULL,
    -- A connected account id sent as Stripe-Account; empty for the workspace's own account.
    connected_account_id text NOT NULL DEFAULT '',
    livemode boolean NOT NULL DEFAULT false,
    webhook_endpoint_id text NOT NULL DEFAULT '',
    webhook_url text NOT NULL DEFAULT '',
    enabled_events text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Several signing secrets per workspace, so an endpoint can be rotated without losing events.
CREATE TABLE webhook_secrets (
    workspace_id text NOT NULL REFERENCES accounts (workspace_id),
    secret_id text NOT NULL,
    -- AES-GCM ciphertext bound to "<workspace>/webhook/<secret id>"; never returned or logged.
    ciphertext bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz,
    PRIMARY KEY (workspace_id, secret_id)
);

-- The operation ledger: one row per mutating Stripe call, written before Stripe is called.
CREATE TABLE operations (
    workspace_id text NOT NULL,
    operation_id text NOT NULL,
    -- The caller's idempotency key: a retry of the same call finds the same operation.
    idempotency_key text NOT NULL,
    -- SHA-256 of the request without its key.
    fingerprint bytea NOT NULL,
    action text NOT NULL,
    -- scheduled | in_flight | succeeded | failed | voided
    state text NOT NULL,
    grant_id text NOT NULL,
    stripe_customer_id text NOT NULL,
    target_id text NOT NULL DEFAULT '',
    -- The exact Stripe parameters (never card data): what reconciliation repeats or looks up.
    parameters jsonb NOT NULL DEFAULT '{}',
    stripe_object_id text NOT NULL DEFAULT '',
    error_reason text NOT NULL DEFAULT '',
    -- For scheduled operations: when they run.
    run_at timestamptz,
    -- '' until the grant is committed or released at policy, then 'committed' / 'released'.
    grant_resolution text NOT NULL DEFAULT '',
    attempts integer NOT NULL DEFAULT 0,
    -- The serialized RPC response of a succeeded operation, replayed for its key.
    response bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, operation_id)
);

CREATE UNIQUE INDEX operations_by_key ON operations (workspace_id, idempotency_key);
CREATE INDEX operations_due ON operations (run_at) WHERE state = 'scheduled';
CREATE INDEX operations_in_flight ON operations (updated_at) WHERE state = 'in_flight';
CREATE INDEX operations_unresolved ON operations (updated_at)
    WHERE grant_resolution = '' AND state IN ('succeeded', 'failed', 'voided');
CREATE INDEX operations_by_customer ON operations (workspace_id, stripe_customer_id, action, state);

-- The webhook inbox: raw bytes as received, processed once by the worker.
CREATE TABLE stripe_events (
    workspace_id text NOT NULL,
    event_id text NOT NULL,
    event_type text NOT NULL,
    -- Stripe's event.created (seconds): the source time of what it reports.
    event_created_at timestamptz NOT NULL,
    payload bytea NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text NOT NULL DEFAULT '',
    PRIMARY KEY (workspace_id, event_id)
);

CREATE INDEX stripe_events_pending ON stripe_events (next_attempt_at) WHERE processed_at IS NULL;
CREATE INDEX stripe_events_received ON stripe_events (workspace_id, received_at);

-- Failed-payment recovery cases, one per failed invoice.
CREATE TABLE recovery_cases (
    workspace_id text NOT NULL,
    case_id text NOT NULL,
    stripe_customer_id text NOT NULL,
    invoice_id text NOT NULL,
    amount_due_minor bigint NOT NULL,
    currency text NOT NULL,
    -- open | recovered | lost
    state text NOT NULL DEFAULT 'open',
    opened_at timestamptz NOT NULL,
    closed_at timestamptz,
    PRIMARY KEY (workspace_id, case_id)
);

CREATE UNIQUE INDEX recovery_cases_by_invoice ON recovery_cases (workspace_id, invoice_id);
CREATE INDEX recovery_cases_opened ON recovery_cases (workspace_id, opened_at);

CREATE TABLE recovery_events (
    workspace_id text NOT NULL,
    case_id text NOT NULL,
    sequence bigserial NOT NULL,
    occurred_at timestamptz NOT NULL,
    kind text NOT NULL,
    detail text NOT NULL DEFAULT '',
    -- The Stripe event (or operation) that produced it, so a replay adds nothing.
    source_id text NOT NULL,
    PRIMARY KEY (workspace_id, case_id, sequence)
);

CREATE UNIQUE INDEX recovery_events_once ON recovery_events (workspace_id, case_id, source_id, kind);

CREATE TABLE idempotency_keys (
    workspace_id text NOT NULL,
    idempotency_key text NOT NULL,
    method text NOT NULL,
    fingerprint bytea NOT NULL,
    response bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, idempotency_key)
);
