"""Controlled-substance approvals: the decision a pharmacist sends, who may make it, what others see."""

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from carebus.errors import ConflictError, ForbiddenError, MalformedMessageError
from carebus.models import field_error

# Step Functions errors saying a task token's wait is over (timed out, escalated or expired meanwhile).
WAIT_OVER_ERRORS: Final = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})
# SendTaskFailure's error name for a rejection; the workflow catches it by this name.
REJECTION_ERROR: Final = "PrescriptionRejected"
# What an approval shows a pharmacist: never the task token, the execution or the prescriber's login.
_VISIBLE_FIELDS: Final = (
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
)


class ApprovalStatus(StrEnum):
    """Where an approval stands; only a PENDING one can be decided."""

    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


class DecisionRequest(BaseModel):
    """A pharmacist's decision; a rejection must say why."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    decision: Literal["APPROVE", "REJECT"]
    reason: str | None = Field(default=None, min_length=1, max_length=500)

    @model_validator(mode="after")
    def _rejection_has_a_reason(self) -> Self:
        if self.decision == "REJECT" and not self.reason:
            raise field_error(type(self).__name__, "reason", "reason_required", "A rejection needs a reason")
        return self


class TokenMessage(BaseModel):
    """What the workflow sends the token queue while it waits: whose token, and for which wait."""

    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", frozen=True, populate_by_name=True)

    approval_id: str = Field(pattern=r"^apr-rx-[0-9a-f-]{36}-\d+$")
    stage: Literal["REQUESTED", "ESCALATED"]
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


def approval_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """The approval as a pharmacist may see it."""
    return {name: record[name] for name in _VISIBLE_FIELDS if name in record}


def check_decision(record: Mapping[str, Any], pharmacist: str) -> None:
    """Raise unless this pharmacist may decide this approval now."""
    if record.get("prescribedBy") == pharmacist:
        raise ForbiddenError("nobody may decide on a prescription of their own")
    if record.get("status") != ApprovalStatus.PENDING:
        raise ConflictError(
            f"the approval is already {str(record.get('status')).lower()}", approval_view(record)
        )
    if not record.get("taskToken"):
        raise ConflictError(
            "the approval is not ready for a decision yet; try again shortly", approval_view(record)
        )


def decided_values(request: DecisionRequest, pharmacist: str, at: datetime) -> dict[str, Any]:
    """The approval's new attributes once the decision is made."""
    status = ApprovalStatus.APPROVED if request.decision == "APPROVE" else ApprovalStatus.REJECTED
    values: dict[str, Any] = {
        "status": status.value,
        "decision": request.decision,
        "decidedBy": pharmacist,
        "decidedAt": at.isoformat(),
    }
    if request.reason:
        values["reason"] = request.reason
    return values


def workflow_decision(values: Mapping[str, Any]) -> dict[str, Any]:
    """What the workflow receives: who decided, when and why (no PHI; the reason is the pharmacist's)."""
    return {
        "decidedBy": values["decidedBy"],
        "decidedAt": values["decidedAt"],
        "reason": values.get("reason", ""),
    }
