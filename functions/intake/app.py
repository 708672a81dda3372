"""POST /encounters: validate, store the encounter once, publish its reference, answer 202."""

import json
import os
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
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from carebus.adapters.api import (
    aws_failure_response,
    caller_of,
    install_problem_answers,
    parse_body,
    problem_response,
    validate_together,
)
from carebus.adapters.dynamo import Table
from carebus.adapters.idempotency import idempotency_store
from carebus.adapters.submissions import EncounterIntake, Submission
from carebus.adapters.tracing import TRACED_LIBRARIES
from carebus.auth import Role
from carebus.models import EncounterRequest
from carebus.problems import problem
from carebus.submission import IdempotencyHeader, body_hash, encounter_id_for

# The same key and body replay the first answer for a day; after that the stored record still guards.
SAME_KEY_SAME_BODY = IdempotencyConfig(
    event_key_jmespath="[caller, idempotencyKey]",
    payload_validation_jmespath="bodyHash",
    expires_after_seconds=24 * 3600,
)

logger = Logger()
tracer = Tracer(patch_modules=TRACED_LIBRARIES)
metrics = Metrics()
app = APIGatewayRestResolver()
install_problem_answers(app, logger)

dynamodb = boto3.client("dynamodb")
intake = EncounterIntake(
    Table(dynamodb, os.environ["ENCOUNTERS_TABLE"]),
    boto3.client("sns"),
    os.environ["ENCOUNTER_TOPIC_ARN"],
    logger,
)


@idempotent_function(
    data_keyword_argument="submission",
    config=SAME_KEY_SAME_BODY,
    persistence_store=idempotency_store(dynamodb),
)
@tracer.capture_method
def accept(submission: dict[str, str], request: EncounterRequest) -> dict[str, str]:
    encounter_id = encounter_id_for(submission["caller"], submission["idempotencyKey"])
    accepted = Submission(encounter_id, submission["caller"], request, submission["bodyHash"])
    if intake.accept(accepted, datetime.now(UTC)):
        metrics.add_metric(name="EncountersAccepted", unit=MetricUnit.Count, value=1)
    return {"encounterId": encounter_id}


@app.post("/encounters")
@tracer.capture_method
def submit_encounter() -> Response:
    caller = caller_of(app)
    caller.require(Role.PHYSICIAN)
    key = app.current_event.headers.get("idempotency-key")
    header, request = validate_together(
        lambda: IdempotencyHeader.model_validate({} if key is None else {"Idempotency-Key": key}),
        lambda: parse_body(app, EncounterRequest),
    )
    submission = {"caller": caller.subject, "idempotencyKey": header.key, "bodyHash": body_hash(request)}
    encounter_id = accept(submission=submission, request=request)["encounterId"]
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


@app.exception_handler(IdempotencyPersistenceLayerError)
def idempotency_store_failed(error: IdempotencyPersistenceLayerError) -> Response:
    return aws_failure_response(error, logger)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    SAME_KEY_SAME_BODY.register_lambda_context(context)
    return app.resolve(event, context)
