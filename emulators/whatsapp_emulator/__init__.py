"""A small WhatsApp Cloud API emulator for tests and the local stack: records messages,
answers with the documented error codes on demand and posts signed status webhooks."""
