import pytest
from unit_factories import prescription_payload

from carebus.models import Prescription
from carebus.prescribing import PrescriptionStatus, initial_status, prescription_id_for


def test_prescription_ids_number_an_encounters_prescriptions_from_one() -> None:
    assert [prescription_id_for("enc-1", index) for index in (1, 2)] == ["rx-enc-1-1", "rx-enc-1-2"]


def test_prescription_index_zero_is_rejected() -> None:
    with pytest.raises(ValueError, match="from 1"):
        prescription_id_for("enc-1", 0)


def test_uncontrolled_prescription_is_released_immediately() -> None:
    assert initial_status(Prescription.model_validate(prescription_payload())) is PrescriptionStatus.RELEASED


@pytest.mark.parametrize("schedule", ["II", "III", "IV", "V"])
def test_controlled_prescription_waits_for_pharmacist_approval(schedule: str) -> None:
    prescription = Prescription.model_validate(prescription_payload(deaSchedule=schedule, refills=0))
    assert initial_status(prescription) is PrescriptionStatus.PENDING_APPROVAL


def test_status_values_are_their_names_for_storage_and_events() -> None:
    assert [str(status) for status in PrescriptionStatus] == [
        "RELEASED",
        "PENDING_APPROVAL",
        "APPROVED",
        "REJECTED",
        "EXPIRED",
    ]
