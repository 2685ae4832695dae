"""The workspace owner's web console: server-rendered pages over the services' admin RPCs."""
