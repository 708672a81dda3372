"""What a chaos run sends: a seeded mix of valid encounters, and poison of several kinds for every queue.

Everything that the run later checks is derived with the domain's own functions (claim, appointment,
prescription and approval ids, routing, event ids), never restated here.
"""

import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final

from carebus.approvals import approval_id_for
from carebus.codes import npi_check_digit
from carebus.models import EncounterRequest
from carebus.prescribing import prescription_id_for

PRESCRIBER_DEA: Final = "AB1234563"
_DIAGNOSES: Final = ("J02.9", "M54.50", "E11.9", "I10", "J20.9")
_PROCEDURES: Final = (
    {"system": "CPT", "code": "99213", "units": 1, "chargeCents": 12500},
    {"system": "CPT", "code": "99214", "units": 1, "chargeCents": 18000},
    {"system": "HCPCS", "code": "J1885", "units": 2, "chargeCents": 1875},
)
_UNCONTROLLED: Final = {
    "rxnormCode": "308182",
    "drug": "Amoxicillin 500 MG Oral Capsule",
    "quantity": 30,
    "refills": 0,
    "deaSchedule": None,
}
_CONTROLLED: Final = (
    {
        "rxnormCode": "1049621",
        "drug": "Oxycodone 5 MG Oral Tablet",
        "quantity": 12,
        "refills": 0,
        "deaSchedule": "II",
    },
    {
        "rxnormCode": "197442",
        "drug": "Lorazepam 1 MG Oral Tablet",
        "quantity": 20,
        "refills": 2,
        "deaSchedule": "IV",
    },
)


@dataclass(frozen=True, slots=True)
class PlannedEncounter:
    """One submission the run makes: its Idempotency-Key and body."""

    number: int
    key: str
    body: dict[str, Any]

    @property
    def request(self) -> EncounterRequest:
        return EncounterRequest.model_validate(self.body)

    def prescription_ids(self, encounter_id: str) -> list[str]:
        return [
            prescription_id_for(encounter_id, index)
            for index in range(1, len(self.body["prescriptions"]) + 1)
        ]

    def approval_ids(self, encounter_id: str) -> list[str]:
        return [
            approval_id_for(prescription_id)
            for prescription_id, prescription in zip(
                self.prescription_ids(encounter_id), self.body["prescriptions"], strict=True
            )
            if prescription.get("deaSchedule")
        ]


def practitioner_npis(count: int) -> list[str]:
    """Valid NPIs (the domain's check digit), one per practitioner whose calendar the run books."""
    return [
        f"{base}{npi_check_digit(base)}"
        for base in (f"{1_234_567_00 + number:09d}" for number in range(count))
    ]


def _weekday_on_or_after(day: date) -> date:
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def encounter_mix(count: int, seed: int, today: date, practitioners: int) -> list[PlannedEncounter]:
    """count encounters: most with procedures, half with a follow-up (a few of them in a window that has
    already passed), more than half with prescriptions, a third of those with a controlled one."""
    generator = random.Random(seed)  # noqa: S311 - a reproducible workload, not security
    npis = practitioner_npis(practitioners)
    planned = []
    for number in range(count):
        body: dict[str, Any] = {
            "patient": {
                "id": f"CHAOS-{seed}-{number}",
                "name": f"Chaos Patient {number}",
                "birthDate": "1975-06-15",
                "insuranceMemberId": f"CH{number:010d}",
            },
            "practitionerNpi": generator.choice(npis),
            "encounterDate": today.isoformat(),
            "encounterType": generator.choice(("OFFICE", "TELEHEALTH", "URGENT_CARE")),
            "diagnoses": [{"system": "ICD-10-CM", "code": generator.choice(_DIAGNOSES)}],
            "procedures": generator.sample(_PROCEDURES, k=generator.choice((0, 1, 1, 2, 3, 3, 2))),
            "prescriptions": [],
        }
        if generator.random() < 0.5:
            if generator.random() < 0.05:  # a window that has already passed: waitlisted
                encounter_date = today - timedelta(days=14)
                body["encounterDate"] = encounter_date.isoformat()
                earliest, latest = encounter_date, encounter_date + timedelta(days=3)
            else:
                earliest = _weekday_on_or_after(today + timedelta(days=2))
                latest = earliest + timedelta(days=6)
            body["followUp"] = {
                "earliest": earliest.isoformat(),
                "latest": latest.isoformat(),
                "visitType": "OFFICE",
            }
        if generator.random() < 0.6:
            body["prescriptions"].append(dict(_UNCONTROLLED))
            if generator.random() < 0.35:
                body["prescriptions"].append(dict(generator.choice(_CONTROLLED)))
                body["prescriberDea"] = PRESCRIBER_DEA
        planned.append(PlannedEncounter(number, f"chaos-{seed}-{number}", body))
    return planned


@dataclass(frozen=True, slots=True)
class Poison:
    """A message that breaks the contract of the queue it is sent to; it must end in that queue's DLQ."""

    queue: str
    kind: str
    body: str


def reference_poison(queue: str, marker: str) -> list[Poison]:
    """Poison for a queue of encounter references: not JSON, the wrong schema, and an unknown encounter."""
    return [
        Poison(queue, "not-json", f"{{not json {marker}"),
        Poison(queue, "wrong-schema", json.dumps({"schemaVersion": 2, "encounterId": marker})),
        Poison(queue, "unknown-encounter", json.dumps({"schemaVersion": 1, "encounterId": marker})),
    ]


def token_poison(queue: str, marker: str) -> list[Poison]:
    """Poison for the task-token queue: a token message for no approval id carebus could issue."""
    return [
        Poison(queue, "not-json", f"{{not json {marker}"),
        Poison(
            queue,
            "wrong-approval",
            json.dumps({"approvalId": marker, "stage": "REQUESTED", "taskToken": "x"}),
        ),
    ]


def misrouted_poison(queue: str, encounter_id: str, reference: str) -> Poison:
    """A valid reference to an encounter this queue's filter policy would never route to it."""
    return Poison(queue, f"misrouted ({encounter_id})", reference)


def poison_for(reference_queues: Sequence[str], token_queues: Sequence[str]) -> list[Poison]:
    """Every kind of poison for every queue, each with its own marker so that it is found by its body."""
    poison = [item for queue in reference_queues for item in reference_poison(queue, str(uuid.uuid4()))]
    return poison + [
        item for queue in token_queues for item in token_poison(queue, f"apr-poison-{uuid.uuid4()}")
    ]
