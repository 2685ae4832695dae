-- The secret that signs a workspace's helpdesk hand-offs (Standard Webhooks), sealed with
-- SECRETS_ENCRYPTION_KEYS and bound to the workspace (runtime/secretbox.py); NULL: none set.
ALTER TABLE workspace_settings ADD COLUMN helpdesk_webhook_secret bytea;
