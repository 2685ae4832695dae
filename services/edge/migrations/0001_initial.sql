-- The edge's schema: conversations, their redacted transcripts, pending proposals and the
-- WhatsApp numbers linked to contacts. Every key starts with the workspace id.

CREATE TABLE conversations (
    workspace_id text NOT NULL,
    conversation_id text NOT NULL,
    -- "chat", "tools" or "whatsapp".
    channel text NOT NULL,
    contact_id text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, conversation_id)
);

-- The transcript, card numbers already removed: the hand-off context.
CREATE TABLE messages (
    workspace_id text NOT NULL,
    conversation_id text NOT NULL,
    sequence bigint GENERATED ALWAYS AS IDENTITY,
    -- "visitor" or "bot".
    author text NOT NULL,
    text text NOT NULL,
    intent text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, conversation_id, sequence),
    FOREIGN KEY (workspace_id, conversation_id) REFERENCES conversations (workspace_id, conversation_id)
);

-- What the bot offered and waits on a "yes" for; the newest one per conversation counts.
CREATE TABLE proposals (
    workspace_id text NOT NULL,
    conversation_id text NOT NULL,
    proposal_id text NOT NULL,
    contact_id text NOT NULL,
    kind text NOT NULL,
    details jsonb NOT NULL,
    summary text NOT NULL,
    -- pending, confirming, done, declined, superseded.
    state text NOT NULL DEFAULT 'pending',
    result jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, conversation_id, proposal_id),
    FOREIGN KEY (workspace_id, conversation_id) REFERENCES conversations (workspace_id, conversation_id)
);
CREATE INDEX proposals_newest ON proposals (workspace_id, conversation_id, created_at DESC);

-- WhatsApp numbers of verified contacts, so an inbound WhatsApp message becomes a chat turn
-- for the contact it belongs to.
CREATE TABLE whatsapp_links (
    workspace_id text NOT NULL,
    whatsapp_number text NOT NULL,
    contact_id text NOT NULL,
    user_id text NOT NULL DEFAULT '',
    email text NOT NULL DEFAULT '',
    -- The visitor's user_hash, sealed with SECRETS_ENCRYPTION_KEYS and bound to
    -- "<workspace>/whatsapp/<number>": identity has no channel-verified login, so the edge
    -- re-verifies the contact with the credential it was linked with.
    credential bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, whatsapp_number)
);

CREATE TABLE idempotency_keys (
    workspace_id text NOT NULL,
    idempotency_key text NOT NULL,
    method text NOT NULL,
    fingerprint bytea NOT NULL,
    response bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, idempotency_key)
);
