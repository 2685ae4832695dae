-- WhatsApp opt-ins recorded from the chat before numbers had to be proven (source
-- "chat_opt_in") name numbers nobody showed they hold: messages about an account could go to
-- a stranger. They are withdrawn; the visitor links the number again with the proof
-- (source "whatsapp_link_proof"). The withdrawal is kept in the history like any consent.
INSERT INTO channel_consent_history (workspace_id, contact_id, channel, opted_in, source,
                                     occurred_at, whatsapp_number)
SELECT workspace_id, contact_id, channel, false, 'unproven_number_withdrawn', now(),
       whatsapp_number
FROM channel_consents
WHERE channel = 'whatsapp' AND opted_in AND source = 'chat_opt_in';

UPDATE channel_consents
SET opted_in = false, source = 'unproven_number_withdrawn', occurred_at = now(),
    recorded_at = now()
WHERE channel = 'whatsapp' AND opted_in AND source = 'chat_opt_in';
