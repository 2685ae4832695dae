"""The providers the outbox delivers through: SMTP, the WhatsApp Cloud API, helpdesk webhooks."""
