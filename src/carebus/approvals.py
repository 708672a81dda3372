"""Controlled-substance approvals: the decision a pharmacist sends, who may make it, what others see, and
how to read from the workflow's history whether a decision reached it."""

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from carebus.errors import ConflictError, ForbiddenError, MalformedMessageError, ServiceUnavailableError
from carebus.fields import FREE_TEXT_METADATA, field_error
from carebus.messages import ENCOUNTER_ID_PATTERN

type Stage = Literal["REQUESTED", "ESCALATED"]

# Step Functions errors saying a task token's wait is over (timed out, escalated or expired meanwhile).
WAIT_OVER_ERRORS: Final = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})
# SendTaskFailure's error name for a rejection; the workflow catches it by this name.
REJECTION_ERROR: Final = "PrescriptionRejected"
# The workflow's wait state of each stage (statemachines/prescription_approval.asl.json; a test checks it).
WAIT_STATES: Final[Mapping[str, str]] = {
    "REQUESTED": "WaitForDecision",
    "ESCALATED": "WaitForEscalatedDecision",
}
# Decision ids derived from the approval, the wait, the pharmacist and what they decided live here, so a
# retried request carries the id of its first attempt.
_DECISION_IDS: Final = uuid.UUID("0e6b4a7c-8f51-4d2e-b3a9-5c7d1e2f3a40")
# What an approval shows a pharmacist: never the task token, the execution or the prescriber's login.
# The byStatus index projects exactly these (a template test checks it).
VISIBLE_FIELDS: Final = (
    "approvalId",
    "status",
    "escalated",
    "prescriptionId",
    "encounterId",
    "drug",
    "deaSchedule",
    "quantity",
    "refills",
    "prescriberNpi",
    "requestedAt",
    "expiresAt",
    "decision",
    "decidedBy",
    "decidedAt",
    "reason",
    "failedAt",
)
_DECISION_FIELDS: Final = ("decision", "decidedBy", "decidedAt", "reason", "decisionId")
# The approval of a controlled prescription: "apr-" and the prescription's id (carebus.prescribing).
APPROVAL_ID_PATTERN: Final = f"^apr-rx-{ENCOUNTER_ID_PATTERN.strip('^$')}-[1-9][0-9]?$"
_APPROVAL_ID: Final = re.compile(APPROVAL_ID_PATTERN.removesuffix("$") + r"\Z")


class ApprovalStatus(StrEnum):
    """Where an approval stands; only a PENDING one can be decided, every other one is final."""

    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    # The workflow failed after its retries; the prescription is APPROVAL_FAILED and an alarm fired.
    FAILED = "FAILED"


def _rejection_needs_a_reason(schema: dict[str, Any]) -> None:
    schema["anyOf"] = [
        {"properties": {"decision": {"enum": ["APPROVE"]}}},
        {"required": ["reason"], "properties": {"reason": {"type": "string"}}},
    ]


class DecisionRequest(BaseModel):
    """A pharmacist's decision; a rejection must say why. Part of the API's contract (carebus.models)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, json_schema_extra=_rejection_needs_a_reason
    )

    decision: Literal["APPROVE", "REJECT"]
    reason: Annotated[str, Field(min_length=1, max_length=500), *FREE_TEXT_METADATA] | None = None

    @model_validator(mode="after")
    def _rejection_has_a_reason(self) -> Self:
        if self.decision == "REJECT" and not self.reason:
            raise field_error(type(self).__name__, "reason", "reason_required", "A rejection needs a reason")
        return self


class Decision(BaseModel):
    """A decision as it travels to the workflow (SendTaskSuccess's output, SendTaskFailure's cause) and
    comes back in its history; the workflow records it on the approval and the prescription."""

    model_config = ConfigDict(
        alias_generator=to_camel, extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True
    )

    decision_id: str = Field(min_length=1, max_length=64)
    decision: Literal["APPROVE", "REJECT"]
    decided_by: str = Field(min_length=1, max_length=128)
    decided_at: str = Field(min_length=1, max_length=64)
    # Empty when an approval gave none: Step Functions paths need the field to exist.
    reason: str = Field(default="", max_length=500)

    @property
    def status(self) -> ApprovalStatus:
        return ApprovalStatus.APPROVED if self.decision == "APPROVE" else ApprovalStatus.REJECTED

    def to_callback(self) -> str:
        """The JSON the workflow receives."""
        return self.model_dump_json()

    @classmethod
    def from_callback(cls, text: str | None) -> "Decision | None":
        """The decision in a callback's output or cause; None if it is not one."""
        try:
            return cls.model_validate_json(text or "")
        except ValidationError:
            return None


class TokenMessage(BaseModel):
    """What the workflow sends the token queue while it waits: whose token, and for which wait."""

    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", frozen=True, populate_by_name=True)

    approval_id: str = Field(pattern=APPROVAL_ID_PATTERN)
    stage: Stage
    task_token: str = Field(min_length=1, max_length=4096, repr=False)


def parse_token_message(body: str) -> TokenMessage:
    """The token message in a queue body, or MalformedMessageError naming failed fields (never values)."""
    try:
        return TokenMessage.model_validate_json(body)
    except ValidationError as error:
        fields = ", ".join(".".join(map(str, line["loc"])) or "body" for line in error.errors())
        raise MalformedMessageError(f"not an approval token message ({fields})") from None


def deadline(stage: str, stored_at: datetime, wait: timedelta) -> datetime:
    """When the approval expires if nobody decides: after the escalated wait too, unless already in it."""
    return stored_at + (wait if stage == "ESCALATED" else 2 * wait)


def is_approval_id(text: str) -> bool:
    """Whether some approval could have this id."""
    return _APPROVAL_ID.match(text) is not None


def approval_id_for(prescription_id: str) -> str:
    """The approval of a controlled prescription; the workflow builds the same form
    (States.Format('apr-{}', $.prescriptionId); a test checks it)."""
    return f"apr-{prescription_id}"


def stage_of(record: Mapping[str, Any]) -> Stage:
    """Which wait the approval's stored token belongs to."""
    return "ESCALATED" if record.get("escalated") else "REQUESTED"


def approval_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """The approval as a pharmacist may see it (an approval's empty reason is no reason)."""
    return {name: record[name] for name in VISIBLE_FIELDS if name in record and record[name] != ""}


def decided_view(record: Mapping[str, Any], decision: Decision) -> dict[str, Any]:
    """The approval as it stands once the workflow has recorded this decision."""
    decided = {name: value for name, value in record.items() if name not in ("taskToken", *_DECISION_FIELDS)}
    return approval_view({**decided, **decision.model_dump(), "status": decision.status.value})


def _is_the_same_decision(record: Mapping[str, Any], pharmacist: str, request: DecisionRequest) -> bool:
    return (
        record.get("decidedBy") == pharmacist
        and record.get("decision") == request.decision
        and (record.get("reason") or None) == request.reason
    )


def check_decision(record: Mapping[str, Any], pharmacist: str, request: DecisionRequest) -> bool:
    """Raise unless this pharmacist may decide this approval now. True when this very decision already
    stands (a retry of a request whose answer was lost): it is answered as it stands, nothing is sent."""
    if record.get("prescribedBy") == pharmacist:
        raise ForbiddenError("nobody may decide on a prescription of their own")
    status = record.get("status")
    if status in (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED) and _is_the_same_decision(
        record, pharmacist, request
    ):
        return True
    if status != ApprovalStatus.PENDING:
        raise ConflictError(f"the approval is already {str(status).lower()}", approval_view(record))
    if not record.get("taskToken"):
        raise ConflictError(
            "the approval is not ready for a decision yet; try again shortly", approval_view(record)
        )
    return False


def decision_for(
    record: Mapping[str, Any], request: DecisionRequest, pharmacist: str, at: datetime
) -> Decision:
    """This pharmacist's decision on the approval's current wait; its id is the same on every retry."""
    name = "\n".join(
        (record["approvalId"], stage_of(record), pharmacist, request.decision, request.reason or "")
    )
    return Decision(
        decision_id=str(uuid.uuid5(_DECISION_IDS, name)),
        decision=request.decision,
        decided_by=pharmacist,
        decided_at=at.isoformat(),
        reason=request.reason or "",
    )


class WaitOutcome(StrEnum):
    """What the execution history says of one wait."""

    OPEN = "OPEN"  # still waiting: no decision reached it
    DECIDED = "DECIDED"  # a decision ended it (which one: WaitReport.decision)
    ENDED = "ENDED"  # it timed out, or the execution ended, without a decision


@dataclass(frozen=True, slots=True)
class WaitReport:
    outcome: WaitOutcome
    decision: Decision | None = None


def _details(event: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    return event.get(kind) or {}


_EXECUTION_ENDS: Final = frozenset(
    {"ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"}
)


def read_wait(events: Iterable[Mapping[str, Any]], wait_state: str) -> WaitReport:
    """How the named wait state fared, from its execution's history events (oldest first)."""
    inside = False
    for event in events:
        kind = event.get("type")
        if kind == "TaskStateEntered":
            inside = inside or _details(event, "stateEnteredEventDetails").get("name") == wait_state
        elif kind in _EXECUTION_ENDS:
            return WaitReport(WaitOutcome.ENDED)
        elif not inside:
            continue
        elif kind == "TaskSucceeded":
            decision = Decision.from_callback(_details(event, "taskSucceededEventDetails").get("output"))
            return WaitReport(WaitOutcome.DECIDED, decision) if decision else WaitReport(WaitOutcome.ENDED)
        elif kind == "TaskFailed":
            failed = _details(event, "taskFailedEventDetails")
            decision = Decision.from_callback(failed.get("cause"))
            if failed.get("error") == REJECTION_ERROR and decision:
                return WaitReport(WaitOutcome.DECIDED, decision)
            return WaitReport(WaitOutcome.ENDED)
        elif kind in ("TaskTimedOut", "TaskStateExited"):
            return WaitReport(WaitOutcome.ENDED)
    return WaitReport(WaitOutcome.OPEN)


def settle(report: WaitReport, mine: Decision, record: Mapping[str, Any]) -> dict[str, Any]:
    """After a refused or unanswered resume: the approval as this decision left it, or why it did not
    take (another decision came first, the wait ended: 409; the wait still runs: 503, send it again)."""
    if report.outcome is WaitOutcome.DECIDED and report.decision is not None:
        if report.decision.decision_id == mine.decision_id:
            return decided_view(record, report.decision)
        raise ConflictError(
            "another decision reached the workflow first", decided_view(record, report.decision)
        )
    if report.outcome is WaitOutcome.ENDED:
        raise ConflictError("the approval's wait ended before the decision reached it", approval_view(record))
    raise ServiceUnavailableError("the decision has not reached the workflow yet; send it again")
