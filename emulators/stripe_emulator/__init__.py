"""A local Stripe emulator for the billing skill: Stripe's v1 API over HTTP, spoken to by
the unchanged `stripe` SDK. A development and test tool, not a production service."""

from __future__ import annotations

from stripe_emulator.seed import DEMO_API_KEY
from stripe_emulator.state import API_VERSION

__all__ = ["API_VERSION", "DEMO_API_KEY"]
