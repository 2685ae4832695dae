-- The failed-payment message of each invoice as first decided: who is told and in what
-- words. Committed before the notifier is asked, so that every later report of the invoice's
-- failure (a redelivery, the next failed attempt, the same event processed again after a
-- crash rolled its batch back) sends exactly these messages again, under the same dedup keys
-- (the notifier answers with the message it already has), instead of deciding again: the
-- customer is told once per failed invoice, even when the Stripe customer who stood in for a
-- contact has become one since.
CREATE TABLE payment_failed_notices (
    workspace_id text NOT NULL,
    invoice_id text NOT NULL,
    -- askvault.notifier.v1.Recipient fields, one object per recipient:
    -- [{"contact_id", "email", "whatsapp_number", "name"}].
    recipients jsonb NOT NULL,
    -- The payment_failed template's variables.
    variables jsonb NOT NULL,
    decided_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, invoice_id)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON payment_failed_notices TO askvault_billing_gateway_service;
