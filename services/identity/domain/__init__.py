"""Identity's pure logic: no gRPC, no SQL."""
