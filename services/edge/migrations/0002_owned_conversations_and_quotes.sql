-- Conversations belong to the first verified contact that writes in them; every visitor line
-- says whether its author was verified; a proposal keeps the quote the person confirms.

-- The owner is conversations.contact_id (empty until a verified contact writes). Lines stored
-- before this migration have an unknown author: NULL, shown to agents as unverified.
ALTER TABLE messages ADD COLUMN verified boolean;

-- The quote: the hash of the terms shown to the person (runtime.quotes.terms_hash); empty for
-- proposals that move no money (emailing invoices).
ALTER TABLE proposals ADD COLUMN terms_hash text NOT NULL DEFAULT '';
-- SHA-256 of the one-time token in the confirmation page's address (MCP URL elicitation);
-- the token itself is never stored.
ALTER TABLE proposals ADD COLUMN confirm_token_sha256 bytea;
-- When and how the person confirmed on a channel that cannot run the action itself (the
-- confirmation page): the tool call that retries after it runs exactly this proposal.
ALTER TABLE proposals ADD COLUMN person_confirmed_at timestamptz;
ALTER TABLE proposals ADD COLUMN person_confirmed_channel text NOT NULL DEFAULT '';
CREATE UNIQUE INDEX proposals_by_confirm_token ON proposals (confirm_token_sha256)
    WHERE confirm_token_sha256 IS NOT NULL;
