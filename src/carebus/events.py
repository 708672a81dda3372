"""The domain-event contract on the EventBridge bus: opaque ids and counts only, never PHI.

Events are delivered at least once: a producer that cannot tell whether PutEvents took effect puts the
event again (EventBridge has no idempotency token), and an archive replay repeats it. Every detail carries
an eventId that is the same on every repeat of one fact (the detail type and the id of what it is about),
so that consumers and the audit trail dedupe on it.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from carebus.billing import Claim
from carebus.fields import DeaSchedule

SCHEMA_VERSION: Final = 1

SOURCE_BILLING: Final = "carebus.billing"
SOURCE_SCHEDULING: Final = "carebus.scheduling"
SOURCE_PRESCRIPTIONS: Final = "carebus.prescriptions"
# Put by the approval workflow itself (statemachines/prescription_approval.asl.json), not by Python.
SOURCE_APPROVALS: Final = "carebus.approvals"

CLAIM_SUBMITTED: Final = "ClaimSubmitted"
APPOINTMENT_BOOKED: Final = "AppointmentBooked"
APPOINTMENT_WAITLISTED: Final = "AppointmentWaitlisted"
PRESCRIPTION_RELEASED: Final = "PrescriptionReleased"
PRESCRIPTION_APPROVAL_REQUESTED: Final = "PrescriptionApprovalRequested"
PRESCRIPTION_APPROVED: Final = "PrescriptionApproved"
PRESCRIPTION_REJECTED: Final = "PrescriptionRejected"
PRESCRIPTION_EXPIRED: Final = "PrescriptionExpired"
PRESCRIPTION_APPROVAL_FAILED: Final = "PrescriptionApprovalFailed"


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """An event ready for PutEvents; its detail always names the schema version and the encounter."""

    source: str
    detail_type: str
    detail: dict[str, Any]

    def __post_init__(self) -> None:
        if self.detail.get("schemaVersion") != SCHEMA_VERSION or not self.detail.get("encounterId"):
            raise ValueError(f"event detail must carry schemaVersion {SCHEMA_VERSION} and an encounterId")
        detail_type, _, subject_id = str(self.detail.get("eventId", "")).partition("/")
        if detail_type != self.detail_type or not subject_id:
            raise ValueError("event detail must carry an eventId of its detail type and subject")

    def to_entry(self, bus_name: str) -> dict[str, str]:
        """The PutEvents request entry for this event on the named bus."""
        return {
            "Source": self.source,
            "DetailType": self.detail_type,
            "Detail": json.dumps(self.detail, separators=(",", ":"), sort_keys=True),
            "EventBusName": bus_name,
        }


def event_id(detail_type: str, subject_id: str) -> str:
    """The id of the one fact an event states: its detail type and the id of what it is about. The
    approval workflow builds the same form (States.Format('<DetailType>/{}', $.approvalId))."""
    if not subject_id:
        raise ValueError("an event is about something: its subject id must not be empty")
    return f"{detail_type}/{subject_id}"


def _event(source: str, detail_type: str, encounter_id: str, subject_id: str, **fields: Any) -> DomainEvent:
    return DomainEvent(
        source,
        detail_type,
        {
            "schemaVersion": SCHEMA_VERSION,
            "eventId": event_id(detail_type, subject_id),
            "encounterId": encounter_id,
            **fields,
        },
    )


def claim_submitted(claim: Claim) -> DomainEvent:
    """A claim was submitted for an encounter."""
    return _event(
        SOURCE_BILLING,
        CLAIM_SUBMITTED,
        claim.encounter_id,
        claim.claim_id,
        claimId=claim.claim_id,
        lineCount=len(claim.lines),
        totalCents=claim.total_cents,
    )


def appointment_booked(encounter_id: str, appointment_id: str, start: datetime) -> DomainEvent:
    """A follow-up appointment was booked into the slot starting at start."""
    if start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")
    return _event(
        SOURCE_SCHEDULING,
        APPOINTMENT_BOOKED,
        encounter_id,
        appointment_id,
        appointmentId=appointment_id,
        start=f"{start.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}",
    )


def appointment_waitlisted(encounter_id: str, appointment_id: str, reason: str) -> DomainEvent:
    """No slot fitted the follow-up window, so the appointment waits; reason is a code, not free text."""
    return _event(
        SOURCE_SCHEDULING,
        APPOINTMENT_WAITLISTED,
        encounter_id,
        appointment_id,
        appointmentId=appointment_id,
        reason=reason,
    )


def prescription_released(encounter_id: str, prescription_id: str) -> DomainEvent:
    """A prescription was released to the pharmacy."""
    return _event(
        SOURCE_PRESCRIPTIONS,
        PRESCRIPTION_RELEASED,
        encounter_id,
        prescription_id,
        prescriptionId=prescription_id,
    )


def prescription_approval_requested(
    encounter_id: str, prescription_id: str, dea_schedule: DeaSchedule
) -> DomainEvent:
    """A controlled-substance prescription awaits a pharmacist's approval."""
    return _event(
        SOURCE_PRESCRIPTIONS,
        PRESCRIPTION_APPROVAL_REQUESTED,
        encounter_id,
        prescription_id,
        prescriptionId=prescription_id,
        deaSchedule=dea_schedule,
    )
