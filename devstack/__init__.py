"""The local stack: every service, the emulators and a PostgreSQL, started by ``make run``."""
