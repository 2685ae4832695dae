-- Chat turns sent with an Idempotency-Key header: the first answer, kept for the client's
-- retry after a network blip (replayed, never run twice). The fingerprint is of the request
-- as the visitor claims it (conversation, claimed identity, text), never of a credential the
-- site may issue afresh; contact_id is who the first turn was verified as ('' unverified),
-- which a replay must be verified as again. A claim without an answer is a turn in progress
-- (or one that died: taken over after a while). Kept a day (the replicas sweep).
CREATE TABLE chat_turn_keys (
    workspace_id text NOT NULL,
    idempotency_key text NOT NULL,
    fingerprint bytea NOT NULL,
    contact_id text NOT NULL DEFAULT '',
    answer jsonb,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    answered_at timestamptz,
    PRIMARY KEY (workspace_id, idempotency_key)
);

CREATE INDEX chat_turn_keys_by_claim ON chat_turn_keys (claimed_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON chat_turn_keys TO askvault_edge_service;
