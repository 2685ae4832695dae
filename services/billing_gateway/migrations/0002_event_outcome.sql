-- What processing an event ended with: '' when every effect happened, otherwise why one
-- could not (e.g. the notifier refused the message as asked), so it is visible and the
-- event is not retried forever.
ALTER TABLE stripe_events ADD COLUMN outcome text NOT NULL DEFAULT '';
