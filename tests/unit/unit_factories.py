"""Valid request payloads for unit tests; each call returns a fresh, independently mutable copy."""

from datetime import date
from typing import Any

from carebus.models import EncounterRequest

TODAY = date(2025, 3, 12)
VALID_NPI = "1234567893"
VALID_DEA = "AB1234563"
PATIENT_PHI = {"name": "Zelda Quixote", "birthDate": "1961-07-04", "insuranceMemberId": "MBR-77X1Q9"}


def patient_payload() -> dict[str, Any]:
    return {"id": "pat-0001", **PATIENT_PHI}


def procedure_payload(**overrides: Any) -> dict[str, Any]:
    return {"system": "CPT", "code": "99213", "units": 1, "chargeCents": 12_500, **overrides}


def prescription_payload(**overrides: Any) -> dict[str, Any]:
    return {
        "rxnormCode": "197361",
        "drug": "amlodipine 5 mg tablet",
        "quantity": 30,
        "refills": 2,
        **overrides,
    }


def encounter_payload(**overrides: Any) -> dict[str, Any]:
    return {
        "patient": patient_payload(),
        "practitionerNpi": VALID_NPI,
        "encounterDate": TODAY.isoformat(),
        "encounterType": "OFFICE",
        "diagnoses": [{"system": "ICD-10-CM", "code": "E11.9"}],
        **overrides,
    }


def full_encounter_payload() -> dict[str, Any]:
    return encounter_payload(
        procedures=[
            procedure_payload(),
            procedure_payload(system="HCPCS", code="J3490", units=2, chargeCents=450),
        ],
        followUp={"earliest": "2025-03-19", "latest": "2025-04-02", "visitType": "OFFICE"},
        prescriptions=[prescription_payload(), prescription_payload(deaSchedule="II", refills=0)],
        prescriberDea=VALID_DEA,
    )


def encounter(payload: dict[str, Any] | None = None) -> EncounterRequest:
    return EncounterRequest.model_validate(payload or full_encounter_payload(), context={"today": TODAY})
