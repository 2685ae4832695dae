-- Policy's audit log SQL: recording entries (audit_pending), linking them into the hash chain
-- (audit_events, audit_heads) and reading the chain. audit_log.py runs them by name.

-- name: record
-- Records entries unchained, in the caller's transaction; no lock on the chain head.
INSERT INTO audit_pending (workspace_id, entry_id, occurred_at, actor_kind, actor_id, kind,
                           contact_id, stripe_customer_id, action, amount_minor, currency,
                           outcome, subject_id, confirmation, key_id, seal)
SELECT $1, e.entry_id, e.occurred_at, e.actor_kind, e.actor_id, e.kind, e.contact_id,
       e.stripe_customer_id, e.action, e.amount_minor, e.currency, e.outcome, e.subject_id,
       e.confirmation::jsonb, e.key_id, e.seal
FROM unnest($2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::bigint[], $11::text[], $12::text[], $13::text[],
            $14::text[], $15::text[], $16::text[])
     AS e (entry_id, occurred_at, actor_kind, actor_id, kind, contact_id, stripe_customer_id,
           action, amount_minor, currency, outcome, subject_id, confirmation, key_id, seal);

-- name: record_and_save
-- record, and the call's saved response (runtime.idempotency's row), in one round trip.
WITH recorded AS (
    INSERT INTO audit_pending (workspace_id, entry_id, occurred_at, actor_kind, actor_id, kind,
                               contact_id, stripe_customer_id, action, amount_minor, currency,
                               outcome, subject_id, confirmation, key_id, seal)
    SELECT $1, e.entry_id, e.occurred_at, e.actor_kind, e.actor_id, e.kind, e.contact_id,
           e.stripe_customer_id, e.action, e.amount_minor, e.currency, e.outcome,
           e.subject_id, e.confirmation::jsonb, e.key_id, e.seal
    FROM unnest($2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::text[], $10::bigint[], $11::text[], $12::text[],
                $13::text[], $14::text[], $15::text[], $16::text[])
         AS e (entry_id, occurred_at, actor_kind, actor_id, kind, contact_id,
               stripe_customer_id, action, amount_minor, currency, outcome, subject_id,
               confirmation, key_id, seal)
)
UPDATE idempotency_keys SET response = $18
WHERE workspace_id = $1 AND idempotency_key = $17;

-- name: pending_workspaces
SELECT DISTINCT workspace_id FROM audit_pending LIMIT $1;

-- name: ensure_audit_head
INSERT INTO audit_heads (workspace_id, last_sequence, last_hash)
VALUES ($1, 0, '')
ON CONFLICT (workspace_id) DO NOTHING;

-- name: claim_audit_head
-- The chainer's claim on a workspace: a head another chainer holds is skipped.
SELECT last_sequence, last_hash FROM audit_heads WHERE workspace_id = $1
FOR UPDATE SKIP LOCKED;

-- name: lock_audit_head
-- The same claim, waiting for the chainer that holds it ("chain now").
SELECT last_sequence, last_hash FROM audit_heads WHERE workspace_id = $1 FOR UPDATE;

-- name: pending_page
-- Recorded entries in recording order, each with whether its entry id is already chained.
SELECT p.*, (e.entry_id IS NOT NULL) AS chained
FROM audit_pending p
LEFT JOIN audit_events e ON e.workspace_id = p.workspace_id AND e.entry_id = p.entry_id
WHERE p.workspace_id = $1 AND p.pending_id > $2
ORDER BY p.pending_id
LIMIT $3;

-- name: append_audit
WITH appended AS (
    INSERT INTO audit_events (workspace_id, sequence, occurred_at, actor_kind, actor_id, kind,
                              contact_id, stripe_customer_id, action, amount_minor, currency,
                              outcome, subject_id, previous_hash, hash, confirmation, key_id,
                              entry_id)
    SELECT $1, e.sequence, e.occurred_at, e.actor_kind, e.actor_id, e.kind, e.contact_id,
           e.stripe_customer_id, e.action, e.amount_minor, e.currency, e.outcome, e.subject_id,
           e.previous_hash, e.hash, e.confirmation::jsonb, e.key_id, e.entry_id
    FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::text[], $10::bigint[], $11::text[], $12::text[],
                $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[])
         AS e (sequence, occurred_at, actor_kind, actor_id, kind, contact_id,
               stripe_customer_id, action, amount_minor, currency, outcome, subject_id,
               previous_hash, hash, confirmation, key_id, entry_id)
)
UPDATE audit_heads SET last_sequence = $19, last_hash = $20 WHERE workspace_id = $1;

-- name: remove_pending
-- Only chained entries can go (audit_pending's trigger refuses the others).
DELETE FROM audit_pending WHERE workspace_id = $1 AND pending_id = any($2::bigint[]);

-- name: get_audit_head
SELECT last_sequence, last_hash FROM audit_heads WHERE workspace_id = $1;

-- name: audit_heads_page
SELECT workspace_id, last_sequence, last_hash FROM audit_heads
WHERE workspace_id > $1 AND last_sequence > 0
ORDER BY workspace_id
LIMIT $2;

-- name: list_audit_events
SELECT * FROM audit_events
WHERE workspace_id = $1
  AND ($2 = '' OR contact_id = $2)
  AND ($3 = '' OR action = $3)
  AND ($4::timestamptz IS NULL OR occurred_at >= $4)
  AND ($5::timestamptz IS NULL OR occurred_at < $5)
  AND ($8 = '' OR stripe_customer_id = $8)
  AND ($9 = '' OR actor_id = $9)
  AND sequence > $6
ORDER BY sequence
LIMIT $7;

-- name: audit_chain_page
SELECT * FROM audit_events
WHERE workspace_id = $1 AND sequence > $2
ORDER BY sequence
LIMIT $3;

-- name: commit_grant_record_and_save
-- A grant -> COMMITTED (the caller holds its row), its entries recorded and the call's
-- response saved, in one round trip.
WITH committed AS (
    UPDATE grants SET state = 'committed', stripe_object_id = $20, resolved_at = $21
    WHERE workspace_id = $1 AND grant_id = $19
), recorded AS (
    INSERT INTO audit_pending (workspace_id, entry_id, occurred_at, actor_kind, actor_id, kind,
                               contact_id, stripe_customer_id, action, amount_minor, currency,
                               outcome, subject_id, confirmation, key_id, seal)
    SELECT $1, e.entry_id, e.occurred_at, e.actor_kind, e.actor_id, e.kind, e.contact_id,
           e.stripe_customer_id, e.action, e.amount_minor, e.currency, e.outcome,
           e.subject_id, e.confirmation::jsonb, e.key_id, e.seal
    FROM unnest($2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::text[], $10::bigint[], $11::text[], $12::text[],
                $13::text[], $14::text[], $15::text[], $16::text[])
         AS e (entry_id, occurred_at, actor_kind, actor_id, kind, contact_id,
               stripe_customer_id, action, amount_minor, currency, outcome, subject_id,
               confirmation, key_id, seal)
)
UPDATE idempotency_keys SET response = $18
WHERE workspace_id = $1 AND idempotency_key = $17;
