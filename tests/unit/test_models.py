from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from unit_factories import (
    PATIENT_PHI,
    TODAY,
    VALID_DEA,
    encounter,
    encounter_payload,
    full_encounter_payload,
    patient_payload,
    prescription_payload,
    procedure_payload,
)

from carebus.models import EncounterRequest, Patient, Prescription


def failures(payload: dict[str, Any], today: date = TODAY) -> list[tuple[tuple[int | str, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        EncounterRequest.model_validate(payload, context={"today": today})
    return [(error["loc"], error["type"]) for error in caught.value.errors()]


def test_full_encounter_is_parsed_from_camel_case_json() -> None:
    request = encounter()
    assert request.patient.insurance_member_id == PATIENT_PHI["insuranceMemberId"]
    assert request.procedures[1].charge_cents == 450
    assert request.follow_up is not None
    assert request.follow_up.visit_type == "OFFICE"
    assert request.prescriber_dea == VALID_DEA


def test_fields_can_also_be_given_by_python_name() -> None:
    payload = encounter_payload()
    payload["practitioner_npi"] = payload.pop("practitionerNpi")
    assert encounter(payload).practitioner_npi == "1234567893"


def test_optional_collections_default_to_empty() -> None:
    request = encounter(encounter_payload())
    assert (request.procedures, request.prescriptions, request.follow_up, request.prescriber_dea) == (
        [],
        [],
        None,
        None,
    )


def test_dump_uses_camel_case_aliases() -> None:
    dumped = encounter().model_dump(mode="json")
    assert dumped["patient"]["birthDate"] == PATIENT_PHI["birthDate"]
    assert dumped["procedures"][0]["chargeCents"] == 12_500
    assert "prescriberDea" in dumped


def test_codes_are_taken_as_sent_neither_trimmed_nor_upper_cased() -> None:
    payload = encounter_payload(
        diagnoses=[{"system": "ICD-10-CM", "code": " e11.9 "}],
        prescriptions=[prescription_payload(deaSchedule="III", refills=0)],
        prescriberDea=" ab1234563 ",
    )
    assert failures(payload) == [
        (("diagnoses", 0, "code"), "invalid_icd10cm"),
        (("prescriberDea",), "invalid_dea"),
    ]


def test_unknown_fields_are_rejected() -> None:
    assert failures(encounter_payload(ssn="000-00-0000")) == [(("ssn",), "extra_forbidden")]


def test_models_are_immutable() -> None:
    request = encounter()
    with pytest.raises(ValidationError):
        request.encounter_type = "HOME"  # type: ignore[misc]


@pytest.mark.parametrize("model", ["patient", "request"])
def test_repr_and_str_do_not_reveal_patient_demographics(model: str) -> None:
    request = encounter()
    subject = request.patient if model == "patient" else request
    rendered = repr(subject) + str(subject)
    assert "pat-0001" in rendered
    for value in (*PATIENT_PHI.values(), "1961"):
        assert value not in rendered


def test_validation_error_text_does_not_quote_submitted_values() -> None:
    payload = encounter_payload(patient={**patient_payload(), "birthDate": PATIENT_PHI["name"]})
    with pytest.raises(ValidationError) as caught:
        EncounterRequest.model_validate(payload, context={"today": TODAY})
    assert PATIENT_PHI["name"] not in str(caught.value)


def test_invalid_practitioner_npi_is_reported_at_its_field() -> None:
    assert failures(encounter_payload(practitionerNpi="1234567890")) == [
        (("practitionerNpi",), "invalid_npi")
    ]


@pytest.mark.parametrize("field", ["id", "name", "insuranceMemberId"])
def test_patient_text_fields_must_not_be_blank(field: str) -> None:
    patient = {**patient_payload(), field: "   "}
    assert failures(encounter_payload(patient=patient)) == [(("patient", field), "text_characters")]


@pytest.mark.parametrize("field", ["id", "name", "insuranceMemberId"])
def test_patient_text_fields_must_not_be_empty(field: str) -> None:
    patient = {**patient_payload(), field: ""}
    assert failures(encounter_payload(patient=patient)) == [(("patient", field), "string_too_short")]


def test_encounter_date_may_be_one_day_ahead_of_utc_for_clinics_east_of_utc() -> None:
    tomorrow = (TODAY + timedelta(days=1)).isoformat()
    assert encounter(encounter_payload(encounterDate=tomorrow)).encounter_date == TODAY + timedelta(days=1)


def test_encounter_date_two_days_ahead_is_in_the_future() -> None:
    later = (TODAY + timedelta(days=2)).isoformat()
    assert failures(encounter_payload(encounterDate=later)) == [(("encounterDate",), "date_in_future")]


def test_birth_date_must_not_be_in_the_future() -> None:
    patient = {**patient_payload(), "birthDate": (TODAY + timedelta(days=2)).isoformat()}
    assert failures(encounter_payload(patient=patient)) == [(("patient", "birthDate"), "date_in_future")]


def test_without_a_validation_context_today_is_the_current_utc_date() -> None:
    utc_today = datetime.now(UTC).date()
    assert EncounterRequest.model_validate(encounter_payload(encounterDate=utc_today.isoformat()))
    with pytest.raises(ValidationError, match="date_in_future"):
        EncounterRequest.model_validate(
            encounter_payload(encounterDate=(utc_today + timedelta(days=2)).isoformat())
        )


@pytest.mark.parametrize("count", [0, 13])
def test_an_encounter_has_between_one_and_twelve_diagnoses(count: int) -> None:
    diagnoses = [{"system": "ICD-10-CM", "code": "E11.9"}] * count
    assert failures(encounter_payload(diagnoses=diagnoses))[0][0] == ("diagnoses",)


def test_invalid_diagnosis_code_is_located_in_its_list_item() -> None:
    diagnoses = [{"system": "ICD-10-CM", "code": "E11.9"}, {"system": "ICD-10-CM", "code": "U07.1"}]
    assert failures(encounter_payload(diagnoses=diagnoses)) == [(("diagnoses", 1, "code"), "invalid_icd10cm")]


def test_diagnosis_system_must_be_icd10cm() -> None:
    diagnoses = [{"system": "ICD-9-CM", "code": "E11.9"}]
    assert failures(encounter_payload(diagnoses=diagnoses)) == [(("diagnoses", 0, "system"), "literal_error")]


@pytest.mark.parametrize(
    ("system", "code", "error_type"),
    [("CPT", "J3490", "invalid_cpt"), ("HCPCS", "99213", "invalid_hcpcs")],
)
def test_procedure_code_is_validated_against_its_own_system(system: str, code: str, error_type: str) -> None:
    procedures = [procedure_payload(), procedure_payload(system=system, code=code)]
    assert failures(encounter_payload(procedures=procedures)) == [(("procedures", 1, "code"), error_type)]


def test_unknown_procedure_system_reports_only_the_system() -> None:
    procedures = [procedure_payload(system="LOINC", code="1234-5")]
    assert failures(encounter_payload(procedures=procedures)) == [
        (("procedures", 0, "system"), "literal_error")
    ]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"units": 0}, "units"),
        ({"units": 1000}, "units"),
        ({"chargeCents": -1}, "chargeCents"),
        ({"chargeCents": 100_000_001}, "chargeCents"),
    ],
)
def test_procedure_units_and_charge_are_bounded(overrides: dict[str, int], field: str) -> None:
    procedures = [procedure_payload(**overrides)]
    assert [loc for loc, _ in failures(encounter_payload(procedures=procedures))] == [
        ("procedures", 0, field)
    ]


def test_at_most_fifty_procedures() -> None:
    assert failures(encounter_payload(procedures=[procedure_payload()] * 51)) == [
        (("procedures",), "too_long")
    ]


def follow_up(earliest: date, latest: date) -> dict[str, str]:
    return {"earliest": earliest.isoformat(), "latest": latest.isoformat(), "visitType": "TELEHEALTH"}


def test_follow_up_window_may_span_exactly_ninety_days() -> None:
    request = encounter(encounter_payload(followUp=follow_up(TODAY, TODAY + timedelta(days=90))))
    assert request.follow_up is not None


def test_follow_up_window_longer_than_ninety_days_is_rejected() -> None:
    payload = encounter_payload(followUp=follow_up(TODAY, TODAY + timedelta(days=91)))
    assert failures(payload) == [(("followUp", "latest"), "follow_up_window_too_long")]


def test_follow_up_window_must_not_end_before_it_starts() -> None:
    payload = encounter_payload(followUp=follow_up(TODAY + timedelta(days=5), TODAY + timedelta(days=4)))
    assert failures(payload) == [(("followUp", "latest"), "follow_up_window_reversed")]


def test_follow_up_may_start_on_the_encounter_date() -> None:
    assert encounter(encounter_payload(followUp=follow_up(TODAY, TODAY))).follow_up is not None


def test_follow_up_must_not_start_before_the_encounter_date() -> None:
    payload = encounter_payload(followUp=follow_up(TODAY - timedelta(days=1), TODAY + timedelta(days=7)))
    assert failures(payload) == [(("followUp",), "follow_up_before_encounter")]


REFILL_LIMITS: dict[str | None, int] = {None: 11, "II": 0, "III": 5, "IV": 5, "V": 11}


@given(st.sampled_from(list(REFILL_LIMITS)), st.integers(0, 11))
def test_refills_are_accepted_exactly_up_to_the_federal_limit_of_the_schedule(
    schedule: str | None, refills: int
) -> None:
    payload = prescription_payload(deaSchedule=schedule, refills=refills)
    if refills <= REFILL_LIMITS[schedule]:
        assert Prescription.model_validate(payload).refills == refills
    else:
        with pytest.raises(ValidationError) as caught:
            Prescription.model_validate(payload)
        assert [error["loc"] for error in caught.value.errors()] == [("refills",)]


def test_schedule_ii_prescription_cannot_have_refills() -> None:
    payload = encounter_payload(prescriptions=[prescription_payload(deaSchedule="II", refills=1)])
    payload["prescriberDea"] = VALID_DEA
    assert failures(payload) == [(("prescriptions", 0, "refills"), "too_many_refills")]


@pytest.mark.parametrize("refills", [-1, 12])
def test_refills_range_from_zero_to_eleven(refills: int) -> None:
    with pytest.raises(ValidationError):
        Prescription.model_validate(prescription_payload(refills=refills))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"rxnormCode": "19736a"}, "rxnormCode"),
        ({"rxnormCode": "12345678901"}, "rxnormCode"),
        ({"rxnormCode": "١٩٧٣٦١"}, "rxnormCode"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": 10_001}, "quantity"),
        ({"drug": ""}, "drug"),
        ({"deaSchedule": "I"}, "deaSchedule"),
    ],
)
def test_prescription_fields_are_validated(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Prescription.model_validate(prescription_payload(**overrides))
    assert [error["loc"] for error in caught.value.errors()] == [(field,)]


@pytest.mark.parametrize(("schedule", "controlled"), [(None, False), ("II", True), ("V", True)])
def test_a_prescription_is_controlled_when_it_has_a_dea_schedule(
    schedule: str | None, controlled: bool
) -> None:
    prescription = Prescription.model_validate(prescription_payload(deaSchedule=schedule, refills=0))
    assert prescription.is_controlled is controlled


def test_controlled_prescription_requires_prescriber_dea() -> None:
    prescriptions = [prescription_payload(), prescription_payload(deaSchedule="IV", refills=0)]
    assert failures(encounter_payload(prescriptions=prescriptions)) == [
        (("prescriberDea",), "prescriber_dea_required")
    ]


def test_uncontrolled_prescriptions_need_no_prescriber_dea() -> None:
    request = encounter(encounter_payload(prescriptions=[prescription_payload()]))
    assert request.prescriber_dea is None


def test_prescriber_dea_must_have_a_valid_check_digit() -> None:
    payload = full_encounter_payload()
    payload["prescriberDea"] = "AB1234564"
    assert failures(payload) == [(("prescriberDea",), "invalid_dea")]


def test_at_most_twenty_prescriptions() -> None:
    payload = encounter_payload(prescriptions=[prescription_payload()] * 21)
    assert failures(payload) == [(("prescriptions",), "too_long")]


def test_controlled_prescription_count_counts_scheduled_drugs() -> None:
    assert encounter().controlled_prescription_count == 1


def test_patient_model_can_be_built_directly() -> None:
    patient = Patient.model_validate(patient_payload(), context={"today": TODAY})
    assert patient.birth_date == date(1961, 7, 4)
