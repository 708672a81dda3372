"""The business metrics the functions emit (Powertools Metrics, namespace carebus, dimension service): how
long each consumer path takes from an encounter's acceptance, how long pharmacists take to decide, and how
many queue records fail. The dashboard, its test and `carebus metrics` read these names; never retype them.

Dimensions carry no PHI and no ids: the service, and an approval's outcome. A latency sample is taken only
when the consumer's own record was newly written, so a redelivered record adds no second sample."""

from datetime import UTC, datetime
from typing import Final

# Acceptance (the encounter's submittedAt) to the claim, stored once per encounter by billing.
ENCOUNTER_TO_CLAIM: Final = "EncounterToClaimTime"
# Acceptance to the appointment, booked or waitlisted (the counts AppointmentsBooked/-Waitlisted say which).
ENCOUNTER_TO_APPOINTMENT: Final = "EncounterToAppointmentTime"
# Acceptance to each prescription stored, released or waiting for a pharmacist: one sample a prescription.
ENCOUNTER_TO_PRESCRIPTION: Final = "EncounterToPrescriptionTime"
# An approval's request to the decision delivered to its workflow; the Outcome dimension says which one.
APPROVAL_DECISION_TIME: Final = "ApprovalDecisionTime"
OUTCOME_DIMENSION: Final = "Outcome"
# Records of one batch a queue consumer reported failed (they stay on the queue); emitted only when > 0.
BATCH_ITEM_FAILURES: Final = "BatchItemFailures"

# Each consumer path's end-to-end latency metric, by the function's service name (the p99 alarms watch these).
CONSUMER_LATENCY: Final = {
    "billing": ENCOUNTER_TO_CLAIM,
    "scheduling": ENCOUNTER_TO_APPOINTMENT,
    "prescriptions": ENCOUNTER_TO_PRESCRIPTION,
}


def milliseconds_since(start: str, end: datetime | None = None) -> float:
    """Milliseconds from an ISO-8601 timestamp (as the records store them) to end, by default now."""
    return ((end or datetime.now(UTC)) - datetime.fromisoformat(start)).total_seconds() * 1000
