"""`make soak`: the whole system under a fixed mixed load for a long while; RSS, connections
and latency per minute, lost/duplicated counts and the reconciliation, judged (soak.verdict)."""
