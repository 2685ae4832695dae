-- When an event's processing last went wrong (deferred with an error, or finished with an
-- effect that could not happen); NULL once it was processed cleanly. CheckWebhookSetup shows
-- the workspace's latest such error.
ALTER TABLE stripe_events ADD COLUMN last_error_at timestamptz;
CREATE INDEX stripe_events_errors ON stripe_events (workspace_id, last_error_at)
    WHERE last_error_at IS NOT NULL;
