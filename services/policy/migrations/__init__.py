"""Policy's numbered SQL migrations."""
