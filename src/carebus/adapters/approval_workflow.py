"""A pharmacist's decision delivered to the waiting approval workflow, exactly once.

The task token is the lock: Step Functions accepts a token once, so of concurrent decisions exactly one
reaches the wait and the others are refused. Nothing is written before the workflow takes the decision
and nothing is undone after: the workflow itself records it, on the approval and the prescription at once.
When the resume call fails, that failure does not prove the decision did not arrive (the reply may have
been lost after the call took effect, or the SDK's retry of such a call was refused because the token was
spent), so the execution's history is asked what happened to the wait.
"""

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from carebus.adapters.dynamo import Table
from carebus.approvals import (
    REJECTION_ERROR,
    WAIT_STATES,
    Decision,
    DecisionRequest,
    WaitOutcome,
    WaitReport,
    approval_view,
    check_decision,
    decided_view,
    decision_for,
    is_approval_id,
    read_wait,
    settle,
    stage_of,
)
from carebus.errors import NotFoundError

# Step Functions writes a task's outcome into the history asynchronously: a wait that still reads as open
# right after a failed resume is read again after these pauses before the answer is "send it again".
HISTORY_SETTLE_SECONDS: Final = (0.2, 0.4, 0.8)


@dataclass(frozen=True, slots=True)
class Decided:
    """The approval as the decision left it; delivered is False when the same decision already stood."""

    view: dict[str, Any]
    delivered: bool


def load_approval(approvals: Table, approval_id: str) -> dict[str, Any]:
    """The approval; not found, without asking DynamoDB, for an id that no approval can have (nor is
    quoted back: it may be anything, of any length)."""
    if not is_approval_id(approval_id):
        raise NotFoundError("no approval has this id")
    record = approvals.get({"approvalId": approval_id})
    if record is None:
        raise NotFoundError(f"no approval {approval_id}")
    return record


def resume(stepfunctions: Any, task_token: str, decision: Decision) -> None:
    """Hand the decision to the wait: an approval succeeds the task, a rejection fails it."""
    if decision.decision == "APPROVE":
        stepfunctions.send_task_success(taskToken=task_token, output=decision.to_callback())
    else:
        stepfunctions.send_task_failure(
            taskToken=task_token, error=REJECTION_ERROR, cause=decision.to_callback()
        )


def wait_report(stepfunctions: Any, record: dict[str, Any]) -> WaitReport:
    """What the execution's history says of the wait whose token the record holds."""
    paginator = stepfunctions.get_paginator("get_execution_history")
    report = WaitReport(WaitOutcome.OPEN)
    for pause in (0.0, *HISTORY_SETTLE_SECONDS):
        time.sleep(pause)
        pages = paginator.paginate(executionArn=record["executionArn"], includeExecutionData=True)
        report = read_wait(
            [event for page in pages for event in page["events"]], WAIT_STATES[stage_of(record)]
        )
        if report.outcome is not WaitOutcome.OPEN:
            break
    return report


def decide_approval(
    approvals: Table,
    stepfunctions: Any,
    approval_id: str,
    request: DecisionRequest,
    pharmacist: str,
    now: datetime,
    logger: Logger,
) -> Decided:
    """Deliver the pharmacist's decision; raises the domain's 403, 404, 409 and 503 errors."""
    record = load_approval(approvals, approval_id)
    if check_decision(record, pharmacist, request):
        return Decided(approval_view(record), delivered=False)
    decision = decision_for(record, request, pharmacist, now)
    try:
        resume(stepfunctions, record["taskToken"], decision)
    except (BotoCoreError, ClientError) as error:
        code = error.response["Error"]["Code"] if isinstance(error, ClientError) else type(error).__name__
        logger.warning("Resuming the workflow failed; reading its history", extra={"error": code})
        report = wait_report(stepfunctions, record)
        if report.outcome is WaitOutcome.ENDED:
            # Escalated or expired meanwhile: answer with the approval as it now stands.
            record = load_approval(approvals, approval_id)
        return Decided(settle(report, decision, record), delivered=True)
    return Decided(decided_view(record, decision), delivered=True)
