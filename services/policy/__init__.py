"""Policy: bounds, reserve/commit counters, grants, escalations and the tamper-evident audit log."""
