-- name: claim_conversation
-- Creates the conversation, or marks it active; the first verified contact ($4 non-empty)
-- becomes its owner and stays it. Returns the owner ('' while nobody verified wrote).
INSERT INTO conversations (workspace_id, conversation_id, channel, contact_id)
VALUES ($1, $2, $3, $4)
ON CONFLICT (workspace_id, conversation_id)
DO UPDATE SET updated_at = now(),
              contact_id = CASE WHEN conversations.contact_id = '' THEN EXCLUDED.contact_id
                                ELSE conversations.contact_id END
RETURNING contact_id;

-- name: append_message
INSERT INTO messages (workspace_id, conversation_id, author, text, intent, verified)
VALUES ($1, $2, $3, $4, $5, $6);

-- name: recent_messages
SELECT author, text, intent, created_at, verified FROM (
    SELECT author, text, intent, created_at, verified, sequence FROM messages
    WHERE workspace_id = $1 AND conversation_id = $2
    ORDER BY sequence DESC LIMIT $3
) recent ORDER BY sequence;

-- name: supersede_pending
UPDATE proposals SET state = 'superseded'
WHERE workspace_id = $1 AND conversation_id = $2 AND state IN ('pending');

-- name: insert_proposal
INSERT INTO proposals (workspace_id, conversation_id, proposal_id, contact_id, kind, details,
                       summary, expires_at, terms_hash, confirm_token_sha256)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10)
RETURNING created_at;

-- name: proposal_by_id
SELECT * FROM proposals
WHERE workspace_id = $1 AND conversation_id = $2 AND proposal_id = $3
FOR UPDATE;

-- name: proposal_by_confirm_token
SELECT * FROM proposals WHERE confirm_token_sha256 = $1 FOR UPDATE;

-- name: mark_person_confirmed
UPDATE proposals SET person_confirmed_at = coalesce(person_confirmed_at, now()),
                     person_confirmed_channel = $4
WHERE workspace_id = $1 AND conversation_id = $2 AND proposal_id = $3;

-- name: newest_proposal
SELECT * FROM proposals
WHERE workspace_id = $1 AND conversation_id = $2
ORDER BY created_at DESC LIMIT 1
FOR UPDATE;

-- name: set_proposal_state
UPDATE proposals SET state = $4, result = COALESCE($5::jsonb, result)
WHERE workspace_id = $1 AND conversation_id = $2 AND proposal_id = $3;

-- name: link_whatsapp
INSERT INTO whatsapp_links (workspace_id, whatsapp_number, contact_id, user_id, email,
                            credential)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (workspace_id, whatsapp_number)
DO UPDATE SET contact_id = EXCLUDED.contact_id, user_id = EXCLUDED.user_id,
              email = EXCLUDED.email, credential = EXCLUDED.credential;

-- name: find_whatsapp_link
SELECT * FROM whatsapp_links WHERE workspace_id = $1 AND whatsapp_number = $2;

-- name: lock_unverified_conversation
-- Takes the unverified hand-offs of one conversation until the transaction ends (false when
-- another transaction holds them).
SELECT pg_try_advisory_xact_lock(hashtextextended('edge:unverified:' || $1 || '/' || $2, 0));

-- name: newest_unverified_escalation
SELECT escalation_id FROM unverified_escalations
WHERE workspace_id = $1 AND conversation_id = $2
ORDER BY opened_at DESC LIMIT 1;

-- name: lock_unverified_emails
-- Serializes the counting of a workspace's unverified hand-off emails until the transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended('edge:unverified-emails:' || $1, 0));

-- name: count_unverified_emails
SELECT count(*) FROM unverified_escalations
WHERE workspace_id = $1 AND emailed_at > now() - make_interval(secs => $2);

-- name: insert_unverified_escalation
INSERT INTO unverified_escalations (workspace_id, conversation_id, escalation_id, emailed_at)
VALUES ($1, $2, $3, CASE WHEN $4::boolean THEN now() END)
ON CONFLICT DO NOTHING;
