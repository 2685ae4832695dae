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

-- name: claim_conversation_with_visitor_line
-- claim_conversation and append_message of the visitor's line in one statement: the line is
-- stored only when the conversation is unowned or already this contact's ($4; '' for a
-- visitor nobody verified). Returns whether it was; false (nothing changed) when the
-- conversation belongs to another contact.
WITH claimed AS (
    INSERT INTO conversations (workspace_id, conversation_id, channel, contact_id)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (workspace_id, conversation_id)
    DO UPDATE SET updated_at = now(),
                  contact_id = CASE WHEN conversations.contact_id = '' THEN EXCLUDED.contact_id
                                    ELSE conversations.contact_id END
    WHERE conversations.contact_id IN ('', EXCLUDED.contact_id)
    RETURNING workspace_id, conversation_id
), appended AS (
    INSERT INTO messages (workspace_id, conversation_id, author, text, intent, verified)
    SELECT workspace_id, conversation_id, 'visitor', $5::text, $6::text, $7::boolean
    FROM claimed
)
SELECT EXISTS (SELECT 1 FROM claimed) AS claimed,
       -- Whether the contact has an escalation due for a look (escalation_notices): a
       -- contact with none costs policy nothing.
       $4::text <> '' AND EXISTS (
           SELECT 1 FROM contact_escalations
           WHERE workspace_id = $1 AND contact_id = $4::text AND reported_at IS NULL
             AND next_check_at <= now()) AS notices_due;

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
-- A quote the person already confirmed on the confirmation page is not superseded: it waits
-- for the tool call that runs it.
UPDATE proposals SET state = 'superseded'
WHERE workspace_id = $1 AND conversation_id = $2 AND state IN ('pending')
  AND person_confirmed_at IS NULL;

-- name: insert_proposal
INSERT INTO proposals (workspace_id, conversation_id, proposal_id, contact_id, kind, details,
                       summary, expires_at, terms_hash, confirm_token_sha256)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10)
RETURNING created_at;

-- name: proposal_by_id
SELECT * FROM proposals
WHERE workspace_id = $1 AND conversation_id = $2 AND proposal_id = $3
FOR UPDATE;

-- name: newest_person_confirmed
SELECT * FROM proposals
WHERE workspace_id = $1 AND conversation_id = $2 AND kind = $3 AND state = 'pending'
  AND person_confirmed_at IS NOT NULL
ORDER BY created_at DESC LIMIT 1;

-- name: proposal_by_confirm_token
SELECT * FROM proposals WHERE confirm_token_sha256 = $1 FOR UPDATE;

-- name: set_confirm_token
UPDATE proposals SET confirm_token_sha256 = $4
WHERE workspace_id = $1 AND conversation_id = $2 AND proposal_id = $3
  AND state = 'pending' AND terms_hash <> '' AND expires_at > now()
RETURNING proposal_id;

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

-- name: find_whatsapp_link
-- Only proven links: a number linked before proof existed is not the contact's.
SELECT * FROM whatsapp_links
WHERE workspace_id = $1 AND whatsapp_number = $2 AND proven_at IS NOT NULL;

-- name: lock_whatsapp_number
SELECT pg_advisory_xact_lock(hashtext('edge/whatsapp-link/' || $1 || '/' || $2));

-- name: lock_whatsapp_challenges_of_contact
SELECT pg_advisory_xact_lock(hashtext('edge/whatsapp-challenges/' || $1 || '/' || $2));

-- name: count_whatsapp_challenges_since
SELECT count(*) FROM whatsapp_link_challenges
WHERE workspace_id = $1 AND contact_id = $2 AND created_at > $3;

-- name: supersede_contact_whatsapp_challenges
UPDATE whatsapp_link_challenges SET state = 'superseded', finished_at = $4
WHERE workspace_id = $1 AND contact_id = $2 AND whatsapp_number = $3 AND state = 'pending';

-- name: insert_whatsapp_challenge
INSERT INTO whatsapp_link_challenges (workspace_id, challenge_id, whatsapp_number, contact_id,
                                      user_id, email, credential, code_key_id, code_hmac,
                                      created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11);

-- name: pending_whatsapp_challenges
SELECT * FROM whatsapp_link_challenges
WHERE workspace_id = $1 AND whatsapp_number = $2 AND state = 'pending'
ORDER BY created_at
FOR UPDATE;

-- name: finish_whatsapp_challenges
UPDATE whatsapp_link_challenges SET state = $3, finished_at = $4
WHERE workspace_id = $1 AND challenge_id = ANY($2::text[]) AND state = 'pending';

-- name: count_wrong_whatsapp_codes
UPDATE whatsapp_link_challenges SET wrong_codes = wrong_codes + 1
WHERE workspace_id = $1 AND challenge_id = ANY($2::text[]) AND state = 'pending';

-- name: supersede_number_whatsapp_challenges
UPDATE whatsapp_link_challenges SET state = 'superseded', finished_at = $3
WHERE workspace_id = $1 AND whatsapp_number = $2 AND state = 'pending';

-- name: claim_whatsapp_link_message
INSERT INTO whatsapp_link_messages (workspace_id, provider_message_id, whatsapp_number)
VALUES ($1, $2, $3)
ON CONFLICT (workspace_id, provider_message_id) DO NOTHING
RETURNING provider_message_id;

-- name: get_whatsapp_link_message
SELECT * FROM whatsapp_link_messages WHERE workspace_id = $1 AND provider_message_id = $2;

-- name: set_whatsapp_link_message_outcome
UPDATE whatsapp_link_messages SET outcome = $3, challenge_id = $4, ended_contact_id = $5
WHERE workspace_id = $1 AND provider_message_id = $2;

-- name: current_whatsapp_link
-- The number's row, proven or not (a link made before proof existed is ended by a proof).
SELECT * FROM whatsapp_links WHERE workspace_id = $1 AND whatsapp_number = $2 FOR UPDATE;

-- name: end_whatsapp_link
DELETE FROM whatsapp_links WHERE workspace_id = $1 AND whatsapp_number = $2;

-- name: insert_proven_whatsapp_link
-- No ON CONFLICT: a number's earlier link is ended explicitly (end_whatsapp_link) first.
INSERT INTO whatsapp_links (workspace_id, whatsapp_number, contact_id, user_id, email,
                            credential, proven_at, challenge_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8);

-- name: record_whatsapp_link_event
INSERT INTO whatsapp_link_events (workspace_id, whatsapp_number, contact_id, event,
                                  challenge_id, other_contact_id)
VALUES ($1, $2, $3, $4, $5, $6);

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

-- ----- escalation notices (escalation_notices.py) -----

-- name: remember_escalation
INSERT INTO contact_escalations (workspace_id, contact_id, escalation_id, conversation_id)
VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING;

-- name: claim_escalation_checks
-- The contact's escalations due for a look (at most $4), each put off by $3 seconds at once,
-- so that concurrent turns do not ask policy about the same one.
UPDATE contact_escalations e SET next_check_at = now() + make_interval(secs => $3::float8)
FROM (
    SELECT escalation_id FROM contact_escalations
    WHERE workspace_id = $1 AND contact_id = $2 AND reported_at IS NULL
      AND next_check_at <= now()
    ORDER BY opened_at
    LIMIT $4
    FOR UPDATE SKIP LOCKED
) due
WHERE e.workspace_id = $1 AND e.contact_id = $2 AND e.escalation_id = due.escalation_id
RETURNING e.escalation_id;

-- name: mark_escalation_reported
-- True for the one turn that tells the contact.
UPDATE contact_escalations SET reported_at = now(), final_state = $4
WHERE workspace_id = $1 AND contact_id = $2 AND escalation_id = $3 AND reported_at IS NULL
RETURNING true;

-- ----- outcomes (outcomes_api.py) -----

-- name: append_bot_line_with_outcome
-- The bot's (redacted) line ($3, intent $4) and the turn's part in how its conversation went,
-- in one statement: for intent $5 ('' continues the conversation's latest billing intent: a
-- yes, a no, "talk to a human"; nothing is recorded when it has none). Resolution and hand-off
-- keep their first time; an escalated refund decision stays escalated.
WITH appended AS (
    INSERT INTO messages (workspace_id, conversation_id, author, text, intent, verified)
    VALUES ($1, $2, 'bot', $3, $4, NULL)
), target AS (
    SELECT CASE WHEN $5::text <> '' THEN $5::text ELSE (
        SELECT intent FROM conversation_outcomes
        WHERE workspace_id = $1 AND conversation_id = $2
        ORDER BY last_turn_at DESC LIMIT 1) END AS intent
)
INSERT INTO conversation_outcomes AS o (
    workspace_id, conversation_id, intent, started_at, resolved_at, handed_off_at,
    refund_decision)
SELECT $1, $2, target.intent,
       coalesce((SELECT created_at FROM conversations
                 WHERE workspace_id = $1 AND conversation_id = $2), now()),
       CASE WHEN $6::boolean THEN clock_timestamp() END,
       CASE WHEN $7::boolean THEN clock_timestamp() END,
       CASE WHEN target.intent IN ('refund', 'duplicate_charge') THEN $8::text ELSE '' END
FROM target WHERE target.intent IS NOT NULL
ON CONFLICT (workspace_id, conversation_id, intent) DO UPDATE SET
    last_turn_at = clock_timestamp(),
    resolved_at = coalesce(o.resolved_at, excluded.resolved_at),
    handed_off_at = coalesce(o.handed_off_at, excluded.handed_off_at),
    refund_decision = CASE WHEN excluded.refund_decision = '' OR o.refund_decision = 'escalated'
                           THEN o.refund_decision ELSE excluded.refund_decision END;

-- name: outcomes_report
-- Per day (UTC) and intent, per day, per intent and overall (the grouping column says which
-- rows are totals), for conversations that began at or after $2.
WITH rows AS (
    SELECT (started_at AT TIME ZONE 'UTC')::date AS day, intent, conversation_id,
           resolved_at IS NOT NULL AND handed_off_at IS NULL AS resolved,
           handed_off_at IS NOT NULL AS handed_off, refund_decision,
           extract(epoch FROM resolved_at - started_at)::float8 AS seconds
    FROM conversation_outcomes
    WHERE workspace_id = $1 AND started_at >= $2
)
SELECT day, intent, grouping(day) AS all_days, grouping(intent) AS all_intents,
       count(DISTINCT conversation_id) AS conversations,
       count(DISTINCT conversation_id) FILTER (WHERE resolved) AS resolved,
       count(DISTINCT conversation_id) FILTER (WHERE handed_off) AS handed_off,
       count(DISTINCT conversation_id) FILTER (WHERE refund_decision = 'automatic')
           AS refunds_automatic,
       count(DISTINCT conversation_id) FILTER (WHERE refund_decision = 'escalated')
           AS refunds_escalated,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FILTER (WHERE resolved)
           AS median_seconds,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) FILTER (WHERE resolved)
           AS p90_seconds
FROM rows
GROUP BY GROUPING SETS ((day, intent), (day), (intent), ())
ORDER BY day NULLS LAST, intent NULLS FIRST;

-- name: hit_rate_limit
-- Counts one hit of key $1 unless $2 hits are counted in its window ($3 seconds from its first
-- hit); no row means "over the limit". A window that ended starts again at this hit. The row
-- lock serialises concurrent hits of one key across replicas. $4: the hit's time (NULL: now).
WITH t AS (SELECT coalesce($4::timestamptz, now()) AS at)
INSERT INTO rate_limit_windows AS w (key, window_start, hits)
SELECT $1, t.at, 1 FROM t
ON CONFLICT (key) DO UPDATE SET
    window_start = CASE WHEN w.window_start <= excluded.window_start
                                              - make_interval(secs => $3::float8)
                        THEN excluded.window_start ELSE w.window_start END,
    hits = CASE WHEN w.window_start <= excluded.window_start - make_interval(secs => $3::float8)
                THEN 1 ELSE w.hits + 1 END
WHERE w.window_start <= excluded.window_start - make_interval(secs => $3::float8)
   OR w.hits < $2
RETURNING true;

-- name: delete_ended_rate_limit_windows
DELETE FROM rate_limit_windows WHERE window_start <= now() - make_interval(secs => $1::float8);

-- name: claim_chat_turn_key
-- Claims the key for this turn; a claim of the same request left unanswered for $4 seconds
-- (its turn died) is taken over. No row: the key is taken (read it with get_chat_turn_key).
INSERT INTO chat_turn_keys AS k (workspace_id, idempotency_key, fingerprint)
VALUES ($1, $2, $3)
ON CONFLICT (workspace_id, idempotency_key) DO UPDATE SET claimed_at = now()
WHERE k.answer IS NULL AND k.fingerprint = excluded.fingerprint
  AND k.claimed_at <= now() - make_interval(secs => $4::float8)
RETURNING true;

-- name: get_chat_turn_key
SELECT fingerprint, contact_id, answer FROM chat_turn_keys
WHERE workspace_id = $1 AND idempotency_key = $2;

-- name: save_chat_turn_answer
UPDATE chat_turn_keys SET answer = $3, contact_id = $4, answered_at = now()
WHERE workspace_id = $1 AND idempotency_key = $2 AND answer IS NULL;

-- name: release_chat_turn_key
-- A turn answered with an error keeps no answer: the retry runs again.
DELETE FROM chat_turn_keys WHERE workspace_id = $1 AND idempotency_key = $2 AND answer IS NULL;

-- name: delete_old_chat_turn_keys
DELETE FROM chat_turn_keys WHERE claimed_at <= now() - make_interval(secs => $1::float8);
