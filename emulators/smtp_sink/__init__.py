"""An SMTP sink for tests and the local stack: accepts every message (or the replies it was
told to give), keeps them in memory and shows them over a small HTTP API."""
