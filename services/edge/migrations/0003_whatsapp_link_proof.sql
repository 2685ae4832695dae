-- A WhatsApp number is linked to a contact only after its holder proved it: the chat shows a
-- one-time code, and a signed inbound WhatsApp message from that number must carry it.

-- When and by which challenge the link was proven. Links made before this migration were
-- never proven: proven_at stays NULL and the edge treats them as not linked (no turns from
-- the number, no replies to it) until the contact proves the number.
ALTER TABLE whatsapp_links ADD COLUMN proven_at timestamptz;
ALTER TABLE whatsapp_links ADD COLUMN challenge_id text NOT NULL DEFAULT '';

-- One request to link a number: the code's HMAC (never the code), its expiry and the wrong
-- codes received from the number so far.
CREATE TABLE whatsapp_link_challenges (
    workspace_id text NOT NULL,
    challenge_id text NOT NULL,
    whatsapp_number text NOT NULL,
    contact_id text NOT NULL,
    user_id text NOT NULL DEFAULT '',
    email text NOT NULL DEFAULT '',
    -- The visitor's user_hash sealed for "<workspace>/whatsapp/<number>", moved into
    -- whatsapp_links once the number is proven.
    credential bytea NOT NULL,
    -- Which SECRETS_ENCRYPTION_KEYS key the code's HMAC key was derived from, and the HMAC
    -- of "<workspace>/<challenge>/<number>/<code>".
    code_key_id text NOT NULL,
    code_hmac bytea NOT NULL,
    wrong_codes integer NOT NULL DEFAULT 0,
    -- pending, proven, void (too many wrong codes), expired, superseded (a newer challenge
    -- of the contact, or another contact proved the number).
    state text NOT NULL DEFAULT 'pending',
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    finished_at timestamptz,
    PRIMARY KEY (workspace_id, challenge_id)
);
CREATE INDEX whatsapp_link_challenges_pending
    ON whatsapp_link_challenges (workspace_id, whatsapp_number) WHERE state = 'pending';
CREATE INDEX whatsapp_link_challenges_by_contact
    ON whatsapp_link_challenges (workspace_id, contact_id, created_at);

-- Every inbound "LINK <code>" message, once per provider message id: a webhook delivered
-- again finds its outcome here and neither counts a wrong code twice nor links twice.
CREATE TABLE whatsapp_link_messages (
    workspace_id text NOT NULL,
    provider_message_id text NOT NULL,
    whatsapp_number text NOT NULL,
    -- linked, wrong_code, void, no_challenge.
    outcome text NOT NULL DEFAULT '',
    challenge_id text NOT NULL DEFAULT '',
    -- The contact whose link of the number this message ended (a proven move), if any.
    ended_contact_id text NOT NULL DEFAULT '',
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, provider_message_id)
);

-- The history of links: each proven link, and each link ended because another contact
-- proved the number.
CREATE TABLE whatsapp_link_events (
    workspace_id text NOT NULL,
    sequence bigint GENERATED ALWAYS AS IDENTITY,
    whatsapp_number text NOT NULL,
    contact_id text NOT NULL,
    -- "linked" or "ended".
    event text NOT NULL,
    challenge_id text NOT NULL,
    -- For "ended": the contact the number moved to; for "linked": the one it moved from.
    other_contact_id text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, sequence)
);
