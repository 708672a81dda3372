"""Consuming encounter references (billing, scheduling, prescriptions): the batch's encounters read at once,
each record processed idempotently on the encounter, the batch's events put together.

A consumer imports what it needs of the encounter (StoredEncounter) from here, after carebus.adapters.consumer
has loaded Powertools' batch utility: loaded after pydantic, that utility also builds every Powertools parser
model (about 100 ms of each cold start; tests/unit/test_cold_start_imports.py holds the order)."""

from collections.abc import Callable, Sequence
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig
from aws_lambda_powertools.utilities.typing import LambdaContext

from carebus.adapters.consumer import consume_messages
from carebus.adapters.dynamo import Table
from carebus.adapters.encounters import EncounterNotFoundError, StoredEncounter, stored_encounter
from carebus.adapters.eventbus import Entry
from carebus.messages import EncounterReference, parse_reference

__all__ = ["ONCE_PER_ENCOUNTER", "StoredEncounter", "consume_references"]

# A consumer writes its record at most once per encounter; a week outlives any SQS redelivery (4 days).
ONCE_PER_ENCOUNTER = IdempotencyConfig(event_key_jmespath="encounterId", expires_after_seconds=7 * 24 * 3600)


def consume_references(
    event: dict[str, Any],
    context: LambdaContext,
    process: Callable[..., dict[str, Any]],
    logger: Logger,
    *,
    encounters: Table,
    events_client: Any,
) -> dict[str, Any]:
    """Call process(reference={...}, encounter=StoredEncounter) for each encounter reference, with every
    encounter of the batch read in one request first; process is idempotent on ONCE_PER_ENCOUNTER (so
    duplicate deliveries of one encounter write nothing twice) and returns its record's summary with the
    PutEvents entries it announces under "events"."""
    ONCE_PER_ENCOUNTER.register_lambda_context(context)
    stored: dict[str, dict[str, Any]] = {}

    def read_encounters(references: list[EncounterReference]) -> None:
        ids = sorted({reference.encounter_id for reference in references})
        stored.update(
            (record["encounterId"], record)
            for record in encounters.get_many([{"encounterId": id_} for id_ in ids])
        )

    def process_reference(reference: EncounterReference) -> Sequence[Entry]:
        record = stored.get(reference.encounter_id)
        if record is None:
            raise EncounterNotFoundError(f"no encounter {reference.encounter_id}")
        encounter: StoredEncounter = stored_encounter(record)
        return process(reference=reference.model_dump(mode="json"), encounter=encounter)["events"]

    return consume_messages(
        event,
        context,
        parse=parse_reference,
        process=process_reference,
        log_keys=lambda reference: {"encounter_id": reference.encounter_id},
        logger=logger,
        prepare=read_encounters,
        events_client=events_client,
    )
