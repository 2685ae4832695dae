-- Binding only from signed facts (issue 13).
--
-- Secrets get a purpose: a user_hash secret never verifies a token and the reverse. Every
-- secret added before purposes existed verified user_hash values, so it becomes a
-- user_hash secret; a workspace that signs visitor tokens must add a visitor_token secret
-- (AddSecret purpose SECRET_PURPOSE_VISITOR_TOKEN) with fresh material, or its tokens stop
-- verifying. The ciphertext of an old secret stays sealed under "<ws>/hmac/<key id>";
-- identity opens both that context and the purpose context.
ALTER TABLE hmac_secrets ADD COLUMN purpose text NOT NULL DEFAULT 'user_hash'
    CHECK (purpose IN ('user_hash', 'visitor_token'));
ALTER TABLE hmac_secrets ALTER COLUMN purpose DROP DEFAULT;
-- Whether the ciphertext is sealed under the purpose's own context (false: the old one).
ALTER TABLE hmac_secrets ADD COLUMN purpose_sealed boolean NOT NULL DEFAULT false;
ALTER TABLE hmac_secrets ALTER COLUMN purpose_sealed SET DEFAULT true;

-- Contacts: email is the signed email only; what the visitor merely typed is claimed_email.
-- A contact with a user id was verified over the user id, so its email was never signed:
-- it moves to claimed_email. A contact without a user id was verified over its email.
ALTER TABLE contacts ADD COLUMN claimed_email text NOT NULL DEFAULT '';
UPDATE contacts SET claimed_email = email, email = '', email_normalized = ''
WHERE user_id <> '' AND email <> '';

-- How the Stripe customer binding was made; every binding made before this migration came
-- from an unsigned email (or a signed one, which cannot be told apart) and is listed for
-- review by ListLegacyBindings.
ALTER TABLE contacts ADD COLUMN binding_source text NOT NULL DEFAULT ''
    CHECK (binding_source IN (
        '', 'signed_email', 'token_claim', 'customer_metadata', 'admin', 'legacy_unsigned'
    ));
UPDATE contacts SET binding_source = 'legacy_unsigned' WHERE stripe_customer_id <> '';
CREATE INDEX contacts_legacy_bindings ON contacts (workspace_id, created_at, contact_id)
    WHERE binding_source = 'legacy_unsigned';

-- Identity settings per workspace: the Stripe customer metadata key naming the user id.
ALTER TABLE workspaces ADD COLUMN customer_metadata_key text NOT NULL DEFAULT '';
