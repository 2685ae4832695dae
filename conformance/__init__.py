"""Contract checks against a running deployment (``make conformance``): health, reflection,
every RPC's refusals and error details, idempotent replays, webhook signature refusals and an
end-to-end status and refund on a test workspace, with credentials from the environment."""
