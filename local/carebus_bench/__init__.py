"""`make bench`: carebus's performance budget, measured on the machine it runs on.

Every timed figure is a ratio against a reference measured in the same run, interleaved round-robin with
it in fresh processes, so a shared or loaded machine moves both sides alike; docs/performance.md explains
each method and carries the table the last run wrote.
"""
