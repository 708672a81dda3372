"""Encounters to submit that stay valid whatever the day: their dates are today's, their follow-up windows
ahead. The demo, the end-to-end suite and `carebus submit --sample` use them."""

from datetime import date, timedelta
from typing import Any, Final

VALID_NPI: Final = "1234567893"
INVALID_NPI: Final = "1234567890"  # wrong check digit
PRESCRIBER_DEA: Final = "AB1234563"


def follow_up_window(today: date) -> tuple[date, date]:
    """Upcoming weekdays, starting at least two days ahead, so the fresh stack has free slots in them."""
    earliest = today + timedelta(days=2)
    while earliest.weekday() >= 5:
        earliest += timedelta(days=1)
    return earliest, earliest + timedelta(days=6)


def _patient(number: int) -> dict[str, str]:
    """A made-up patient: demographics are PHI in carebus, so the demo never shows them again."""
    return {
        "id": f"DEMO-{number:04d}",
        "name": f"Demo Patient {number}",
        "birthDate": "1980-01-01",
        "insuranceMemberId": f"DEMO{number:08d}",
    }


def _procedures() -> list[dict[str, Any]]:
    return [
        {"system": "CPT", "code": "99213", "units": 1, "chargeCents": 12500},
        {"system": "HCPCS", "code": "J1885", "units": 2, "chargeCents": 1875},
    ]


AMOXICILLIN = {
    "rxnormCode": "308182",
    "drug": "Amoxicillin 500 MG Oral Capsule",
    "quantity": 30,
    "refills": 0,
    "deaSchedule": None,
}
OXYCODONE = {
    "rxnormCode": "1049621",
    "drug": "Oxycodone Hydrochloride 5 MG Oral Tablet",
    "quantity": 12,
    "refills": 0,
    "deaSchedule": "II",
}


def full_encounter(today: date) -> dict[str, Any]:
    """Procedures, a follow-up and two prescriptions, one of them controlled (schedule II)."""
    earliest, latest = follow_up_window(today)
    return {
        "patient": _patient(1),
        "practitionerNpi": VALID_NPI,
        "encounterDate": today.isoformat(),
        "encounterType": "OFFICE",
        "diagnoses": [{"system": "ICD-10-CM", "code": "J02.9"}],
        "procedures": _procedures(),
        "followUp": {"earliest": earliest.isoformat(), "latest": latest.isoformat(), "visitType": "OFFICE"},
        "prescriptions": [AMOXICILLIN, OXYCODONE],
        "prescriberDea": PRESCRIBER_DEA,
    }


def billing_only_encounter(today: date) -> dict[str, Any]:
    """Procedures and one uncontrolled prescription: no follow-up, nothing for a pharmacist."""
    return {
        "patient": _patient(2),
        "practitionerNpi": VALID_NPI,
        "encounterDate": (today - timedelta(days=1)).isoformat(),
        "encounterType": "TELEHEALTH",
        "diagnoses": [{"system": "ICD-10-CM", "code": "M54.50"}],
        "procedures": _procedures()[:1],
        "prescriptions": [AMOXICILLIN],
    }


def invalid_encounter(today: date) -> dict[str, Any]:
    """A wrong NPI check digit and an encounter date in the future: refused field by field."""
    return {
        **billing_only_encounter(today),
        "patient": _patient(3),
        "practitionerNpi": INVALID_NPI,
        "encounterDate": (today + timedelta(days=30)).isoformat(),
    }
