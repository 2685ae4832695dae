-- name: insert_dedup_key
-- A concurrent Send with the same key waits here until the first commits (or rolls back).
INSERT INTO dedup_keys (workspace_id, dedup_key, message_id, fingerprint)
VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
RETURNING true;

-- name: get_dedup_key
SELECT message_id, fingerprint FROM dedup_keys WHERE workspace_id = $1 AND dedup_key = $2;

-- name: count_send
-- Counts one send against the last hour's sends of the scope unless $3 are counted already;
-- no row means "limit reached". $4: the time of the send (NULL: now). A slot older than the
-- window is emptied when it is written again (see migration 0007).
INSERT INTO send_windows AS w (workspace_id, scope, head_minute, counts)
SELECT $1, $2, t.minute, array(SELECT (i = t.minute % 61)::int FROM generate_series(0, 60) AS i
                               ORDER BY i)
FROM (SELECT floor(extract(epoch FROM coalesce($4::timestamptz, now())) / 60)::bigint
             AS minute) AS t
ON CONFLICT (workspace_id, scope) DO UPDATE SET
    head_minute = greatest(w.head_minute, excluded.head_minute),
    counts = array(
        SELECT CASE WHEN w.head_minute - (w.head_minute - (k - 1)) % 61
                         > excluded.head_minute - 61
                    THEN c ELSE 0 END
               + (k - 1 = excluded.head_minute % 61)::int
        FROM unnest(w.counts) WITH ORDINALITY AS u(c, k)
        ORDER BY k)
WHERE (SELECT coalesce(sum(c), 0) FROM unnest(w.counts) WITH ORDINALITY AS u(c, k)
       WHERE w.head_minute - (w.head_minute - (k - 1)) % 61 > excluded.head_minute - 61) < $3
RETURNING true;

-- name: send_window_reopens_in
-- Seconds until the scope's window takes one more send under limit $3 (0: it does now):
-- until enough of the oldest counted minutes have left it. $4: the time asked about (NULL:
-- now).
WITH t AS (SELECT extract(epoch FROM coalesce($4::timestamptz, now()))::float8 AS at)
SELECT coalesce(greatest(0, min(s.minute + 61) * 60 - t.at), 0)::float8
FROM t, send_windows w,
LATERAL (
    SELECT minute, sum(c) OVER (ORDER BY minute) AS through, sum(c) OVER () AS total
    FROM (SELECT w.head_minute - (w.head_minute - (k - 1)) % 61 AS minute, c
          FROM unnest(w.counts) WITH ORDINALITY AS u(c, k)) AS slots
    WHERE minute > floor(t.at / 60)::bigint - 61 AND c > 0
) AS s
WHERE w.workspace_id = $1 AND w.scope = $2 AND s.through >= s.total - $3 + 1
GROUP BY t.at;

-- name: delete_old_counters
-- The clock-hour counters of the versions before migration 0007, and windows idle for more
-- than an hour (their next send starts from zero anyway).
WITH old AS (
    DELETE FROM send_counters
    WHERE window_start < (now() AT TIME ZONE 'UTC') - interval '2 hours'
)
DELETE FROM send_windows
WHERE head_minute < floor(extract(epoch FROM now()) / 60)::bigint - 61;

-- name: insert_message
INSERT INTO messages (
    workspace_id, message_id, contact_id, recipient_email, recipient_whatsapp, recipient_name,
    template, variables, attachments, channel, webhook_url, dedup_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
RETURNING *;

-- name: get_message
SELECT * FROM messages WHERE workspace_id = $1 AND message_id = $2;

-- name: list_messages
-- A contact's messages ($2), or the workspace's when $2 is ''; only status $6 unless ''.
SELECT * FROM messages
WHERE workspace_id = $1 AND ($2::text = '' OR contact_id = $2::text)
  AND ($6::text = '' OR status = $6::text)
  AND ($3::timestamptz IS NULL OR (created_at, message_id) < ($3::timestamptz, $4::text))
ORDER BY created_at DESC, message_id DESC
LIMIT $5;

-- name: lock_message
SELECT * FROM messages WHERE workspace_id = $1 AND message_id = $2 FOR UPDATE;

-- name: requeue_for_resend
-- An admin's resend of a dead or failed message: queued, due now, attempts from zero. The
-- provider id is cleared, so a late status of the old attempt touches nothing; last_error
-- stays until the next outcome replaces it.
UPDATE messages SET
    status = 'queued', attempts = 0, next_attempt_at = now(), claim_token = NULL,
    provider_message_id = '', sent_at = NULL, delivered_at = NULL, read_at = NULL,
    handoff_done = '{}', resent_count = resent_count + 1, updated_at = now()
WHERE workspace_id = $1 AND message_id = $2 AND status IN ('dead', 'failed')
RETURNING *;

-- name: claim_due
-- Claims up to $1 due messages for $3: the lease ($2 seconds) becomes their next due time
-- and the claim commits before delivery starts. Polling by due time (not by id) finds rows
-- that a long transaction committed late. Joined: what delivery needs to know, read now.
WITH due AS (
    SELECT workspace_id, message_id FROM messages
    WHERE status = 'queued' AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE messages m SET
        attempts = m.attempts + 1,
        next_attempt_at = now() + make_interval(secs => $2::float8),
        claim_token = gen_random_uuid(),
        claimed_by = $3,
        updated_at = now()
    FROM due
    WHERE m.workspace_id = due.workspace_id AND m.message_id = due.message_id
    RETURNING m.*
)
SELECT c.*,
    s.sender_name AS ws_sender_name,
    s.from_address AS ws_from_address,
    s.reply_to AS ws_reply_to,
    s.whatsapp_phone_number_id AS ws_whatsapp_phone_number_id,
    s.helpdesk_webhook_secret AS ws_helpdesk_webhook_secret,
    wa.opted_in AS whatsapp_opted_in,
    wa.whatsapp_number AS whatsapp_consent_number,
    em.opted_in AS email_opted_in,
    w.last_inbound_at AS last_inbound_at
FROM claimed c
LEFT JOIN workspace_settings s ON s.workspace_id = c.workspace_id
LEFT JOIN channel_consents wa ON wa.workspace_id = c.workspace_id
    AND wa.contact_id = c.contact_id AND wa.channel = 'whatsapp' AND c.contact_id <> ''
LEFT JOIN channel_consents em ON em.workspace_id = c.workspace_id
    AND em.contact_id = c.contact_id AND em.channel = 'email' AND c.contact_id <> ''
LEFT JOIN whatsapp_windows w ON w.workspace_id = c.workspace_id AND w.contact_id = c.contact_id;

-- name: mark_sent
-- Not fenced by the claim: whoever got the provider's acceptance records it at once, which
-- also keeps a message whose lease ran out from being claimed and sent again.
UPDATE messages SET
    status = 'sent', sent_at = now(), provider_message_id = $3, last_error = '',
    claim_token = NULL, updated_at = now()
WHERE workspace_id = $1 AND message_id = $2 AND status = 'queued'
RETURNING true;

-- name: reschedule
UPDATE messages SET
    next_attempt_at = now() + make_interval(secs => $4::float8), last_error = $5,
    claim_token = NULL, updated_at = now()
WHERE workspace_id = $1 AND message_id = $2 AND claim_token = $3 AND status = 'queued'
RETURNING true;

-- name: fall_back_to_email
UPDATE messages SET
    channel = 'email', fallback_from = channel, next_attempt_at = now(), last_error = $4,
    claim_token = NULL, updated_at = now()
WHERE workspace_id = $1 AND message_id = $2 AND claim_token = $3 AND status = 'queued'
RETURNING true;

-- name: bury
UPDATE messages SET
    status = 'dead', last_error = $4, claim_token = NULL, updated_at = now()
WHERE workspace_id = $1 AND message_id = $2 AND claim_token = $3 AND status = 'queued'
RETURNING true;

-- name: mark_handoff_part_done
UPDATE messages SET handoff_done = array_append(handoff_done, $4), updated_at = now()
WHERE workspace_id = $1 AND message_id = $2 AND claim_token = $3 AND status = 'queued'
  AND NOT ($4 = ANY (handoff_done))
RETURNING true;

-- name: messages_by_provider_id
SELECT * FROM messages WHERE provider_message_id = $1 ORDER BY workspace_id FOR UPDATE;

-- name: lock_provider_message_id
-- Serialises a status report and the record of the send it reports on (both take it first):
-- a status finds the send recorded, or the send finds the status parked, never neither.
SELECT pg_advisory_xact_lock(hashtextextended('notifier.provider_message_id:' || $1, 0));

-- name: park_whatsapp_status
-- Kept for the send that is not recorded yet, unless $6 statuses wait already.
INSERT INTO parked_whatsapp_statuses (
    provider_message_id, status, occurred_at, error_code, error_title)
SELECT $1, $2, $3, $4, $5
WHERE (SELECT count(*) FROM parked_whatsapp_statuses) < $6
ON CONFLICT DO NOTHING
RETURNING true;

-- name: take_parked_statuses
-- The statuses that waited for this send, removed; those past their time ($2 s) are not.
DELETE FROM parked_whatsapp_statuses
WHERE provider_message_id = $1 AND parked_at > now() - make_interval(secs => $2::float8)
RETURNING *;

-- name: delete_expired_parked_statuses
DELETE FROM parked_whatsapp_statuses WHERE parked_at <= now() - make_interval(secs => $1::float8);

-- name: set_provider_status
UPDATE messages SET
    status = $3,
    delivered_at = CASE WHEN $3 IN ('delivered', 'read')
                        THEN coalesce(delivered_at, $4) ELSE delivered_at END,
    read_at = CASE WHEN $3 = 'read' THEN coalesce(read_at, $4) ELSE read_at END,
    updated_at = now()
WHERE workspace_id = $1 AND message_id = $2;

-- name: fail_after_sent
UPDATE messages SET status = 'failed', failed_at = $3, last_error = $4, updated_at = now()
WHERE workspace_id = $1 AND message_id = $2;

-- name: requeue_after_sent
-- A provider failure reported after acceptance: queue again ($3 = new channel).
UPDATE messages SET
    status = 'queued', channel = $3,
    fallback_from = CASE WHEN $3 <> channel THEN channel ELSE fallback_from END,
    next_attempt_at = now() + make_interval(secs => $4::float8), last_error = $5,
    failed_at = $6, updated_at = now()
WHERE workspace_id = $1 AND message_id = $2;

-- name: outbox_ages
-- Seconds since the oldest message of each channel still waiting to be sent was created (the
-- outbox age metric). Only queued rows are read, through their partial index (messages_due),
-- so the cost is the backlog's, not the table's.
SELECT channel, extract(epoch FROM now() - min(created_at))::float8 AS age_seconds
FROM messages
WHERE status = 'queued'
GROUP BY channel;
