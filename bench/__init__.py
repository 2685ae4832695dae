"""Benchmarks (``make bench``): each module with ``async def run() -> dict`` is a scenario
that measures our path and, in the same run, a baseline of the machine's limit."""
