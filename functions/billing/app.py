"""Billing: one claim per encounter reference on the billing queue, announced as ClaimSubmitted."""

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
from carebus.billing import build_claim
from carebus.business_metrics import ENCOUNTER_TO_CLAIM, milliseconds_since
from carebus.events import claim_submitted
from carebus.partner import submission_stamp

logger = Logger()
tracer = Tracer(patch_modules=TRACED_LIBRARIES)
metrics = Metrics()

dynamodb = boto3.client("dynamodb")
events = boto3.client("events")
encounters = Table(dynamodb, os.environ["ENCOUNTERS_TABLE"])
claims = Table(dynamodb, os.environ["CLAIMS_TABLE"])
BUS_NAME = os.environ["EVENT_BUS_NAME"]


def current_time() -> datetime:
    return datetime.now(UTC)


@idempotent_function(
    data_keyword_argument="reference",
    config=ONCE_PER_ENCOUNTER,
    persistence_store=idempotency_store(dynamodb),
)
@tracer.capture_method
def bill(reference: dict[str, Any], encounter: StoredEncounter) -> dict[str, Any]:
    request = encounter.request
    claim = build_claim(
        encounter.encounter_id, request.practitioner_npi, request.diagnoses, request.procedures
    )
    now = current_time()
    if claims.put_new(
        {**claim.to_item(), "createdAt": now.isoformat(), **submission_stamp(now)}, "encounterId"
    ):
        metrics.add_metric(name="ClaimsSubmitted", unit=MetricUnit.Count, value=1)
        metrics.add_metric(
            name=ENCOUNTER_TO_CLAIM,
            unit=MetricUnit.Milliseconds,
            value=milliseconds_since(encounter.submitted_at),
        )
    # A claim stored by an earlier delivery is the same claim: it derives from the encounter alone.
    logger.info("Claim submitted", extra={"claim_id": claim.claim_id, "total_cents": claim.total_cents})
    return {
        "claimId": claim.claim_id,
        "totalCents": claim.total_cents,
        "events": entries([claim_submitted(claim)], BUS_NAME),
    }


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consume_references(event, context, bill, logger, encounters=encounters, events_client=events)
