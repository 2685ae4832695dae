"""The common runtime every AskVault service stands on.

A service is built from these parts, in this order (see ``runtime.server.run_service``):
settings from the environment, JSON logs, OpenTelemetry, the asyncpg pool with the
service's migrations applied, the grpc.aio server with health, reflection and the error
interceptor, the service's background workers; and torn down in reverse on SIGTERM.
"""
