-- Two records the edge keeps for issue 17.
--
-- contact_escalations: every escalation handed to a human for a verified contact, until the
-- contact has been told in the chat how it ended (reported_at). A turn of a contact with a
-- row due (next_check_at passed) asks policy about it; an open one is asked again only after
-- the recheck interval. The row's reported_at is set once, by the one turn that tells.
CREATE TABLE contact_escalations (
    workspace_id text NOT NULL,
    contact_id text NOT NULL,
    escalation_id text NOT NULL,
    -- The conversation it was handed off from.
    conversation_id text NOT NULL DEFAULT '',
    opened_at timestamptz NOT NULL DEFAULT now(),
    next_check_at timestamptz NOT NULL DEFAULT now(),
    -- The final state told ('executed', 'failed', 'rejected'; 'missing' when policy has none).
    final_state text NOT NULL DEFAULT '',
    reported_at timestamptz,
    PRIMARY KEY (workspace_id, contact_id, escalation_id)
);
CREATE INDEX contact_escalations_due
    ON contact_escalations (workspace_id, contact_id, next_check_at) WHERE reported_at IS NULL;

-- conversation_outcomes: per conversation and billing intent, how it went, for the owner's
-- outcomes page: when the conversation began (its first message), whether and when a turn
-- resolved it, whether it was handed to a human, and how policy decided a refund request
-- ('automatic' when it quoted it: ALLOW or NEEDS_CONFIRMATION; 'escalated').
CREATE TABLE conversation_outcomes (
    workspace_id text NOT NULL,
    conversation_id text NOT NULL,
    intent text NOT NULL,
    started_at timestamptz NOT NULL,
    last_turn_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    resolved_at timestamptz,
    handed_off_at timestamptz,
    refund_decision text NOT NULL DEFAULT '',
    PRIMARY KEY (workspace_id, conversation_id, intent)
);
CREATE INDEX conversation_outcomes_by_start ON conversation_outcomes (workspace_id, started_at);
CREATE INDEX conversation_outcomes_latest
    ON conversation_outcomes (workspace_id, conversation_id, last_turn_at DESC);

GRANT SELECT, INSERT, UPDATE, DELETE ON contact_escalations, conversation_outcomes
    TO askvault_edge_service;
