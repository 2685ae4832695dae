-- Deciding no longer waits on the workspace's audit chain head. A decision records its audit
-- entries unchained, in its own transaction, in audit_pending; the chainer (chaining.py, one
-- per workspace at a time: it holds the head row, which only it locks now) links them into
-- audit_events in the order it sees them committed, and then removes them from audit_pending.
--
-- Nobody can rewrite history, chained or not:
--   * audit_events stays INSERT/SELECT only for the service (0004) and append-only for
--     everyone (0001's triggers): the chainer only adds rows, with their final links, so no
--     link column is ever written twice.
--   * audit_pending can never be changed, and a row can be deleted only once an entry with
--     its entry_id is in audit_events (trigger below): an unchained entry cannot vanish, and
--     the service (which may DELETE, to empty the queue) can delete only what is chained.
--   * Each pending row carries a seal, HMAC-SHA256 under the audit MAC key over its content
--     and its entry_id; the chainer links only rows whose seal verifies, so someone holding
--     the database but not the key cannot slip an entry into the chain, and a replayed copy
--     of a chained entry is dropped (its entry_id is already chained, unique below).

CREATE TABLE audit_pending (
    workspace_id text NOT NULL,
    -- The order entries were recorded in; the chain follows it among the committed ones.
    pending_id bigint GENERATED ALWAYS AS IDENTITY,
    -- Unique per entry (policy-generated), covered by the seal: what the chained copy keeps.
    entry_id text NOT NULL,
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
    confirmation jsonb,
    -- The audit MAC key of the seal, and the seal (hex HMAC-SHA256).
    key_id text NOT NULL,
    seal text NOT NULL,
    PRIMARY KEY (workspace_id, pending_id)
);

-- Which pending entry a chained one is; NULL for entries chained before this migration
-- (adding a nullable column rewrites no stored row, so the append-only triggers are not
-- involved). A given entry is chained at most once.
ALTER TABLE audit_events ADD COLUMN entry_id text;
CREATE UNIQUE INDEX audit_events_by_entry ON audit_events (workspace_id, entry_id)
    WHERE entry_id IS NOT NULL;

CREATE FUNCTION audit_pending_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT FROM audit_events
        WHERE workspace_id = OLD.workspace_id AND entry_id = OLD.entry_id
    ) THEN
        RETURN OLD;  -- chained: the chain holds it now
    END IF;
    RAISE EXCEPTION 'audit_pending: % refused (only chained entries leave)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_pending_append_only BEFORE UPDATE OR DELETE ON audit_pending
    FOR EACH ROW EXECUTE FUNCTION audit_pending_refuse_change();
CREATE TRIGGER audit_pending_no_truncate BEFORE TRUNCATE ON audit_pending
    FOR EACH STATEMENT EXECUTE FUNCTION audit_pending_refuse_change();

-- The service adds, reads and removes chained entries; it never updates one (tests/
-- test_service_roles.py holds this table to exactly these privileges).
GRANT SELECT, INSERT, DELETE ON audit_pending TO askvault_policy_service;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA policy TO askvault_policy_service;

-- One round trip for the counters of a decision and its grant: reserves the quantity on the
-- customer's counter, then the visitor's (the one lock order, as grant_store.reserve), takes the
-- customer's back when the visitor's does not fit, and inserts the RESERVED grant only when
-- both fit. Returns whether it fit and the usage of both rows (new when it fit, unchanged
-- otherwise). Runs as its caller, in the caller's transaction.
CREATE FUNCTION reserve_and_grant(
    p_workspace_id text, p_customer_id text, p_contact_id text,
    p_counter text, p_counter_currency text, p_period_start timestamptz,
    p_period_end timestamptz, p_quantity bigint, p_limit bigint,
    p_grant_id text, p_action text, p_grant_customer_id text, p_charge_id text,
    p_subscription_id text,
    p_invoice_id text, p_amount_minor bigint, p_currency text,
    p_charge_created_at timestamptz, p_target_price_id text, p_expires_at timestamptz,
    p_created_at timestamptz, p_cancellation_grace interval,
    OUT fits boolean, OUT customer_used bigint, OUT visitor_used bigint
) LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    fits := false;
    IF p_quantity <= p_limit THEN
        INSERT INTO customer_counters AS c (workspace_id, stripe_customer_id, counter,
                                            currency, period_start, period_end, used)
        VALUES (p_workspace_id, p_customer_id, p_counter, p_counter_currency, p_period_start,
                p_period_end, p_quantity)
        ON CONFLICT (workspace_id, stripe_customer_id, counter, currency, period_start)
        DO UPDATE SET used = c.used + excluded.used
        WHERE c.used + excluded.used <= p_limit
        RETURNING used INTO customer_used;
        IF customer_used IS NOT NULL THEN
            INSERT INTO counters AS c (workspace_id, contact_id, counter, currency,
                                       period_start, period_end, used)
            VALUES (p_workspace_id, p_contact_id, p_counter, p_counter_currency,
                    p_period_start, p_period_end, p_quantity)
            ON CONFLICT (workspace_id, contact_id, counter, currency, period_start)
            DO UPDATE SET used = c.used + excluded.used
            WHERE c.used + excluded.used <= p_limit
            RETURNING used INTO visitor_used;
            IF visitor_used IS NULL THEN
                -- The customer's row is ours until the transaction ends: take it back.
                UPDATE customer_counters SET used = greatest(used - p_quantity, 0)
                WHERE workspace_id = p_workspace_id AND stripe_customer_id = p_customer_id
                  AND counter = p_counter AND currency = p_counter_currency
                  AND period_start = p_period_start;
            ELSE
                fits := true;
            END IF;
        END IF;
    END IF;
    IF NOT fits THEN
        SELECT coalesce((SELECT used FROM customer_counters
                         WHERE workspace_id = p_workspace_id
                           AND stripe_customer_id = p_customer_id AND counter = p_counter
                           AND currency = p_counter_currency
                           AND period_start = p_period_start), 0),
               coalesce((SELECT used FROM counters
                         WHERE workspace_id = p_workspace_id AND contact_id = p_contact_id
                           AND counter = p_counter AND currency = p_counter_currency
                           AND period_start = p_period_start), 0)
        INTO customer_used, visitor_used;
        RETURN;
    END IF;
    INSERT INTO grants (workspace_id, grant_id, contact_id, action, stripe_customer_id,
                        charge_id, subscription_id, invoice_id, amount_minor, currency,
                        charge_created_at, target_price_id, state, expires_at, created_at,
                        cancellation_grace, counter, counter_currency, counter_period_start,
                        quantity)
    VALUES (p_workspace_id, p_grant_id, p_contact_id, p_action, p_grant_customer_id, p_charge_id,
            p_subscription_id, p_invoice_id, p_amount_minor, p_currency, p_charge_created_at,
            p_target_price_id, 'reserved', p_expires_at, p_created_at, p_cancellation_grace,
            p_counter, p_counter_currency, p_period_start, p_quantity);
END
$$;
