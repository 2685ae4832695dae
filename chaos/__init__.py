"""Chaos harness (``make chaos``, ``python -m chaos [--short]``): the whole system as real
processes on a PostgreSQL of its own, under chat and webhook load, through kill -9 of every
service, a PostgreSQL crash restart, Stripe errors, latency and dropped connections, and
webhooks delivered three times out of order, cancellations racing their undo, WhatsApp
messages and statuses, emails refused into dead letters; then a reconciliation of every
ledger against independent sources (Stripe's own objects and history, the providers)."""
