"""``python -m policy [serve|migrate]``."""

from __future__ import annotations

from policy.service import PolicyService
from policy.settings import PolicySettings
from runtime import server

if __name__ == "__main__":
    server.main(PolicySettings, PolicyService)
