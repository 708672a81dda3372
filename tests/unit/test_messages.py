import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from unit_factories import PATIENT_PHI, encounter, encounter_payload, prescription_payload

from carebus.errors import MalformedMessageError
from carebus.messages import EncounterReference, parse_reference, reference_body, routing_attributes

ENCOUNTER_ID = "6f1c2b9e-3d4a-4f5b-8c7d-9e0a1b2c3d4e"


def test_reference_body_is_compact_camel_case_json() -> None:
    assert reference_body(ENCOUNTER_ID) == f'{{"schemaVersion":1,"encounterId":"{ENCOUNTER_ID}"}}'


@given(st.uuids())
def test_any_encounter_id_survives_the_round_trip(encounter_id: uuid.UUID) -> None:
    reference = parse_reference(reference_body(str(encounter_id)))
    assert reference == EncounterReference(schema_version=1, encounter_id=str(encounter_id))


@pytest.mark.parametrize(
    ("body", "reported"),
    [
        ("not json", "json_invalid"),
        ("[]", "model_type"),
        ('{"schemaVersion":2,"encounterId":"' + ENCOUNTER_ID + '"}', "schemaVersion: literal_error"),
        ('{"schemaVersion":1}', "encounterId: missing"),
        ('{"schemaVersion":1,"encounterId":"' + ENCOUNTER_ID.upper() + '"}', "string_pattern_mismatch"),
        ('{"schemaVersion":1,"encounterId":"' + ENCOUNTER_ID + '\\n"}', "string_pattern_mismatch"),
        ('{"schemaVersion":1,"encounterId":"' + ENCOUNTER_ID + '","patient":{}}', "patient: extra_forbidden"),
    ],
)
def test_malformed_bodies_raise_naming_the_failure(body: str, reported: str) -> None:
    with pytest.raises(MalformedMessageError, match=reported):
        parse_reference(body)


def test_malformed_message_error_neither_quotes_nor_chains_the_payload() -> None:
    body = json.dumps({"schemaVersion": 1, "encounterId": PATIENT_PHI["name"]})
    with pytest.raises(MalformedMessageError) as caught:
        parse_reference(body)
    assert PATIENT_PHI["name"] not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_routing_attributes_are_sns_message_attributes_with_counts_and_flags() -> None:
    assert routing_attributes(ENCOUNTER_ID, encounter()) == {
        "encounterId": {"DataType": "String", "StringValue": ENCOUNTER_ID},
        "procedureCount": {"DataType": "Number", "StringValue": "2"},
        "followUpRequested": {"DataType": "String", "StringValue": "true"},
        "prescriptionCount": {"DataType": "Number", "StringValue": "2"},
        "controlledPrescriptionCount": {"DataType": "Number", "StringValue": "1"},
    }


def test_minimal_encounter_routes_to_no_optional_workflow() -> None:
    request = encounter(encounter_payload(prescriptions=[prescription_payload()]))
    attributes = routing_attributes(ENCOUNTER_ID, request)
    assert {name: attribute["StringValue"] for name, attribute in attributes.items()} == {
        "encounterId": ENCOUNTER_ID,
        "procedureCount": "0",
        "followUpRequested": "false",
        "prescriptionCount": "1",
        "controlledPrescriptionCount": "0",
    }


def test_routing_attributes_carry_no_patient_data() -> None:
    request = encounter()
    rendered = json.dumps(routing_attributes(ENCOUNTER_ID, request))
    for value in (*PATIENT_PHI.values(), request.patient.id):
        assert value not in rendered
