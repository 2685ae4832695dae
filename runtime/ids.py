"""Identifiers: a readable prefix and a random, URL-safe body."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """A new id such as ``ct_3kTMd...`` (128 random bits)."""
    return f"{prefix}_{secrets.token_urlsafe(16).replace('-', 'x').replace('_', 'y')}"
