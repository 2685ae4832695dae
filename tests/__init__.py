"""Contract and end-to-end tests across services."""
