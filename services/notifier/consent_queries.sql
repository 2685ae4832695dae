-- name: get_consents
SELECT * FROM channel_consents WHERE workspace_id = $1 AND contact_id = $2 ORDER BY channel;

-- name: upsert_consent
-- The newest consent wins: one that occurred before the stored one changes nothing.
INSERT INTO channel_consents AS c (
    workspace_id, contact_id, channel, opted_in, source, occurred_at, whatsapp_number)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (workspace_id, contact_id, channel) DO UPDATE SET
    opted_in = excluded.opted_in,
    source = excluded.source,
    occurred_at = excluded.occurred_at,
    whatsapp_number = CASE WHEN excluded.whatsapp_number <> '' THEN excluded.whatsapp_number
                           ELSE c.whatsapp_number END,
    recorded_at = now()
WHERE excluded.occurred_at >= c.occurred_at
RETURNING *;

-- name: get_consent
SELECT * FROM channel_consents WHERE workspace_id = $1 AND contact_id = $2 AND channel = $3;

-- name: insert_consent_history
INSERT INTO channel_consent_history (
    workspace_id, contact_id, channel, opted_in, source, occurred_at, whatsapp_number)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: insert_inbound
INSERT INTO whatsapp_inbound (workspace_id, provider_message_id, contact_id, whatsapp_number,
                              received_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT DO NOTHING
RETURNING true;

-- name: open_window
INSERT INTO whatsapp_windows AS w (workspace_id, contact_id, last_inbound_at)
VALUES ($1, $2, $3)
ON CONFLICT (workspace_id, contact_id) DO UPDATE
SET last_inbound_at = greatest(w.last_inbound_at, excluded.last_inbound_at)
RETURNING last_inbound_at;

-- name: get_window
SELECT last_inbound_at FROM whatsapp_windows WHERE workspace_id = $1 AND contact_id = $2;
