"""The offline stack's demo users: what the runtime seeds and what every `carebus` command may sign in as
(kept apart from the runtime, which a command that only reads these should not import)."""

DEMO_PASSWORD = "Carebus-Demo-2026!"  # noqa: S105 - a published demo password, offline only
# One signed-in user per role, seeded at start-up.
DEMO_USERS = {
    "physician": ("physician@carebus.local", ("physicians",)),
    "pharmacist": ("pharmacist@carebus.local", ("pharmacists",)),
}
