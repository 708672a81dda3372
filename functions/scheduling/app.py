"""Scheduling: book the earliest free follow-up slot of the practitioner, or waitlist the request (every
slot taken, or the window already over)."""

import os
from datetime import UTC, date, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import idempotent_function
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from carebus.adapters.dynamo import Table, cancellation_reasons, to_item
from carebus.adapters.eventbus import entries
from carebus.adapters.idempotency import idempotency_store
from carebus.adapters.references import ONCE_PER_ENCOUNTER, StoredEncounter, consume_references
from carebus.adapters.tracing import TRACED_LIBRARIES
from carebus.business_metrics import ENCOUNTER_TO_APPOINTMENT, milliseconds_since
from carebus.errors import MalformedMessageError
from carebus.events import DomainEvent, appointment_booked, appointment_waitlisted
from carebus.scheduling import (
    NO_FREE_SLOT,
    WINDOW_PASSED,
    appointment_id_for,
    candidate_slots,
    free_slots,
    slot_key,
    window_has_passed,
)

logger = Logger()
tracer = Tracer(patch_modules=TRACED_LIBRARIES)
metrics = Metrics()

dynamodb = boto3.client("dynamodb")
events = boto3.client("events")
encounters = Table(dynamodb, os.environ["ENCOUNTERS_TABLE"])
appointments = Table(dynamodb, os.environ["APPOINTMENTS_TABLE"])
BUS_NAME = os.environ["EVENT_BUS_NAME"]


def current_time() -> datetime:
    """Now, in UTC; the one clock scheduling reads (tests set it to book into fixed windows)."""
    return datetime.now(UTC)


def _practitioner_key(npi: str) -> str:
    return f"PRACTITIONER#{npi}"


def _appointment_key(encounter_id: str) -> dict[str, str]:
    return {"pk": f"ENCOUNTER#{encounter_id}", "sk": "APPOINTMENT"}


def booked_starts(npi: str, first: datetime, last: datetime) -> list[datetime]:
    records = appointments.query(
        "pk = :pk AND sk BETWEEN :first AND :last",
        {":pk": _practitioner_key(npi), ":first": slot_key(npi, first), ":last": slot_key(npi, last)},
    )
    return [datetime.fromisoformat(record["start"]) for record in records]


def try_book(appointment: dict[str, Any], npi: str, start: datetime) -> str:
    """Take the slot and write the appointment in one transaction: "booked", "slot-taken" or "exists"."""
    slot = {
        "pk": _practitioner_key(npi),
        "sk": slot_key(npi, start),
        "start": start.isoformat(),
        "encounterId": appointment["encounterId"],
        "appointmentId": appointment["appointmentId"],
    }
    try:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": appointments.name, "Item": to_item(item), "ConditionExpression": check}}
                for item, check in (
                    (slot, "attribute_not_exists(pk)"),
                    (
                        {**appointment, "status": "BOOKED", "start": start.isoformat()},
                        "attribute_not_exists(pk)",
                    ),
                )
            ]
        )
    except ClientError as error:
        reasons = cancellation_reasons(error)
        if reasons is None:
            raise
        if len(reasons) == 2 and reasons[1] == "ConditionalCheckFailed":
            return "exists"
        if len(reasons) == 2 and reasons[0] == "ConditionalCheckFailed":
            return "slot-taken"
        raise
    return "booked"


def book_earliest_free_slot(
    appointment: dict[str, Any], npi: str, earliest: date, latest: date, now: datetime
) -> dict[str, Any] | None:
    """Book the earliest free slot of the window: the appointment as booked now, the stored one when an
    earlier delivery already wrote it, or None when no slot is free."""
    candidates = candidate_slots(earliest, latest, not_before=now)
    booked = booked_starts(npi, candidates[0], candidates[-1]) if candidates else []
    for start in free_slots(candidates, booked):
        outcome = try_book(appointment, npi, start)
        if outcome == "slot-taken":
            continue
        if outcome == "exists":
            return stored_appointment(appointment)
        metrics.add_metric(name="AppointmentsBooked", unit=MetricUnit.Count, value=1)
        return {**appointment, "status": "BOOKED", "start": start.isoformat()}
    return None


def waitlist(appointment: dict[str, Any], reason: str) -> dict[str, Any]:
    """The appointment waitlisted now, or the stored one when an earlier delivery already wrote it."""
    record = {**appointment, "status": "WAITLISTED", "reason": reason}
    if not appointments.put_new(record, "pk"):
        return stored_appointment(appointment)
    metrics.add_metric(name="AppointmentsWaitlisted", unit=MetricUnit.Count, value=1)
    return record


def stored_appointment(appointment: dict[str, Any]) -> dict[str, Any]:
    """What an earlier delivery wrote (booked or waitlisted): the encounter's one appointment, announced
    as it was stored. Only a redelivery after a lost idempotency record reads it."""
    record = appointments.get(_appointment_key(appointment["encounterId"]))
    if record is None:  # a write that reported the record as existing: never absent afterwards
        raise RuntimeError("the appointment an earlier delivery wrote is not stored")
    return record


def event_for(record: dict[str, Any]) -> DomainEvent:
    if record["status"] == "BOOKED":
        return appointment_booked(
            record["encounterId"], record["appointmentId"], datetime.fromisoformat(record["start"])
        )
    return appointment_waitlisted(record["encounterId"], record["appointmentId"], record["reason"])


@idempotent_function(
    data_keyword_argument="reference",
    config=ONCE_PER_ENCOUNTER,
    persistence_store=idempotency_store(dynamodb),
)
@tracer.capture_method
def schedule(reference: dict[str, Any], encounter: StoredEncounter) -> dict[str, Any]:
    follow_up = encounter.request.follow_up
    if follow_up is None:
        raise MalformedMessageError("the encounter asks for no follow-up; the message was misrouted")
    npi = encounter.request.practitioner_npi
    now = current_time()
    appointment = {
        **_appointment_key(encounter.encounter_id),
        "encounterId": encounter.encounter_id,
        "appointmentId": appointment_id_for(encounter.encounter_id),
        "practitionerNpi": npi,
        "visitType": follow_up.visit_type,
        "createdAt": now.isoformat(),
    }
    # No read first: the writes are conditional, and the rare redelivery that finds the appointment
    # written reads it then.
    if window_has_passed(follow_up.latest, now=now):
        record = waitlist(appointment, WINDOW_PASSED)
    else:
        booked = book_earliest_free_slot(appointment, npi, follow_up.earliest, follow_up.latest, now)
        record = booked or waitlist(appointment, NO_FREE_SLOT)
    if record["createdAt"] == appointment["createdAt"]:  # written now, not by an earlier delivery
        metrics.add_metric(
            name=ENCOUNTER_TO_APPOINTMENT,
            unit=MetricUnit.Milliseconds,
            value=milliseconds_since(encounter.submitted_at),
        )
    logger.info("Follow-up scheduled", extra={"status": record["status"], "start": record.get("start")})
    return {
        "appointmentId": record["appointmentId"],
        "status": record["status"],
        "events": entries([event_for(record)], BUS_NAME),
    }


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consume_references(event, context, schedule, logger, encounters=encounters, events_client=events)
