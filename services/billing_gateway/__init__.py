"""The billing gateway: the only service that talks to Stripe, and the enforcement point."""
