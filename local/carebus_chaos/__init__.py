"""Fault injection for carebus: throttles and lost replies on the handlers' AWS calls, and `make chaos`."""
