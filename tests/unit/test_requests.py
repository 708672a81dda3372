"""A request body becomes a request model strictly: JSON only, by its JSON names, every value as sent."""

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from unit_factories import TODAY, encounter_payload, full_encounter_payload, procedure_payload

from carebus.approvals import DecisionRequest
from carebus.errors import BodyNotJsonError
from carebus.models import EncounterRequest
from carebus.requests import parse_request

CONTEXT = {"today": TODAY}


def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def refusals(payload: Any) -> list[tuple[tuple[int | str, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        parse_request(EncounterRequest, body(payload), CONTEXT)
    return [(error["loc"], error["type"]) for error in caught.value.errors()]


def test_a_valid_body_is_parsed_by_its_json_names() -> None:
    request = parse_request(EncounterRequest, body(full_encounter_payload()), CONTEXT)
    assert request.procedures[1].charge_cents == 450


@pytest.mark.parametrize(
    ("units", "code"),
    [(True, "int_type"), ("7", "int_type"), (1.0, "int_type"), (233.5, "int_type")],
    ids=["boolean", "string", "float-with-zero-fraction", "float"],
)
def test_an_integer_field_takes_a_json_integer_only(units: Any, code: str) -> None:
    payload = encounter_payload(procedures=[procedure_payload(units=units)])
    assert refusals(payload) == [(("procedures", 0, "units"), code)]


def test_an_exponent_is_not_an_integer() -> None:
    text = body(encounter_payload(procedures=[procedure_payload(chargeCents=12_500)]))
    text = text.replace(b'"chargeCents": 12500', b'"chargeCents": 1.25e4')
    with pytest.raises(ValidationError) as caught:
        parse_request(EncounterRequest, text, CONTEXT)
    assert [error["loc"] for error in caught.value.errors()] == [("procedures", 0, "chargeCents")]


@pytest.mark.parametrize("value", ["2025-03-12T00:00:00", "20250312", 1741737600], ids=str)
def test_a_date_is_a_calendar_date_string_only(value: Any) -> None:
    assert [loc for loc, _ in refusals(encounter_payload(encounterDate=value))] == [("encounterDate",)]


def test_python_names_are_not_part_of_the_json_contract() -> None:
    payload = encounter_payload()
    payload["practitioner_npi"] = payload.pop("practitionerNpi")
    assert refusals(payload) == [(("practitionerNpi",), "missing")]


def test_a_null_optional_field_is_an_absent_one() -> None:
    request = parse_request(
        EncounterRequest, body(encounter_payload(followUp=None, prescriberDea=None)), CONTEXT
    )
    assert (request.follow_up, request.prescriber_dea) == (None, None)


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"{",
        b"[]",
        b'"a string"',
        b"null",
        b"\xff\xfe{}",
        b'{"patient": "\xe9"}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b'{"decision": "APPROVE", "decision": "REJECT"}',
        b'{"decision": "\\ud800"}',
    ],
    ids=[
        "empty",
        "broken",
        "array",
        "string",
        "null",
        "not-utf-8",
        "latin-1-inside",
        "deep-arrays",
        "deep-objects",
        "duplicate-name",
        "lone-surrogate",
    ],
)
@pytest.mark.parametrize("model", [EncounterRequest, DecisionRequest], ids=lambda model: model.__name__)
def test_what_is_not_one_json_object_is_refused_as_not_json(model: Any, text: bytes) -> None:
    with pytest.raises(BodyNotJsonError):
        parse_request(model, text, CONTEXT)


@given(
    st.recursive(st.integers() | st.text(max_size=3), lambda inner: st.lists(inner, max_size=3), max_leaves=8)
)
def test_any_json_that_is_not_an_object_is_refused_as_not_json(value: Any) -> None:
    with pytest.raises(BodyNotJsonError):
        parse_request(DecisionRequest, body(value), CONTEXT)


def test_a_lone_surrogate_inside_a_text_field_is_refused_where_it_is() -> None:
    text = body({"decision": "REJECT", "reason": "x"}).replace(b'"x"', b'"x\\udc00y"')
    with pytest.raises((ValidationError, BodyNotJsonError)):
        parse_request(DecisionRequest, text, CONTEXT)


def test_birth_date_must_not_be_after_the_encounter() -> None:
    payload = encounter_payload(encounterDate="2025-03-01")
    payload["patient"]["birthDate"] = "2025-03-02"
    assert refusals(payload) == [(("patient", "birthDate"), "birth_date_after_encounter")]


def test_birth_date_may_be_the_day_of_the_encounter() -> None:
    payload = encounter_payload(encounterDate="2025-03-01")
    payload["patient"]["birthDate"] = "2025-03-01"
    assert (
        parse_request(EncounterRequest, body(payload), CONTEXT).patient.birth_date.isoformat() == "2025-03-01"
    )


@pytest.mark.parametrize(("birth_date", "refused"), [("1899-12-31", True), ("1900-01-01", False)])
def test_birth_date_floor(birth_date: str, refused: bool) -> None:
    payload = encounter_payload()
    payload["patient"]["birthDate"] = birth_date
    if refused:
        assert refusals(payload) == [(("patient", "birthDate"), "birth_date_too_early")]
    else:
        assert parse_request(EncounterRequest, body(payload), CONTEXT).patient.birth_date.year == 1900


@pytest.mark.parametrize(
    "name",
    [
        "Zel\x00da",
        "\u200b",
        "\u200b\u200b",
        "Zelda\u202e",
        "\u202eadleZ",
        "\ufeffZelda",
        "Zel\nda",
        "Zelda\ufffd",
    ],
    ids=[
        "nul",
        "zero-width",
        "zero-widths",
        "bidi-override-end",
        "bidi-override",
        "bom",
        "newline",
        "replacement",
    ],
)
def test_a_name_refuses_control_and_format_characters_at_its_field(name: str) -> None:
    payload = encounter_payload()
    payload["patient"]["name"] = name
    assert refusals(payload) == [(("patient", "name"), "text_characters")]


@pytest.mark.parametrize(
    "name",
    [
        "Zoë Ångström",
        "\u0645\u062d\u0645\u062f\u200c\u0631\u0636\u0627",  # Persian, a zero-width non-joiner inside
        "José-María O'Neil",
        "李小龍",
        "👩\u200d⚕️ Dr",
    ],
)
def test_a_name_in_any_script_is_accepted_as_written(name: str) -> None:
    payload = encounter_payload()
    payload["patient"]["name"] = name
    assert parse_request(EncounterRequest, body(payload), CONTEXT).patient.name == name
