"""``python -m identity [serve|migrate]``."""

from __future__ import annotations

from identity.service import IdentityService
from identity.settings import IdentitySettings
from runtime import server

if __name__ == "__main__":
    server.main(IdentitySettings, IdentityService)
