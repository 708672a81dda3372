"""Prescription ids and the status a prescription starts in."""

from enum import StrEnum

from carebus.models import Prescription


class PrescriptionStatus(StrEnum):
    """Lifecycle of a prescription; controlled substances wait for a pharmacist's decision."""

    RELEASED = "RELEASED"
    PENDING_APPROVAL = "PENDING_APPROVAL"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


def prescription_id_for(encounter_id: str, index: int) -> str:
    """The id of the index-th (counting from 1) prescription of an encounter."""
    if index < 1:
        raise ValueError("prescriptions are numbered from 1")
    return f"rx-{encounter_id}-{index}"


def initial_status(prescription: Prescription) -> PrescriptionStatus:
    """Controlled substances need a pharmacist's approval; anything else is released at once."""
    return PrescriptionStatus.PENDING_APPROVAL if prescription.is_controlled else PrescriptionStatus.RELEASED
