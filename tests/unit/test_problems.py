import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError, field_validator
from unit_factories import PATIENT_PHI, TODAY, encounter_payload, patient_payload, procedure_payload

from carebus.models import EncounterRequest
from carebus.problems import PROBLEM_TYPE_BASE, problem, validation_problem


def validation_error(payload: Any) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        EncounterRequest.model_validate(payload, context={"today": TODAY})
    return caught.value


def test_validation_problem_is_an_rfc_9457_body_listing_each_failure() -> None:
    payload = encounter_payload(procedures=[procedure_payload(code="J3490")], encounterType="SURGERY")
    body = validation_problem(validation_error(payload))
    assert body == {
        "type": "https://carebus.dev/problems/validation-error",
        "title": "The request is invalid",
        "status": 400,
        "detail": "2 fields failed validation",
        "errors": [
            {
                "field": "encounterType",
                "message": "Input should be 'OFFICE', 'TELEHEALTH', 'URGENT_CARE' or 'HOME'",
                "code": "literal_error",
            },
            {
                "field": "procedures[0].code",
                "message": "Must be a CPT code such as 99213",
                "code": "invalid_cpt",
            },
        ],
    }


def test_single_failure_is_described_in_the_singular() -> None:
    body = validation_problem(validation_error(encounter_payload(encounterType="SURGERY")))
    assert body["detail"] == "1 field failed validation"


def test_nested_list_and_object_locations_become_dotted_paths_with_indices() -> None:
    patient = {**patient_payload(), "name": ""}
    payload = encounter_payload(patient=patient, diagnoses=[{"system": "ICD-10-CM", "code": "E11.9"}, {}])
    fields = [error["field"] for error in validation_problem(validation_error(payload))["errors"]]
    assert fields == ["patient.name", "diagnoses[1].system", "diagnoses[1].code"]


def test_model_level_failure_has_an_empty_field() -> None:
    body = validation_problem(validation_error("not an object"))
    assert [(error["field"], error["code"]) for error in body["errors"]] == [("", "model_type")]


def test_submitted_values_never_appear_in_the_problem() -> None:
    # Every PHI value is placed where it fails validation, so each one is a candidate for echoing.
    patient = {
        "id": "pat-1",
        "name": PATIENT_PHI["name"] * 20,
        "birthDate": PATIENT_PHI["insuranceMemberId"],
        "insuranceMemberId": 1961,
    }
    payload = encounter_payload(
        patient=patient, encounterDate=PATIENT_PHI["name"], extraNote=PATIENT_PHI["name"]
    )
    rendered = json.dumps(validation_problem(validation_error(payload)))
    for value in (PATIENT_PHI["name"], PATIENT_PHI["insuranceMemberId"], "1961"):
        assert value not in rendered


class _Quoting(BaseModel):
    note: str

    @field_validator("note")
    @classmethod
    def _reject(cls, note: str) -> str:
        raise ValueError(f"cannot accept {note}")


def test_messages_that_could_quote_the_input_are_replaced_by_a_generic_one() -> None:
    with pytest.raises(ValidationError) as caught:
        _Quoting(note=PATIENT_PHI["name"])
    assert validation_problem(caught.value)["errors"] == [
        {"field": "note", "message": "Invalid value", "code": "value_error"}
    ]


def test_problem_builds_the_type_from_the_suffix_and_appends_extra_members() -> None:
    assert problem(
        409, "Already exists", "The encounter was already submitted", "conflict", instance="/x"
    ) == {
        "type": PROBLEM_TYPE_BASE + "conflict",
        "title": "Already exists",
        "status": 409,
        "detail": "The encounter was already submitted",
        "instance": "/x",
    }


def test_a_body_that_is_not_json_is_reported_as_the_failed_field() -> None:
    body = validation_problem(body_not_json=True)
    assert (body["status"], body["type"]) == (400, PROBLEM_TYPE_BASE + "validation-error")
    assert body["detail"] == "The request body is not valid JSON"
    assert body["errors"] == [{"field": "body", "message": "Must be a JSON object", "code": "json_invalid"}]


def test_a_body_that_is_not_json_is_listed_beside_the_headers_failures() -> None:
    with pytest.raises(ValidationError) as caught:
        EncounterRequest.model_validate({}, context={"today": TODAY})
    body = validation_problem(caught.value, body_not_json=True)
    assert body["errors"][-1]["field"] == "body"
    assert body["detail"] == f"{len(body['errors'])} fields failed validation"
