"""Policy's rules, free of gRPC and SQL: periods, bounds, decisions, grants, the audit chain."""
