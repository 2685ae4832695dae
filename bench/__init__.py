"""Benchmarks (``make bench``): each module with ``async def run() -> dict`` is a scenario
that measures our path and, in the same run, a baseline of the machine's limit.

bench/results/ also holds the soak's report (``make soak``, the ``soak`` package: RSS,
connections and p50/p99 per minute over a long mixed load, and its verdict) in soak.json
and soak.md, and the conformance report of ``make conformance``."""
