-- Notifier's schema: the outbox of messages with their dedup records, channel consents,
-- WhatsApp customer-service windows, send counters and per-workspace settings.
-- Every key starts with the workspace id, so the data partitions by workspace.

CREATE TABLE workspace_settings (
    workspace_id text PRIMARY KEY,
    sender_name text NOT NULL DEFAULT '',
    from_address text NOT NULL DEFAULT '',
    reply_to text NOT NULL DEFAULT '',
    agent_inbox text NOT NULL DEFAULT '',
    helpdesk_webhook_url text NOT NULL DEFAULT '',
    -- 0 means "the service default".
    contact_hourly_limit integer NOT NULL DEFAULT 0,
    workspace_hourly_limit integer NOT NULL DEFAULT 0,
    whatsapp_phone_number_id text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The outbox. A message is due while status = 'queued' and next_attempt_at <= now(); a
-- worker claims it by moving next_attempt_at one lease ahead and taking a fresh claim_token,
-- so a message whose worker died is due again when the lease runs out.
CREATE TABLE messages (
    workspace_id text NOT NULL,
    message_id text NOT NULL,
    contact_id text NOT NULL DEFAULT '',
    recipient_email text NOT NULL DEFAULT '',
    recipient_whatsapp text NOT NULL DEFAULT '',
    recipient_name text NOT NULL DEFAULT '',
    template text NOT NULL,
    variables jsonb NOT NULL DEFAULT '{}',
    attachments jsonb NOT NULL DEFAULT '[]',
    -- 'email', 'whatsapp' or 'helpdesk_webhook': the channel it goes by now.
    channel text NOT NULL,
    -- The channel it fell back from ('' when it did not).
    fallback_from text NOT NULL DEFAULT '',
    -- 'queued', 'sent', 'delivered', 'read', 'failed' or 'dead'.
    status text NOT NULL DEFAULT 'queued',
    attempts integer NOT NULL DEFAULT 0,
    last_error text NOT NULL DEFAULT '',
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- Fences outcomes: only the holder of the current claim may reschedule or bury it.
    claim_token uuid,
    claimed_by text NOT NULL DEFAULT '',
    -- The helpdesk webhook of a hand-off (the agent inbox is recipient_email).
    webhook_url text NOT NULL DEFAULT '',
    -- Hand-off destinations already served ('email', 'helpdesk_webhook'), so that a retry
    -- repeats only the part that failed.
    handoff_done text[] NOT NULL DEFAULT '{}',
    provider_message_id text NOT NULL DEFAULT '',
    dedup_key text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    delivered_at timestamptz,
    read_at timestamptz,
    failed_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, message_id)
);

-- Workers poll by due time, never by id, so a row committed late by a long transaction
-- (its next_attempt_at already in the past) is still found.
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE status = 'queued';
CREATE INDEX messages_by_contact
    ON messages (workspace_id, contact_id, created_at DESC, message_id DESC);
CREATE INDEX messages_by_provider_id ON messages (provider_message_id)
    WHERE provider_message_id <> '';

-- One dedup key makes one message; inserted in the same transaction as the message.
CREATE TABLE dedup_keys (
    workspace_id text NOT NULL,
    dedup_key text NOT NULL,
    message_id text NOT NULL,
    -- SHA-256 of the request without its key: the same key with other content is refused.
    fingerprint bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, dedup_key)
);

-- The consent in force per contact and channel; the newest occurred_at wins.
CREATE TABLE channel_consents (
    workspace_id text NOT NULL,
    contact_id text NOT NULL,
    channel text NOT NULL,
    opted_in boolean NOT NULL,
    source text NOT NULL,
    occurred_at timestamptz NOT NULL,
    whatsapp_number text NOT NULL DEFAULT '',
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, contact_id, channel)
);

-- Every consent ever recorded, for proof of opt-in (time and source).
CREATE TABLE channel_consent_history (
    workspace_id text NOT NULL,
    consent_event_id bigserial NOT NULL,
    contact_id text NOT NULL,
    channel text NOT NULL,
    opted_in boolean NOT NULL,
    source text NOT NULL,
    occurred_at timestamptz NOT NULL,
    whatsapp_number text NOT NULL DEFAULT '',
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, consent_event_id)
);

-- Inbound WhatsApp messages (by their wamid, so recording one twice changes nothing) and
-- the customer-service window each contact's latest one opened.
CREATE TABLE whatsapp_inbound (
    workspace_id text NOT NULL,
    provider_message_id text NOT NULL,
    contact_id text NOT NULL,
    whatsapp_number text NOT NULL DEFAULT '',
    received_at timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, provider_message_id)
);

CREATE TABLE whatsapp_windows (
    workspace_id text NOT NULL,
    contact_id text NOT NULL,
    last_inbound_at timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, contact_id)
);

-- Messages queued per clock hour (UTC) per workspace (scope '') and per contact
-- (scope 'contact:<id>'); a conditional increment keeps concurrent sends under the limit.
CREATE TABLE send_counters (
    workspace_id text NOT NULL,
    scope text NOT NULL,
    window_start timestamp NOT NULL,
    sent integer NOT NULL,
    PRIMARY KEY (workspace_id, scope, window_start)
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
