import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from unit_factories import VALID_NPI, encounter

from carebus.billing import build_claim, claim_id_for
from carebus.errors import NothingToBillError
from carebus.models import Diagnosis, Procedure

ENCOUNTER_ID = "6f1c2b9e-3d4a-4f5b-8c7d-9e0a1b2c3d4e"


def test_claim_has_one_numbered_line_per_procedure() -> None:
    request = encounter()
    claim = build_claim(ENCOUNTER_ID, request.practitioner_npi, request.diagnoses, request.procedures)
    assert [(line.line_number, line.code, line.amount_cents) for line in claim.lines] == [
        (1, "99213", 12_500),
        (2, "J3490", 900),
    ]
    assert claim.total_cents == 13_400


def test_claim_carries_ids_diagnoses_in_order_and_submitted_status() -> None:
    diagnoses = [Diagnosis(system="ICD-10-CM", code=code) for code in ("I10", "E11.9", "Z79.4")]
    procedures = [Procedure(system="CPT", code="99213", units=1, charge_cents=100)]
    claim = build_claim(ENCOUNTER_ID, VALID_NPI, diagnoses, procedures)
    assert (claim.claim_id, claim.encounter_id, claim.practitioner_npi, claim.status) == (
        f"clm-{ENCOUNTER_ID}",
        ENCOUNTER_ID,
        VALID_NPI,
        "SUBMITTED",
    )
    assert claim.diagnosis_codes == ("I10", "E11.9", "Z79.4")


def test_claim_id_is_derived_from_the_encounter_id() -> None:
    assert claim_id_for("enc-1") == "clm-enc-1"


def test_encounter_without_procedures_has_nothing_to_bill() -> None:
    request = encounter()
    with pytest.raises(NothingToBillError):
        build_claim(ENCOUNTER_ID, VALID_NPI, request.diagnoses, [])


def test_claim_item_is_camel_case_json_with_integer_amounts() -> None:
    request = encounter()
    item = build_claim(ENCOUNTER_ID, VALID_NPI, request.diagnoses, request.procedures).to_item()
    assert item == {
        "claimId": f"clm-{ENCOUNTER_ID}",
        "encounterId": ENCOUNTER_ID,
        "practitionerNpi": VALID_NPI,
        "diagnosisCodes": ["E11.9"],
        "lines": [
            {
                "lineNumber": 1,
                "system": "CPT",
                "code": "99213",
                "units": 1,
                "chargeCents": 12_500,
                "amountCents": 12_500,
            },
            {
                "lineNumber": 2,
                "system": "HCPCS",
                "code": "J3490",
                "units": 2,
                "chargeCents": 450,
                "amountCents": 900,
            },
        ],
        "totalCents": 13_400,
        "status": "SUBMITTED",
    }
    assert json.loads(json.dumps(item)) == item


def cpt_procedure(units: int, charge_cents: int) -> Procedure:
    return Procedure(system="CPT", code="99213", units=units, charge_cents=charge_cents)


procedures_strategy = st.lists(
    st.builds(cpt_procedure, st.integers(1, 999), st.integers(0, 100_000_000)), min_size=1, max_size=50
)


@given(procedures_strategy)
def test_total_is_the_sum_of_units_times_charge_in_exact_integer_cents(procedures: list[Procedure]) -> None:
    diagnoses = [Diagnosis(system="ICD-10-CM", code="E11.9")]
    item = build_claim(ENCOUNTER_ID, VALID_NPI, diagnoses, procedures).to_item()
    assert item["totalCents"] == sum(p.units * p.charge_cents for p in procedures)
    assert type(item["totalCents"]) is int
    assert [line["lineNumber"] for line in item["lines"]] == list(range(1, len(procedures) + 1))
