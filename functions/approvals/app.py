"""Pharmacists' approvals: list, read, and decide; a decision resumes the workflow with its stored token."""

import json
import os
from datetime import UTC, datetime
from typing import Any, Literal

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel

from carebus.adapters.api import caller_of, install_problem_answers, read_json_body
from carebus.adapters.dynamo import Table
from carebus.approvals import (
    REJECTION_ERROR,
    WAIT_OVER_ERRORS,
    ApprovalStatus,
    DecisionRequest,
    approval_view,
    check_decision,
    decided_values,
    workflow_decision,
)
from carebus.auth import Role
from carebus.errors import ConflictError, NotFoundError, ServiceUnavailableError

DECISION_FIELDS = ("status", "decision", "decidedBy", "decidedAt", "reason")

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayRestResolver()
install_problem_answers(app)

approvals = Table(boto3.client("dynamodb"), os.environ["APPROVALS_TABLE"])
stepfunctions = boto3.client("stepfunctions")


class ListQuery(BaseModel):
    """GET /approvals?status=..."""

    status: Literal["PENDING", "APPROVED", "REJECTED", "EXPIRED"] = "PENDING"


def load(approval_id: str) -> dict[str, Any]:
    record = approvals.get({"approvalId": approval_id})
    if record is None:
        raise NotFoundError(f"no approval {approval_id}")
    return record


def current_view(approval_id: str) -> dict[str, Any]:
    return approval_view(load(approval_id))


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
    return approval_view(load(approval_id))


def resume_workflow(token: str, values: dict[str, Any]) -> None:
    decision = json.dumps(workflow_decision(values))
    if values["status"] == ApprovalStatus.APPROVED:
        stepfunctions.send_task_success(taskToken=token, output=decision)
    else:
        stepfunctions.send_task_failure(taskToken=token, error=REJECTION_ERROR, cause=decision)


@app.post("/approvals/<approval_id>/decision")
@tracer.capture_method
def decide(approval_id: str) -> dict[str, Any]:
    caller = caller_of(app)
    caller.require(Role.PHARMACIST)
    request = DecisionRequest.model_validate(read_json_body(app))
    logger.append_keys(approval_id=approval_id)
    record = load(approval_id)
    check_decision(record, caller.subject)
    values = decided_values(request, caller.subject, datetime.now(UTC))
    # First decision wins: the write holds only while the approval is pending on the token we read.
    decided = approvals.update(
        {"approvalId": approval_id},
        set_values=values,
        condition="#status = :pending AND taskToken = :token",
        condition_values={":pending": ApprovalStatus.PENDING.value, ":token": record["taskToken"]},
        condition_names={"#status": "status"},
    )
    if decided is None:
        raise ConflictError("another decision or the workflow got there first", current_view(approval_id))
    try:
        resume_workflow(record["taskToken"], values)
    except (BotoCoreError, ClientError) as error:
        # The workflow did not take the decision: undo our write, so that the approval stays decidable.
        approvals.update(
            {"approvalId": approval_id},
            set_values={"status": ApprovalStatus.PENDING.value},
            remove=tuple(name for name in DECISION_FIELDS if name != "status"),
            condition="#status = :decided AND decidedBy = :me AND decidedAt = :at",
            condition_values={
                ":decided": values["status"],
                ":me": caller.subject,
                ":at": values["decidedAt"],
            },
            condition_names={"#status": "status"},
        )
        code = error.response["Error"]["Code"] if isinstance(error, ClientError) else type(error).__name__
        if code in WAIT_OVER_ERRORS:
            # The wait ended (escalated or expired) before the decision reached it.
            raise ConflictError(
                "the approval's wait ended before the decision reached it", current_view(approval_id)
            ) from None
        logger.error("Resuming the approval workflow failed", extra={"error": code})
        raise ServiceUnavailableError("the decision could not reach the workflow; try again") from None
    # The token has served its purpose; it must not outlive the wait.
    settled = approvals.update(
        {"approvalId": approval_id},
        remove=("taskToken",),
        condition="#status = :decided",
        condition_values={":decided": values["status"]},
        condition_names={"#status": "status"},
    )
    metrics.add_metric(name=f"Prescriptions{values['status'].title()}", unit=MetricUnit.Count, value=1)
    logger.info("Approval decided", extra={"decision": request.decision})
    return approval_view(settled or decided)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
