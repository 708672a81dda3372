"""POST /encounters: validate, store the encounter once, publish its reference, answer 202."""

import hashlib
import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field

from carebus.adapters.api import caller_of, install_problem_answers, problem_response, read_json_body
from carebus.adapters.dynamo import Table
from carebus.adapters.idempotency import idempotency_store
from carebus.auth import Role
from carebus.errors import ConflictError, ServiceUnavailableError
from carebus.messages import reference_body, routing_attributes
from carebus.models import EncounterRequest
from carebus.problems import problem

# Encounter ids derived from (caller, Idempotency-Key) live in this namespace, so a retry finds its record.
IDEMPOTENT_ENCOUNTER_IDS = uuid.UUID("5b0f2f7e-3f4c-4d38-9a43-2d8e1c6a9b10")
# The same key and body replay the first answer for a day; after that the stored record still guards.
SAME_KEY_SAME_BODY = IdempotencyConfig(
    event_key_jmespath="[caller, idempotencyKey]",
    payload_validation_jmespath="bodyHash",
    expires_after_seconds=24 * 3600,
)

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayRestResolver()
install_problem_answers(app, logger)

encounters = Table(boto3.client("dynamodb"), os.environ["ENCOUNTERS_TABLE"])
sns = boto3.client("sns")
TOPIC_ARN = os.environ["ENCOUNTER_TOPIC_ARN"]


class IdempotencyHeader(BaseModel):
    """The optional Idempotency-Key header, validated like any other input."""

    model_config = ConfigDict(frozen=True)

    key: str | None = Field(default=None, alias="Idempotency-Key", pattern=r"^[\x21-\x7e]{1,255}$")


def body_hash(request: EncounterRequest) -> str:
    """A hash of the normalised request, so whitespace or key order do not make a "different body"."""
    document = request.model_dump(mode="json", by_alias=True)
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@tracer.capture_method
def accept(encounter_id: str, request: EncounterRequest, caller: str, request_hash: str) -> dict[str, str]:
    """Store the encounter (once) and publish its reference (once); a retry completes what failed."""
    now = datetime.now(UTC).isoformat()
    record: dict[str, Any] = {
        "encounterId": encounter_id,
        "submittedBy": caller,
        "submittedAt": now,
        "bodyHash": request_hash,
        "status": "ACCEPTED",
        "encounter": request.model_dump(mode="json", by_alias=True),
    }
    if not encounters.put_new(record, "encounterId"):
        stored = encounters.get({"encounterId": encounter_id}) or {}
        if stored.get("submittedBy") != caller or stored.get("bodyHash") != request_hash:
            raise ConflictError("the Idempotency-Key was already used for a different encounter")
        record = stored
    if not record.get("publishedAt"):
        try:
            sns.publish(
                TopicArn=TOPIC_ARN,
                Message=reference_body(encounter_id),
                MessageAttributes=routing_attributes(encounter_id, request),
            )
        except (BotoCoreError, ClientError) as error:
            logger.error("Publishing the encounter reference failed", extra={"error": type(error).__name__})
            raise ServiceUnavailableError(
                "the encounter is stored but could not be handed on; retry with the same Idempotency-Key"
            ) from error
        published = {"publishedAt": datetime.now(UTC).isoformat()}
        encounters.set_attributes({"encounterId": encounter_id}, published)
        metrics.add_metric(name="EncountersAccepted", unit=MetricUnit.Count, value=1)
    return {"encounterId": encounter_id}


@idempotent_function(
    data_keyword_argument="submission", config=SAME_KEY_SAME_BODY, persistence_store=idempotency_store()
)
def accept_idempotently(submission: dict[str, str], request: EncounterRequest) -> dict[str, str]:
    name = f"{submission['caller']}\n{submission['idempotencyKey']}"
    encounter_id = str(uuid.uuid5(IDEMPOTENT_ENCOUNTER_IDS, name))
    return accept(encounter_id, request, submission["caller"], submission["bodyHash"])


@app.post("/encounters")
@tracer.capture_method
def submit_encounter() -> Response:
    caller = caller_of(app)
    caller.require(Role.PHYSICIAN)
    header = IdempotencyHeader.model_validate(
        {"Idempotency-Key": app.current_event.headers.get("idempotency-key")}
    )
    request = EncounterRequest.model_validate(read_json_body(app))
    request_hash = body_hash(request)
    if header.key is None:
        accepted = accept(str(uuid.uuid4()), request, caller.subject, request_hash)
    else:
        submission = {"caller": caller.subject, "idempotencyKey": header.key, "bodyHash": request_hash}
        accepted = accept_idempotently(submission=submission, request=request)
    encounter_id = accepted["encounterId"]
    logger.append_keys(encounter_id=encounter_id)
    logger.info("Encounter accepted")
    location = f"{app.current_event.request_context.path or app.current_event.path}/{encounter_id}"
    return Response(
        status_code=202,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps({"encounterId": encounter_id, "status": "ACCEPTED", "location": location}),
        headers={"Location": location},
    )


@app.exception_handler(IdempotencyValidationError)
def key_reused(_: IdempotencyValidationError) -> Response:
    return problem_response(
        problem(409, "Conflict", "the Idempotency-Key was already used with a different body", "conflict")
    )


@app.exception_handler(IdempotencyAlreadyInProgressError)
def key_in_flight(_: IdempotencyAlreadyInProgressError) -> Response:
    return problem_response(
        problem(409, "Conflict", "a request with this Idempotency-Key is still in progress", "conflict"),
        headers={"Retry-After": "1"},
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    SAME_KEY_SAME_BODY.register_lambda_context(context)
    return app.resolve(event, context)
