"""A PostgreSQL for machines that have none: ``DATABASE_URL`` when set, else an embedded
server (pgserver from PyPI) kept in a data directory of the repository. Development only."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any


class EmbeddedPostgres:
    """The database the local stack and the tests use."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._server: Any = None

    def url(self) -> str:
        """DATABASE_URL if set, else the URL of an embedded server started on first use."""
        configured = os.environ.get("DATABASE_URL", "")
        if configured:
            return configured
        if self._server is None:
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset; it is irrelevant here.
                warnings.simplefilter("ignore")
                import pgserver

                self._data_dir.mkdir(parents=True, exist_ok=True)
                self._server = pgserver.get_server(  # type: ignore[attr-defined]
                    self._data_dir, cleanup_mode="stop"
                )
        return str(self._server.get_uri())

    @property
    def embedded(self) -> bool:
        """Whether an embedded server was started."""
        return self._server is not None

    def stop(self) -> None:
        """Stops the embedded server (its data stays for the next start)."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
