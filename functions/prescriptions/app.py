"""Prescriptions: store each one; release the uncontrolled, ask a pharmacist about the controlled."""

import os
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import idempotent_function
from aws_lambda_powertools.utilities.typing import LambdaContext

from carebus.adapters.dynamo import Table
from carebus.adapters.eventbus import entries
from carebus.adapters.idempotency import idempotency_store
from carebus.adapters.references import ONCE_PER_ENCOUNTER, StoredEncounter, consume_references
from carebus.adapters.tracing import TRACED_LIBRARIES
from carebus.business_metrics import ENCOUNTER_TO_PRESCRIPTION, milliseconds_since
from carebus.events import DomainEvent, prescription_approval_requested, prescription_released
from carebus.prescribing import PrescriptionStatus, initial_status, prescription_id_for

logger = Logger()
tracer = Tracer(patch_modules=TRACED_LIBRARIES)
metrics = Metrics()

dynamodb = boto3.client("dynamodb")
events = boto3.client("events")
encounters = Table(dynamodb, os.environ["ENCOUNTERS_TABLE"])
prescriptions = Table(dynamodb, os.environ["PRESCRIPTIONS_TABLE"])
BUS_NAME = os.environ["EVENT_BUS_NAME"]


def event_for(record: dict[str, Any]) -> DomainEvent:
    """What a newly stored prescription announces: released, or waiting for a pharmacist."""
    if record.get("deaSchedule"):
        return prescription_approval_requested(
            record["encounterId"], record["prescriptionId"], record["deaSchedule"]
        )
    return prescription_released(record["encounterId"], record["prescriptionId"])


@idempotent_function(
    data_keyword_argument="reference",
    config=ONCE_PER_ENCOUNTER,
    persistence_store=idempotency_store(dynamodb),
)
@tracer.capture_method
def prescribe(reference: dict[str, Any], encounter: StoredEncounter) -> dict[str, Any]:
    request = encounter.request
    now = datetime.now(UTC).isoformat()
    records = [
        {
            "encounterId": encounter.encounter_id,
            "prescriptionId": prescription_id_for(encounter.encounter_id, index),
            **prescription.model_dump(mode="json", by_alias=True),
            "prescriberNpi": request.practitioner_npi,
            # The prescriber's login (an opaque id): nobody may approve a prescription of their own.
            "prescribedBy": encounter.submitted_by,
            "status": initial_status(prescription).value,
            "createdAt": now,
        }
        for index, prescription in enumerate(request.prescriptions, start=1)
    ]
    # All of the encounter's prescriptions in one transaction; one an earlier delivery stored is left
    # as it is now (a pharmacist may have decided it), and announced as it was first stored.
    for record, stored in zip(records, prescriptions.put_all_new(records, "prescriptionId"), strict=True):
        if stored:
            metrics.add_metric(
                name=ENCOUNTER_TO_PRESCRIPTION,
                unit=MetricUnit.Milliseconds,
                value=milliseconds_since(encounter.submitted_at),
            )
            metrics.add_metric(
                name=f"Prescriptions{record['status'].title().replace('_', '')}",
                unit=MetricUnit.Count,
                value=1,
            )
    statuses = {record["prescriptionId"]: record["status"] for record in records}
    controlled = sum(status == PrescriptionStatus.PENDING_APPROVAL for status in statuses.values())
    logger.info("Prescriptions stored", extra={"count": len(statuses), "pending_approval": controlled})
    return {"prescriptions": statuses, "events": entries([event_for(record) for record in records], BUS_NAME)}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consume_references(event, context, prescribe, logger, encounters=encounters, events_client=events)
