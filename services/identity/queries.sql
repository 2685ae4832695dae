-- Identity's SQL. Each statement is named; storage.py runs them by name.

-- name: ensure_workspace
INSERT INTO workspaces (workspace_id) VALUES ($1) ON CONFLICT DO NOTHING;

-- name: insert_secret
INSERT INTO hmac_secrets (workspace_id, key_id, ciphertext, purpose, purpose_sealed)
VALUES ($1, $2, $3, $4, true)
ON CONFLICT DO NOTHING
RETURNING key_id, created_at, retired_at, purpose;

-- name: retire_secret
UPDATE hmac_secrets SET retired_at = coalesce(retired_at, now())
WHERE workspace_id = $1 AND key_id = $2
RETURNING key_id, created_at, retired_at, purpose;

-- name: list_secrets
SELECT key_id, created_at, retired_at, purpose FROM hmac_secrets
WHERE workspace_id = $1 ORDER BY created_at, key_id;

-- name: workspace_active_secrets
-- One row per active secret of the purpose, or one row with a null key id for a workspace
-- without any; no row at all for an unknown workspace. Carries the workspace's settings.
SELECT s.key_id, s.ciphertext, s.purpose_sealed, w.customer_metadata_key
FROM workspaces w
LEFT JOIN hmac_secrets s
    ON s.workspace_id = w.workspace_id AND s.retired_at IS NULL AND s.purpose = $2
WHERE w.workspace_id = $1;

-- name: get_workspace_settings
SELECT customer_metadata_key FROM workspaces WHERE workspace_id = $1;

-- name: update_workspace_settings
UPDATE workspaces SET customer_metadata_key = $2
WHERE workspace_id = $1
RETURNING customer_metadata_key;

-- name: find_contact_by_user_id
SELECT * FROM contacts WHERE workspace_id = $1 AND user_id = $2 AND user_id <> '';

-- name: find_contact_by_email_only
SELECT * FROM contacts WHERE workspace_id = $1 AND email_normalized = $2 AND user_id = '';

-- name: upsert_contact_by_user_id
-- $4/$5: the signed email (empty when none was signed); $6: the claimed email. Only a signed
-- email replaces the stored email; the claimed email is display text and may change.
INSERT INTO contacts (workspace_id, contact_id, user_id, email, email_normalized, claimed_email)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (workspace_id, user_id) WHERE user_id <> ''
DO UPDATE SET
    email = CASE WHEN excluded.email <> '' THEN excluded.email ELSE contacts.email END,
    email_normalized = CASE WHEN excluded.email <> '' THEN excluded.email_normalized
                            ELSE contacts.email_normalized END,
    claimed_email = CASE WHEN excluded.claimed_email <> '' THEN excluded.claimed_email
                         ELSE contacts.claimed_email END,
    updated_at = now()
RETURNING *;

-- name: upsert_contact_by_email
-- The email is the user_hash input, so it is signed.
INSERT INTO contacts (workspace_id, contact_id, user_id, email, email_normalized)
VALUES ($1, $2, '', $3, $4)
ON CONFLICT (workspace_id, email_normalized) WHERE user_id = ''
DO UPDATE SET email = excluded.email, updated_at = now()
RETURNING *;

-- name: get_contact
SELECT * FROM contacts WHERE workspace_id = $1 AND contact_id = $2;

-- name: get_contact_for_update
SELECT * FROM contacts WHERE workspace_id = $1 AND contact_id = $2 FOR UPDATE;

-- name: contacts_by_customer_for_update
SELECT * FROM contacts WHERE workspace_id = $1 AND stripe_customer_id = $2
ORDER BY created_at, contact_id FOR UPDATE;

-- name: contacts_by_customer
SELECT * FROM contacts WHERE workspace_id = $1 AND stripe_customer_id = $2
ORDER BY created_at, contact_id;

-- name: link_customer
UPDATE contacts SET stripe_customer_id = $3, binding_source = $4, updated_at = now()
WHERE workspace_id = $1 AND contact_id = $2
RETURNING *;

-- name: legacy_bindings
-- $2/$3: the cursor (created_at, contact_id) of the last contact of the previous page, or
-- nulls for the first page.
SELECT * FROM contacts
WHERE workspace_id = $1 AND binding_source = 'legacy_unsigned'
  AND ($2::timestamptz IS NULL OR (created_at, contact_id) > ($2, $3))
ORDER BY created_at, contact_id
LIMIT $4;

-- name: save_tags
UPDATE contacts SET
    customer_status = $3, customer_status_at = $4,
    plan_tier = $5, plan_tier_at = $6,
    trial_ends = $7, trial_ends_at = $8,
    updated_at = now()
WHERE workspace_id = $1 AND contact_id = $2
RETURNING *;
