"""Pharmacists' approvals: list, read, and decide; a decision resumes the workflow with its stored token."""

import os
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from carebus.adapters.api import caller_of, install_problem_answers, parse_body
from carebus.adapters.approval_workflow import decide_approval, load_approval
from carebus.adapters.dynamo import Table
from carebus.adapters.tracing import TRACED_LIBRARIES
from carebus.approvals import ApprovalStatus, DecisionRequest, approval_view
from carebus.auth import Role
from carebus.business_metrics import APPROVAL_DECISION_TIME, OUTCOME_DIMENSION, milliseconds_since

logger = Logger()
tracer = Tracer(patch_modules=TRACED_LIBRARIES)
metrics = Metrics()
app = APIGatewayRestResolver()
install_problem_answers(app, logger)

approvals = Table(boto3.client("dynamodb"), os.environ["APPROVALS_TABLE"])
stepfunctions = boto3.client("stepfunctions")


class ListQuery(BaseModel):
    """GET /approvals?status=..."""

    status: ApprovalStatus = ApprovalStatus.PENDING


@app.get("/approvals")
@tracer.capture_method
def list_approvals() -> dict[str, Any]:
    caller_of(app).require(Role.PHARMACIST)
    query = ListQuery.model_validate(app.current_event.query_string_parameters or {})
    records = approvals.query(
        "#status = :status", {":status": query.status}, {"#status": "status"}, "byStatus"
    )
    return {"approvals": [approval_view(record) for record in records]}


@app.get("/approvals/<approval_id>")
@tracer.capture_method
def read_approval(approval_id: str) -> dict[str, Any]:
    caller_of(app).require(Role.PHARMACIST)
    return approval_view(load_approval(approvals, approval_id))


@app.post("/approvals/<approval_id>/decision")
@tracer.capture_method
def decide(approval_id: str) -> dict[str, Any]:
    caller = caller_of(app)
    caller.require(Role.PHARMACIST)
    request = parse_body(app, DecisionRequest)
    logger.append_keys(approval_id=approval_id)
    decided = decide_approval(
        approvals, stepfunctions, approval_id, request, caller.subject, datetime.now(UTC), logger
    )
    if decided.delivered:
        metrics.add_metric(
            name=f"Prescriptions{decided.view['status'].title()}", unit=MetricUnit.Count, value=1
        )
        # Its own EMF line, so that the outcome dimension stays off the function's other metrics (the
        # namespace and service are the function's, as its Metrics resolved them).
        with single_metric(
            name=APPROVAL_DECISION_TIME,
            unit=MetricUnit.Milliseconds,
            value=milliseconds_since(
                decided.view["requestedAt"], datetime.fromisoformat(decided.view["decidedAt"])
            ),
            namespace=metrics.namespace,
            default_dimensions={"service": metrics.service, OUTCOME_DIMENSION: decided.view["status"]},
        ):
            pass
    logger.info("Approval decided", extra={"decision": request.decision, "delivered": decided.delivered})
    return decided.view


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
