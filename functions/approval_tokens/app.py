"""Approval tokens: keep each wait's task token in its approval record, then heartbeat the wait."""

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from carebus.adapters.consumer import consume_messages
from carebus.adapters.dynamo import Table
from carebus.adapters.tracing import TRACED_LIBRARIES
from carebus.approvals import WAIT_OVER_ERRORS, ApprovalStatus, TokenMessage, deadline, parse_token_message

logger = Logger()
tracer = Tracer(patch_modules=TRACED_LIBRARIES)
# Flushes the batch item failures the consumer edge counts.
metrics = Metrics()

approvals = Table(boto3.client("dynamodb"), os.environ["APPROVALS_TABLE"])
stepfunctions = boto3.client("stepfunctions")
WAIT = timedelta(seconds=int(os.environ["APPROVAL_TIMEOUT_SECONDS"]))


@tracer.capture_method
def store_token(message: TokenMessage) -> None:
    """Keep the token where only the approvals function reads it; a token of a wait that already ended
    (the request escalated, or was decided or expired) is dropped."""
    now = datetime.now(UTC)
    stored_values = {
        "taskToken": message.task_token,
        "tokenStoredAt": now.isoformat(),
        "expiresAt": deadline(message.stage, now, WAIT).isoformat(),
    }
    if message.stage == "ESCALATED":
        stored_values["escalatedAt"] = now.isoformat()
    stored = approvals.update(
        {"approvalId": message.approval_id},
        set_values=stored_values,
        condition="#status = :pending AND escalated = :escalated",
        condition_values={
            ":pending": ApprovalStatus.PENDING.value,
            ":escalated": message.stage == "ESCALATED",
        },
        condition_names={"#status": "status"},
    )
    if stored is None:
        logger.info("Token of a finished wait dropped", extra={"stage": message.stage})
        return
    try:
        stepfunctions.send_task_heartbeat(taskToken=message.task_token)
    except ClientError as error:
        if error.response["Error"]["Code"] not in WAIT_OVER_ERRORS:
            raise
        logger.info("The wait ended before its heartbeat", extra={"stage": message.stage})
        return
    logger.info("Token stored; the approval can be decided", extra={"stage": message.stage})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consume_messages(
        event,
        context,
        parse=parse_token_message,
        process=store_token,
        log_keys=lambda message: {"approval_id": message.approval_id},
        logger=logger,
    )
