"""Notifier's pure logic: no gRPC, no SQL, no network."""
