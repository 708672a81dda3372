import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from unit_factories import PATIENT_PHI, encounter

from carebus.billing import build_claim
from carebus.events import (
    APPOINTMENT_BOOKED,
    APPOINTMENT_WAITLISTED,
    CLAIM_SUBMITTED,
    PRESCRIPTION_APPROVAL_REQUESTED,
    PRESCRIPTION_RELEASED,
    SOURCE_BILLING,
    SOURCE_PRESCRIPTIONS,
    SOURCE_SCHEDULING,
    DomainEvent,
    appointment_booked,
    appointment_waitlisted,
    claim_submitted,
    event_id,
    prescription_approval_requested,
    prescription_released,
)

ENCOUNTER_ID = "6f1c2b9e-3d4a-4f5b-8c7d-9e0a1b2c3d4e"
BUS = "carebus-dev"
START = datetime(2025, 3, 19, 14, 30, tzinfo=UTC)


def every_event() -> list[DomainEvent]:
    request = encounter()
    claim = build_claim(ENCOUNTER_ID, request.practitioner_npi, request.diagnoses, request.procedures)
    return [
        claim_submitted(claim),
        appointment_booked(ENCOUNTER_ID, "apt-1", START),
        appointment_waitlisted(ENCOUNTER_ID, "apt-1", "NO_FREE_SLOT"),
        prescription_released(ENCOUNTER_ID, "rx-1"),
        prescription_approval_requested(ENCOUNTER_ID, "rx-2", "II"),
    ]


def test_each_builder_sets_its_source_detail_type_and_fields() -> None:
    described = [(event.source, event.detail_type, dict(event.detail)) for event in every_event()]
    common = {"schemaVersion": 1, "encounterId": ENCOUNTER_ID}
    assert described == [
        (
            SOURCE_BILLING,
            CLAIM_SUBMITTED,
            {
                **common,
                "eventId": f"ClaimSubmitted/clm-{ENCOUNTER_ID}",
                "claimId": f"clm-{ENCOUNTER_ID}",
                "lineCount": 2,
                "totalCents": 13_400,
            },
        ),
        (
            SOURCE_SCHEDULING,
            APPOINTMENT_BOOKED,
            {
                **common,
                "eventId": "AppointmentBooked/apt-1",
                "appointmentId": "apt-1",
                "start": "2025-03-19T14:30:00Z",
            },
        ),
        (
            SOURCE_SCHEDULING,
            APPOINTMENT_WAITLISTED,
            {
                **common,
                "eventId": "AppointmentWaitlisted/apt-1",
                "appointmentId": "apt-1",
                "reason": "NO_FREE_SLOT",
            },
        ),
        (
            SOURCE_PRESCRIPTIONS,
            PRESCRIPTION_RELEASED,
            {**common, "eventId": "PrescriptionReleased/rx-1", "prescriptionId": "rx-1"},
        ),
        (
            SOURCE_PRESCRIPTIONS,
            PRESCRIPTION_APPROVAL_REQUESTED,
            {
                **common,
                "eventId": "PrescriptionApprovalRequested/rx-2",
                "prescriptionId": "rx-2",
                "deaSchedule": "II",
            },
        ),
    ]


def test_entry_is_a_put_events_entry_with_compact_sorted_json_detail() -> None:
    entry = prescription_released(ENCOUNTER_ID, "rx-1").to_entry(BUS)
    assert entry == {
        "Source": "carebus.prescriptions",
        "DetailType": "PrescriptionReleased",
        "Detail": (
            f'{{"encounterId":"{ENCOUNTER_ID}","eventId":"PrescriptionReleased/rx-1",'
            '"prescriptionId":"rx-1","schemaVersion":1}'
        ),
        "EventBusName": BUS,
    }


def test_appointment_start_is_published_in_utc_with_z() -> None:
    start_in_new_york_winter = START.astimezone(timezone(timedelta(hours=-5)))
    event = appointment_booked(ENCOUNTER_ID, "apt-1", start_in_new_york_winter)
    assert event.detail["start"] == "2025-03-19T14:30:00Z"


def test_appointment_start_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        appointment_booked(ENCOUNTER_ID, "apt-1", START.replace(tzinfo=None))


@pytest.mark.parametrize(
    "detail",
    [{"encounterId": ENCOUNTER_ID}, {"schemaVersion": 2, "encounterId": ENCOUNTER_ID}, {"schemaVersion": 1}],
)
def test_event_detail_without_schema_version_1_and_encounter_id_is_refused(detail: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="schemaVersion"):
        DomainEvent(SOURCE_BILLING, CLAIM_SUBMITTED, detail)


@pytest.mark.parametrize(
    "event",
    [None, "", "clm-1", "ClaimSubmitted/", "AppointmentBooked/clm-1"],
    ids=["absent", "empty", "no-type", "no-subject", "other-type"],
)
def test_event_detail_without_the_event_id_of_its_fact_is_refused(event: str | None) -> None:
    detail = {
        "schemaVersion": 1,
        "encounterId": ENCOUNTER_ID,
        **({"eventId": event} if event is not None else {}),
    }

    with pytest.raises(ValueError, match="eventId"):
        DomainEvent(SOURCE_BILLING, CLAIM_SUBMITTED, detail)


def test_every_repeat_of_a_fact_carries_the_same_event_id() -> None:
    assert [event.detail["eventId"] for event in every_event()] == [
        event.detail["eventId"] for event in every_event()
    ]
    assert len({event.detail["eventId"] for event in every_event()}) == len(every_event())


def test_an_event_id_needs_a_subject() -> None:
    assert event_id("ClaimSubmitted", "clm-1") == "ClaimSubmitted/clm-1"
    with pytest.raises(ValueError, match="subject"):
        event_id("ClaimSubmitted", "")


def test_no_event_carries_a_patient_field_name_or_value() -> None:
    request = encounter()
    patient_fields = {*request.patient.model_dump(by_alias=True), *request.patient.model_dump(by_alias=False)}
    patient_values = {*PATIENT_PHI.values(), request.patient.id}
    for event in every_event():
        entry = event.to_entry(BUS)
        assert not set(json.loads(entry["Detail"])) & {"patient", *patient_fields}
        rendered = json.dumps(entry)
        assert not [value for value in patient_values if value in rendered]
