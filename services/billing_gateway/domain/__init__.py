"""The billing gateway's rules: pure logic, no gRPC, no SQL, no network."""
