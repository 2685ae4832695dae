-- WhatsApp statuses that arrived before the send they report on was recorded (the provider's
-- webhook can beat the worker's mark_sent): kept until the send records the provider message
-- id, then applied. One row per (provider message id, status): a repeat replaces nothing.
-- Bounded in count by the park statement (PARKED_STATUSES_MAX) and in time by the
-- housekeeping (rows older than PARKED_STATUS_TTL_SECONDS are dropped: a status of
-- a message this notifier never sent, say another system's on the same number).
CREATE TABLE parked_whatsapp_statuses (
    provider_message_id text NOT NULL,
    status text NOT NULL,
    occurred_at timestamptz NOT NULL,
    error_code integer NOT NULL DEFAULT 0,
    error_title text NOT NULL DEFAULT '',
    parked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider_message_id, status)
);

CREATE INDEX parked_whatsapp_statuses_age ON parked_whatsapp_statuses (parked_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON parked_whatsapp_statuses TO askvault_notifier_service;
