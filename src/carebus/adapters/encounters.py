"""Loading a stored encounter: the one read of PHI that consumers and the query make."""

from dataclasses import dataclass
from typing import Any

from carebus.adapters.dynamo import Table
from carebus.errors import NotFoundError
from carebus.models import EncounterRequest


class EncounterNotFoundError(NotFoundError):
    """No encounter is stored under the id; for a queue message this is a poison reference."""


@dataclass(frozen=True, slots=True)
class StoredEncounter:
    """An encounter record: who submitted it, when, and the validated request (PHI inside)."""

    encounter_id: str
    submitted_by: str
    submitted_at: str
    published_at: str | None
    request: EncounterRequest


def load_encounter(table: Table, encounter_id: str) -> StoredEncounter:
    record = table.get({"encounterId": encounter_id})
    if record is None:
        raise EncounterNotFoundError(f"no encounter {encounter_id}")
    return stored_encounter(record)


def stored_encounter(record: dict[str, Any]) -> StoredEncounter:
    # model_construct would skip validation; validating again costs little and catches a corrupt record.
    return StoredEncounter(
        encounter_id=record["encounterId"],
        submitted_by=record["submittedBy"],
        submitted_at=record["submittedAt"],
        published_at=record.get("publishedAt"),
        request=EncounterRequest.model_validate(record["encounter"]),
    )
