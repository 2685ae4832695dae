"""A scripted OpenAI-compatible chat-completions server: it plays the tool calls and answers a
test gives it, so the edge's LLM mode is tested against a real HTTP model endpoint."""
