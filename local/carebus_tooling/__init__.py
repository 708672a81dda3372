"""Build tooling: the generated API description, the deploy rehearsal."""
