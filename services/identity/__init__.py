"""Identity: proves who a visitor is, keeps contacts and their audience tags."""
