"""An encounter's path through a stack: its API answer, records, events on the bus and workflow."""

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from carebus.adapters.dynamo import from_item
from carebus.messages import ENCOUNTER_ID_PATTERN
from carebus_client.api import json_or_none
from carebus_client.errors import (
    CarebusError,
    UsageError,
)
from carebus_client.stacks import Stack, aws_errors

_ENCOUNTER_ID = re.compile(ENCOUNTER_ID_PATTERN)
# Executions started this long before an encounter was submitted cannot belong to it (clock skew aside).
_EXECUTION_CLOCK_SKEW = timedelta(minutes=1)


@dataclass(frozen=True)
class TraceStep:
    """One thing that happened to an encounter; at is None for what has not happened yet."""

    at: datetime | None
    step: str
    detail: str = ""


@dataclass(frozen=True)
class Trace:
    """An encounter's steps, ordered by time, measured from its submission."""

    encounter_id: str
    submitted_at: datetime
    steps: list[TraceStep]

    def since_submission(self, step: TraceStep) -> timedelta | None:
        return None if step.at is None else step.at - self.submitted_at

    def step_names(self) -> list[str]:
        return [step.step for step in self.steps]


def trace_encounter(stack: Stack, encounter_id: str) -> Trace:
    """Where the encounter went: intake, fan-out, the records, the domain events and approval workflows.

    Records are read with projections of ids, statuses and times only: the encounter's PHI stays put.
    """
    if not _ENCOUNTER_ID.match(encounter_id):
        raise UsageError(f"{encounter_id!r} is not an encounter id (a lower-case UUID)")
    with aws_errors(stack.target):
        encounter = _get_record(
            stack, "EncountersTableName", {"encounterId": encounter_id}, ("submittedAt", "publishedAt")
        )
        submitted_at = _timestamp((encounter or {}).get("submittedAt"))
        if encounter is None or submitted_at is None:
            raise CarebusError(f"no encounter {encounter_id} in stack {stack.name}")
        published_at = _timestamp(encounter.get("publishedAt"))
        # A consumer puts its events after it wrote the records they announce: read the events first, so that
        # a trace never shows an event without the record it announced (read after it, that record exists).
        announced = _audit_steps(stack, encounter_id)
        prescriptions = _query_records(
            stack,
            "PrescriptionsTableName",
            encounter_id,
            ("prescriptionId", "status", "deaSchedule", "createdAt"),
        )
        steps = [
            TraceStep(submitted_at, "API accepted", "stored in the encounters table"),
            TraceStep(
                published_at,
                "published",
                "reference on the encounter topic"
                if published_at
                else "not yet: a retry with the same Idempotency-Key publishes it",
            ),
            *_record_steps(stack, encounter_id, prescriptions),
            *_approval_steps(stack, prescriptions),
            *announced,
            *_workflow_steps(stack, [record["prescriptionId"] for record in prescriptions], submitted_at),
        ]
    ordered = sorted(steps, key=lambda step: (step.at is None, step.at or submitted_at))
    return Trace(encounter_id, submitted_at, ordered)


def _record_steps(stack: Stack, encounter_id: str, prescriptions: list[dict[str, Any]]) -> list[TraceStep]:
    """What the consumers wrote: the claim, the appointment and each prescription, when they were created."""
    steps = []
    claim = _get_record(
        stack,
        "ClaimsTableName",
        {"encounterId": encounter_id},
        ("claimId", "status", "totalCents", "createdAt"),
    )
    if claim:
        total = f"{int(claim.get('totalCents', 0)) / 100:.2f}"
        steps.append(
            TraceStep(
                _timestamp(claim.get("createdAt")),
                "claim",
                f"{claim['claimId']} {claim.get('status')} {total}",
            )
        )
    appointment = _get_record(
        stack,
        "AppointmentsTableName",
        {"pk": f"ENCOUNTER#{encounter_id}", "sk": "APPOINTMENT"},
        ("appointmentId", "status", "start", "reason", "createdAt"),
    )
    if appointment:
        outcome = appointment.get("start") or appointment.get("reason") or ""
        steps.append(
            TraceStep(
                _timestamp(appointment.get("createdAt")),
                "appointment",
                f"{appointment['appointmentId']} {appointment.get('status')} {outcome}".strip(),
            )
        )
    for prescription in prescriptions:
        schedule = prescription.get("deaSchedule")
        steps.append(
            TraceStep(
                _timestamp(prescription.get("createdAt")),
                "prescription",
                f"{prescription['prescriptionId']} {prescription.get('status')}"
                + (f" (schedule {schedule})" if schedule else ""),
            )
        )
    return steps


def _approval_steps(stack: Stack, prescriptions: list[dict[str, Any]]) -> list[TraceStep]:
    """Where each controlled prescription's approval stands: waiting for a pharmacist (its token stored,
    the server's only), escalated, decided or ended."""
    steps = []
    for prescription in prescriptions:
        if not prescription.get("deaSchedule"):
            continue
        approval_id = f"apr-{prescription['prescriptionId']}"
        approval = _get_record(
            stack,
            "ApprovalsTableName",
            {"approvalId": approval_id},
            ("status", "escalated", "tokenStoredAt", "expiresAt", "decidedAt", "decision", "failedAt"),
        )
        if approval is None:
            continue
        if approval.get("tokenStoredAt") and approval.get("status") == "PENDING":
            waiting = "escalated, " if approval.get("escalated") else ""
            steps.append(
                TraceStep(
                    _timestamp(approval["tokenStoredAt"]),
                    "approval awaiting a pharmacist",
                    f"{approval_id} ({waiting}expires {approval.get('expiresAt')})",
                )
            )
        ended = approval.get("decidedAt") or approval.get("failedAt")
        if approval.get("status") != "PENDING":
            steps.append(TraceStep(_timestamp(ended), f"approval {approval.get('status')}", approval_id))
    return steps


def _audit_steps(stack: Stack, encounter_id: str) -> list[TraceStep]:
    """The encounter's domain events as the audit log group kept them (each log event is one bus event)."""
    steps = []
    paginator = stack.client("logs").get_paginator("filter_log_events")
    pages = paginator.paginate(
        logGroupName=stack.output("AuditLogGroupName"), filterPattern=f'"{encounter_id}"'
    )
    for page in pages:
        for log_event in page["events"]:
            event = json_or_none(log_event["message"].encode())
            if not isinstance(event, dict):
                continue
            detail = event.get("detail") or {}
            facts = " ".join(
                f"{name}={value}"
                for name, value in detail.items()
                if name not in ("encounterId", "schemaVersion", "eventId")
            )
            steps.append(
                TraceStep(
                    # CloudWatch Logs stamps each audit entry with the event's time.
                    datetime.fromtimestamp(log_event["timestamp"] / 1000, UTC),
                    f"event {event.get('detail-type')}",
                    f"{event.get('source')} {facts}".strip(),
                )
            )
    return steps


def _workflow_steps(stack: Stack, prescription_ids: list[str], submitted_at: datetime) -> list[TraceStep]:
    """Approval workflow executions whose input names one of the encounter's prescriptions."""
    if not prescription_ids:
        return []
    stepfunctions = stack.client("stepfunctions")
    quoted_ids = [json.dumps(prescription_id) for prescription_id in prescription_ids]
    steps = []
    paginator = stepfunctions.get_paginator("list_executions")
    for page in paginator.paginate(stateMachineArn=stack.output("PrescriptionApprovalStateMachineArn")):
        for execution in page["executions"]:
            # Only executions since the submission can be the encounter's: no need to read the others' input.
            if execution["startDate"] < submitted_at - _EXECUTION_CLOCK_SKEW:
                continue
            described = stepfunctions.describe_execution(executionArn=execution["executionArn"])
            execution_input = described.get("input") or ""
            mentioned = [json.loads(quoted) for quoted in quoted_ids if quoted in execution_input]
            if not mentioned:
                continue
            status = described["status"]
            steps.append(
                TraceStep(
                    described["startDate"].astimezone(UTC),
                    "approval workflow started",
                    f"{mentioned[0]} execution {described['name']}"
                    + (" RUNNING" if status == "RUNNING" else ""),
                )
            )
            if described.get("stopDate"):
                steps.append(
                    TraceStep(
                        described["stopDate"].astimezone(UTC),
                        f"approval workflow {status}",
                        f"execution {described['name']}",
                    )
                )
    return steps


def _projection(attributes: Sequence[str]) -> dict[str, Any]:
    """A projection by placeholder names: some attributes (status, start) are DynamoDB reserved words."""
    names = {f"#a{index}": attribute for index, attribute in enumerate(attributes)}
    return {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}


def _get_record(
    stack: Stack, table_output: str, key: Mapping[str, str], attributes: Sequence[str]
) -> dict[str, Any] | None:
    answer = stack.client("dynamodb").get_item(
        TableName=stack.output(table_output),
        Key={name: {"S": value} for name, value in key.items()},
        ConsistentRead=True,
        **_projection([*key, *attributes]),
    )
    return from_item(answer["Item"]) if "Item" in answer else None


def _query_records(
    stack: Stack, table_output: str, encounter_id: str, attributes: Sequence[str]
) -> list[dict[str, Any]]:
    projection = _projection(attributes)
    paginator = stack.client("dynamodb").get_paginator("query")
    pages = paginator.paginate(
        TableName=stack.output(table_output),
        KeyConditionExpression="#encounter = :encounter",
        ExpressionAttributeValues={":encounter": {"S": encounter_id}},
        ProjectionExpression=projection["ProjectionExpression"],
        ExpressionAttributeNames={**projection["ExpressionAttributeNames"], "#encounter": "encounterId"},
        ConsistentRead=True,
    )
    return [from_item(item) for page in pages for item in page["Items"]]


def _timestamp(value: str | None) -> datetime | None:
    """An ISO time stored by the handlers (UTC); None where a record does not have it."""
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
