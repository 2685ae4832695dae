"""Notifier: tells people things through a durable outbox (email, WhatsApp, agent hand-offs)."""
