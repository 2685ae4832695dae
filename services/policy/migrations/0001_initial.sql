-- Policy's schema: bounds and their changes, per-visitor counters, grants, escalations and
-- the hash-chained, append-only audit log. Every key starts with the workspace id.

CREATE TABLE bounds (
    workspace_id text PRIMARY KEY,
    -- free, team, business, enterprise; '' until an admin sets it (the skill stays off).
    askvault_plan text NOT NULL DEFAULT '',
    -- [{"currency": "usd", "amount_minor": 50000}, ...]
    refund_caps jsonb NOT NULL,
    refund_window interval NOT NULL,
    plan_changes_per_period integer NOT NULL,
    cancellation_grace interval NOT NULL,
    confirm_refunds boolean NOT NULL,
    confirm_plan_changes boolean NOT NULL,
    -- calendar_month, calendar_week or calendar_day (UTC).
    counter_period text NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE bounds_changes (
    workspace_id text NOT NULL,
    change_id text NOT NULL,
    -- The complete proposed bounds, in the same shape as a bounds row.
    proposed jsonb NOT NULL,
    -- pending, applied or superseded.
    state text NOT NULL,
    proposed_by text NOT NULL,
    approved_by text NOT NULL DEFAULT '',
    loosened_fields text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL,
    applied_at timestamptz,
    PRIMARY KEY (workspace_id, change_id)
);
CREATE INDEX bounds_changes_by_time ON bounds_changes (workspace_id, created_at DESC);

-- Committed plus reserved usage of one visitor, one counter, one currency, one period.
CREATE TABLE counters (
    workspace_id text NOT NULL,
    contact_id text NOT NULL,
    -- refund_amount (minor units) or plan_changes (a count).
    counter text NOT NULL,
    -- '' for counts.
    currency text NOT NULL,
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL,
    used bigint NOT NULL CHECK (used >= 0),
    PRIMARY KEY (workspace_id, contact_id, counter, currency, period_start)
);

CREATE TABLE grants (
    workspace_id text NOT NULL,
    grant_id text NOT NULL,
    contact_id text NOT NULL,
    action text NOT NULL,
    stripe_customer_id text NOT NULL,
    charge_id text NOT NULL DEFAULT '',
    subscription_id text NOT NULL DEFAULT '',
    invoice_id text NOT NULL DEFAULT '',
    amount_minor bigint NOT NULL DEFAULT 0,
    currency text NOT NULL DEFAULT '',
    charge_created_at timestamptz,
    target_price_id text NOT NULL DEFAULT '',
    -- reserved, redeemed, committed, released or expired.
    state text NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    cancellation_grace interval,
    -- The counter row the grant reserved on (NULL for actions without a counter); kept so
    -- that a release frees the period it reserved in, even after the period ended.
    counter text,
    counter_currency text NOT NULL DEFAULT '',
    counter_period_start timestamptz,
    quantity bigint NOT NULL DEFAULT 0,
    redeem_key text NOT NULL DEFAULT '',
    redeemed_at timestamptz,
    resolved_at timestamptz,
    stripe_object_id text NOT NULL DEFAULT '',
    release_reason text NOT NULL DEFAULT '',
    escalation_id text NOT NULL DEFAULT '',
    PRIMARY KEY (workspace_id, grant_id)
);
-- The expiry worker's claim: only reserved grants can expire.
CREATE INDEX grants_due ON grants (expires_at) WHERE state = 'reserved';

CREATE TABLE escalations (
    workspace_id text NOT NULL,
    escalation_id text NOT NULL,
    contact_id text NOT NULL DEFAULT '',
    stripe_customer_id text NOT NULL DEFAULT '',
    action text NOT NULL DEFAULT '',
    -- askvault.policy.v1.ActionDetails and EscalationContext in their JSON form.
    details jsonb NOT NULL DEFAULT '{}',
    context jsonb NOT NULL DEFAULT '{}',
    reason text NOT NULL,
    -- open, approved or rejected.
    state text NOT NULL,
    created_at timestamptz NOT NULL,
    decided_at timestamptz,
    decided_by text NOT NULL DEFAULT '',
    decision_note text NOT NULL DEFAULT '',
    grant_id text NOT NULL DEFAULT '',
    PRIMARY KEY (workspace_id, escalation_id)
);
CREATE INDEX escalations_by_time ON escalations (workspace_id, created_at DESC, escalation_id DESC);

-- The head of each workspace's audit chain; appends lock it, so they are serialized per
-- workspace and the sequence has no gaps.
CREATE TABLE audit_heads (
    workspace_id text PRIMARY KEY,
    last_sequence bigint NOT NULL,
    last_hash text NOT NULL
);

CREATE TABLE audit_events (
    workspace_id text NOT NULL,
    sequence bigint NOT NULL,
    occurred_at timestamptz NOT NULL,
    actor_kind text NOT NULL,
    actor_id text NOT NULL,
    kind text NOT NULL,
    contact_id text NOT NULL,
    stripe_customer_id text NOT NULL,
    action text NOT NULL,
    amount_minor bigint NOT NULL,
    currency text NOT NULL,
    outcome text NOT NULL,
    subject_id text NOT NULL,
    previous_hash text NOT NULL,
    hash text NOT NULL,
    PRIMARY KEY (workspace_id, sequence)
);
CREATE INDEX audit_events_by_contact ON audit_events (workspace_id, contact_id, sequence);
CREATE INDEX audit_events_by_time ON audit_events (workspace_id, occurred_at);

-- Append-only, enforced by the database: any UPDATE, DELETE or TRUNCATE fails, whoever runs
-- it. Only the table's owner or a superuser can disable the triggers (tests do, to tamper);
-- in production the migrations Job's role owns the schema and the service's role does not.
CREATE FUNCTION audit_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();

CREATE TABLE idempotency_keys (
    workspace_id text NOT NULL,
    idempotency_key text NOT NULL,
    method text NOT NULL,
    fingerprint bytea NOT NULL,
    response bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, idempotency_key)
);
