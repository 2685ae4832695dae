"""`python -m stripe_emulator`: serve the emulator until SIGINT/SIGTERM."""

from __future__ import annotations

from stripe_emulator.server import main

if __name__ == "__main__":
    raise SystemExit(main())
