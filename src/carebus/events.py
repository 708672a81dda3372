"""The domain events on the EventBridge bus: opaque ids and counts only, never PHI.

Each builder makes its detail through the detail type's model (carebus.event_details), the one source of
the event contract that the published schemas are generated from.

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
from carebus.event_details import (
    SCHEMA_VERSION,
    SOURCE_APPROVALS,
    SOURCE_BILLING,
    SOURCE_PRESCRIPTIONS,
    SOURCE_SCHEDULING,
    AppointmentBooked,
    AppointmentWaitlisted,
    ClaimSubmitted,
    EventDetail,
    PrescriptionApprovalFailed,
    PrescriptionApprovalRequested,
    PrescriptionApproved,
    PrescriptionExpired,
    PrescriptionRejected,
    PrescriptionReleased,
    event_id,
)
from carebus.fields import DeaSchedule

__all__ = [
    "APPOINTMENT_BOOKED",
    "APPOINTMENT_WAITLISTED",
    "CLAIM_SUBMITTED",
    "PRESCRIPTION_APPROVAL_FAILED",
    "PRESCRIPTION_APPROVAL_REQUESTED",
    "PRESCRIPTION_APPROVED",
    "PRESCRIPTION_EXPIRED",
    "PRESCRIPTION_REJECTED",
    "PRESCRIPTION_RELEASED",
    "SCHEMA_VERSION",
    "SOURCE_APPROVALS",
    "SOURCE_BILLING",
    "SOURCE_PRESCRIPTIONS",
    "SOURCE_SCHEDULING",
    "DomainEvent",
    "appointment_booked",
    "appointment_waitlisted",
    "claim_submitted",
    "event_id",
    "prescription_approval_requested",
    "prescription_released",
]

CLAIM_SUBMITTED: Final = ClaimSubmitted.detail_type
APPOINTMENT_BOOKED: Final = AppointmentBooked.detail_type
APPOINTMENT_WAITLISTED: Final = AppointmentWaitlisted.detail_type
PRESCRIPTION_RELEASED: Final = PrescriptionReleased.detail_type
PRESCRIPTION_APPROVAL_REQUESTED: Final = PrescriptionApprovalRequested.detail_type
PRESCRIPTION_APPROVED: Final = PrescriptionApproved.detail_type
PRESCRIPTION_REJECTED: Final = PrescriptionRejected.detail_type
PRESCRIPTION_EXPIRED: Final = PrescriptionExpired.detail_type
PRESCRIPTION_APPROVAL_FAILED: Final = PrescriptionApprovalFailed.detail_type


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


def _event(detail: EventDetail) -> DomainEvent:
    return DomainEvent(detail.source, detail.detail_type, detail.model_dump(mode="json"))


def claim_submitted(claim: Claim) -> DomainEvent:
    """A claim was submitted for an encounter."""
    return _event(
        ClaimSubmitted.about(
            encounter_id=claim.encounter_id,
            claim_id=claim.claim_id,
            line_count=len(claim.lines),
            total_cents=claim.total_cents,
        )
    )


def appointment_booked(encounter_id: str, appointment_id: str, start: datetime) -> DomainEvent:
    """A follow-up appointment was booked into the slot starting at start."""
    if start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")
    return _event(
        AppointmentBooked.about(
            encounter_id=encounter_id,
            appointment_id=appointment_id,
            start=f"{start.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}",
        )
    )


def appointment_waitlisted(encounter_id: str, appointment_id: str, reason: str) -> DomainEvent:
    """No slot fitted the follow-up window, so the appointment waits; reason is a code, not free text."""
    return _event(
        AppointmentWaitlisted.about(encounter_id=encounter_id, appointment_id=appointment_id, reason=reason)
    )


def prescription_released(encounter_id: str, prescription_id: str) -> DomainEvent:
    """A prescription was released to the pharmacy."""
    return _event(PrescriptionReleased.about(encounter_id=encounter_id, prescription_id=prescription_id))


def prescription_approval_requested(
    encounter_id: str, prescription_id: str, dea_schedule: DeaSchedule
) -> DomainEvent:
    """A controlled-substance prescription awaits a pharmacist's approval."""
    return _event(
        PrescriptionApprovalRequested.about(
            encounter_id=encounter_id, prescription_id=prescription_id, dea_schedule=dea_schedule
        )
    )
