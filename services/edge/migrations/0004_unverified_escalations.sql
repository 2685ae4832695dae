-- The escalations opened for unverified visitors, one row each: a conversation reuses its
-- open one instead of opening (and emailing the agents about) another on every billing turn,
-- and the agent emails they caused are counted per workspace over the last hour.

CREATE TABLE unverified_escalations (
    workspace_id text NOT NULL,
    conversation_id text NOT NULL,
    escalation_id text NOT NULL,
    opened_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- When the agents were emailed about it; NULL when the workspace's hourly email limit
    -- for unverified hand-offs was reached (the escalation is open all the same).
    emailed_at timestamptz,
    PRIMARY KEY (workspace_id, conversation_id, escalation_id)
);
CREATE INDEX unverified_escalations_newest
    ON unverified_escalations (workspace_id, conversation_id, opened_at DESC);
CREATE INDEX unverified_escalations_emailed
    ON unverified_escalations (workspace_id, emailed_at) WHERE emailed_at IS NOT NULL;
