-- An admin's resend of a dead message (ResendMessage) counts here; the message keeps its id
-- and dedup key. The workspace's messages (ListMessages without a contact, the console's
-- outbox page) are read newest first by this index.
ALTER TABLE messages ADD COLUMN resent_count integer NOT NULL DEFAULT 0;

CREATE INDEX messages_by_workspace ON messages (workspace_id, created_at DESC, message_id DESC);
