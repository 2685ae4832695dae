"""The edge's numbered migrations."""
