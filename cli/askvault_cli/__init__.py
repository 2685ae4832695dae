"""askvault: the admin command line. It only calls the services' admin RPCs over gRPC, with
the admin's own credential; it holds no billing rule and no service key."""
