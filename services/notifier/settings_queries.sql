-- name: get_workspace_settings
SELECT * FROM workspace_settings WHERE workspace_id = $1;

-- name: upsert_workspace_settings
INSERT INTO workspace_settings (
    workspace_id, sender_name, from_address, reply_to, agent_inbox, helpdesk_webhook_url,
    contact_hourly_limit, workspace_hourly_limit, whatsapp_phone_number_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (workspace_id) DO UPDATE SET
    sender_name = excluded.sender_name,
    from_address = excluded.from_address,
    reply_to = excluded.reply_to,
    agent_inbox = excluded.agent_inbox,
    helpdesk_webhook_url = excluded.helpdesk_webhook_url,
    contact_hourly_limit = excluded.contact_hourly_limit,
    workspace_hourly_limit = excluded.workspace_hourly_limit,
    whatsapp_phone_number_id = excluded.whatsapp_phone_number_id,
    updated_at = now()
RETURNING *;

-- name: set_helpdesk_webhook_secret
-- $2 is the sealed secret, NULL to remove it; the other settings keep their values.
INSERT INTO workspace_settings (workspace_id, helpdesk_webhook_secret)
VALUES ($1, $2)
ON CONFLICT (workspace_id) DO UPDATE SET
    helpdesk_webhook_secret = excluded.helpdesk_webhook_secret,
    updated_at = now()
RETURNING *;
