"""``python -m notifier [serve|migrate]``."""

from __future__ import annotations

from notifier.service import NotifierService
from notifier.settings import NotifierSettings
from runtime import server

if __name__ == "__main__":
    server.main(NotifierSettings, NotifierService)
