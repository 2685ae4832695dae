-- Identity's schema: workspaces, their HMAC secrets (encrypted), contacts with audience tags.
-- Every key starts with the workspace id, so the data partitions by workspace.

CREATE TABLE workspaces (
    workspace_id text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE hmac_secrets (
    workspace_id text NOT NULL REFERENCES workspaces (workspace_id),
    key_id text NOT NULL,
    -- AES-GCM ciphertext bound to "<workspace>/hmac/<key id>"; never returned or logged.
    ciphertext bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz,
    PRIMARY KEY (workspace_id, key_id)
);

CREATE TABLE contacts (
    workspace_id text NOT NULL REFERENCES workspaces (workspace_id),
    contact_id text NOT NULL,
    -- The workspace's user id; empty when the visitor was verified by email alone.
    user_id text NOT NULL DEFAULT '',
    email text NOT NULL DEFAULT '',
    email_normalized text NOT NULL DEFAULT '',
    stripe_customer_id text NOT NULL DEFAULT '',
    customer_status text NOT NULL DEFAULT '',
    customer_status_at timestamptz,
    plan_tier text NOT NULL DEFAULT '',
    plan_tier_at timestamptz,
    trial_ends timestamptz,
    trial_ends_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, contact_id)
);

-- One contact per user id; visitors known only by email are one contact per email.
CREATE UNIQUE INDEX contacts_by_user_id ON contacts (workspace_id, user_id) WHERE user_id <> '';
CREATE UNIQUE INDEX contacts_by_email_only ON contacts (workspace_id, email_normalized)
    WHERE user_id = '';
CREATE INDEX contacts_by_customer ON contacts (workspace_id, stripe_customer_id)
    WHERE stripe_customer_id <> '';

CREATE TABLE idempotency_keys (
    workspace_id text NOT NULL,
    idempotency_key text NOT NULL,
    method text NOT NULL,
    fingerprint bytea NOT NULL,
    response bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, idempotency_key)
);
