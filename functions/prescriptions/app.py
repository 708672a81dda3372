"""Prescriptions: store each one; release the uncontrolled, ask a pharmacist about the controlled."""

import os
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import idempotent_function
from aws_lambda_powertools.utilities.typing import LambdaContext

from carebus.adapters.consumer import ONCE_PER_ENCOUNTER, consume_references
from carebus.adapters.dynamo import Table
from carebus.adapters.encounters import load_encounter
from carebus.adapters.eventbus import announce_once
from carebus.adapters.idempotency import idempotency_store
from carebus.events import DomainEvent, prescription_approval_requested, prescription_released
from carebus.prescribing import PrescriptionStatus, initial_status, prescription_id_for

logger = Logger()
tracer = Tracer()
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
    data_keyword_argument="reference", config=ONCE_PER_ENCOUNTER, persistence_store=idempotency_store()
)
@tracer.capture_method
def prescribe(reference: dict[str, Any]) -> dict[str, Any]:
    encounter = load_encounter(encounters, reference["encounterId"])
    request = encounter.request
    statuses: dict[str, str] = {}
    for index, prescription in enumerate(request.prescriptions, start=1):
        prescription_id = prescription_id_for(encounter.encounter_id, index)
        key = {"encounterId": encounter.encounter_id, "prescriptionId": prescription_id}
        status = initial_status(prescription)
        record: dict[str, Any] = {
            **key,
            **prescription.model_dump(mode="json", by_alias=True),
            "prescriberNpi": request.practitioner_npi,
            # The prescriber's login (an opaque id): nobody may approve a prescription of their own.
            "prescribedBy": encounter.submitted_by,
            "status": status.value,
            "createdAt": datetime.now(UTC).isoformat(),
        }
        if prescriptions.put_new(record, "prescriptionId"):
            metrics.add_metric(
                name=f"Prescriptions{status.title().replace('_', '')}", unit=MetricUnit.Count, value=1
            )
        else:
            record = prescriptions.get(key) or record
        announce_once(events, BUS_NAME, [event_for(record)], prescriptions, record, key)
        statuses[prescription_id] = record["status"]
    controlled = sum(status == PrescriptionStatus.PENDING_APPROVAL for status in statuses.values())
    logger.info("Prescriptions stored", extra={"count": len(statuses), "pending_approval": controlled})
    return {"prescriptions": statuses}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consume_references(event, context, prescribe, logger)
