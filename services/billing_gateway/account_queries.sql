-- name: upsert_account
INSERT INTO accounts (workspace_id, secret_key_ciphertext, connected_account_id, livemode,
                      webhook_endpoint_id, webhook_url, enabled_events)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (workspace_id) DO UPDATE
SET secret_key_ciphertext = EXCLUDED.secret_key_ciphertext,
    connected_account_id = EXCLUDED.connected_account_id,
    livemode = EXCLUDED.livemode,
    webhook_endpoint_id = EXCLUDED.webhook_endpoint_id,
    webhook_url = EXCLUDED.webhook_url,
    enabled_events = EXCLUDED.enabled_events,
    updated_at = now()
RETURNING *;

-- name: get_account
SELECT * FROM accounts WHERE workspace_id = $1;

-- name: insert_webhook_secret
-- A secret once retired stays retired: storing it again never brings it back.
INSERT INTO webhook_secrets (workspace_id, secret_id, ciphertext)
VALUES ($1, $2, $3)
ON CONFLICT (workspace_id, secret_id) DO UPDATE SET ciphertext = EXCLUDED.ciphertext;

-- name: unretired_webhook_secrets
-- Secrets not retired at $2 (those with a retirement still ahead included, with its time).
SELECT secret_id, ciphertext, retired_at FROM webhook_secrets
WHERE workspace_id = $1 AND (retired_at IS NULL OR retired_at > $2)
ORDER BY created_at DESC, secret_id;

-- name: webhook_secret_metadata
SELECT secret_id, created_at, retired_at FROM webhook_secrets
WHERE workspace_id = $1
ORDER BY created_at DESC, secret_id;

-- name: retire_webhook_secret
-- Only ever brought forward: an earlier retirement already set is kept.
UPDATE webhook_secrets
SET retired_at = LEAST(COALESCE(retired_at, $3), $3)
WHERE workspace_id = $1 AND secret_id = $2
RETURNING secret_id, created_at, retired_at;
