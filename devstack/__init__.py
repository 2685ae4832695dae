"""The local stack: every service, the emulators and a PostgreSQL, started by ``make run``."""

import os

# The launcher starts processes while gRPC threads run; gRPC reads this when it is first
# imported, and its fork handlers are not needed here.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
