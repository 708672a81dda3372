"""The domain-event contract on the EventBridge bus: opaque ids and counts only, never PHI."""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from carebus.billing import Claim
from carebus.models import DeaSchedule

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


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """An event ready for PutEvents; its detail always names the schema version and the encounter."""

    source: str
    detail_type: str
    detail: dict[str, Any]

    def __post_init__(self) -> None:
        if self.detail.get("schemaVersion") != SCHEMA_VERSION or not self.detail.get("encounterId"):
            raise ValueError(f"event detail must carry schemaVersion {SCHEMA_VERSION} and an encounterId")

    def to_entry(self, bus_name: str) -> dict[str, str]:
        """The PutEvents request entry for this event on the named bus."""
        return {
            "Source": self.source,
            "DetailType": self.detail_type,
            "Detail": json.dumps(self.detail, separators=(",", ":"), sort_keys=True),
            "EventBusName": bus_name,
        }


def _event(source: str, detail_type: str, encounter_id: str, **fields: Any) -> DomainEvent:
    return DomainEvent(
        source, detail_type, {"schemaVersion": SCHEMA_VERSION, "encounterId": encounter_id, **fields}
    )


def claim_submitted(claim: Claim) -> DomainEvent:
    """A claim was submitted for an encounter."""
    return _event(
        SOURCE_BILLING,
        CLAIM_SUBMITTED,
        claim.encounter_id,
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
        appointmentId=appointment_id,
        start=f"{start.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}",
    )


def appointment_waitlisted(encounter_id: str, appointment_id: str, reason: str) -> DomainEvent:
    """No slot fitted the follow-up window, so the appointment waits; reason is a code, not free text."""
    return _event(
        SOURCE_SCHEDULING, APPOINTMENT_WAITLISTED, encounter_id, appointmentId=appointment_id, reason=reason
    )


def prescription_released(encounter_id: str, prescription_id: str) -> DomainEvent:
    """A prescription was released to the pharmacy."""
    return _event(SOURCE_PRESCRIPTIONS, PRESCRIPTION_RELEASED, encounter_id, prescriptionId=prescription_id)


def prescription_approval_requested(
    encounter_id: str, prescription_id: str, dea_schedule: DeaSchedule
) -> DomainEvent:
    """A controlled-substance prescription awaits a pharmacist's approval."""
    return _event(
        SOURCE_PRESCRIPTIONS,
        PRESCRIPTION_APPROVAL_REQUESTED,
        encounter_id,
        prescriptionId=prescription_id,
        deaSchedule=dea_schedule,
    )
