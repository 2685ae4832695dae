"""A PostgreSQL of the harness's own (embedded pgserver in a temporary directory), so that
crashing and restarting it disturbs nothing else: never the machine's server, never the one
in DATABASE_URL."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any


class ChaosPostgres:
    """An embedded server that can be crashed (immediate shutdown) and started again."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path (pruned while a server may still use it).
        self.data_dir = Path(tempfile.mkdtemp(prefix="askvault-chaos-pg-"))
        self._server: Any = None

    def start(self) -> str:
        """Starts the server; its URL (a Unix socket in the data directory)."""
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; it is irrelevant here.
            warnings.simplefilter("ignore")
            import pgserver

            self._server = pgserver.get_server(  # type: ignore[attr-defined]
                self.data_dir, cleanup_mode="stop"
            )
        return str(self._server.get_uri())

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: every backend killed without a checkpoint, as a
        crashed server; the next start runs crash recovery."""
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(
            ["-w", "-m", "immediate", "stop"],
            pgdata=self.data_dir,
            user=self._server.system_user,
            timeout=30,
        )

    def start_again(self) -> None:
        """Starts the crashed server with the options it had (same socket, same URL)."""
        self._server.ensure_postgres_running()

    def close(self) -> None:
        """Stops the server and removes its data."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        shutil.rmtree(self.data_dir, ignore_errors=True)
