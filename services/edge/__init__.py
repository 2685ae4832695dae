"""The edge: HTTP in (chat turns, LLM tools, MCP, Stripe and WhatsApp webhooks), RPCs out."""
