import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from carebus.approvals import (
    ApprovalStatus,
    DecisionRequest,
    approval_view,
    check_decision,
    deadline,
    decided_values,
    parse_token_message,
    workflow_decision,
)
from carebus.errors import ConflictError, ForbiddenError, MalformedMessageError

APPROVAL_ID = "apr-rx-5f51a656-9daa-559d-8d95-7aa5a75d9b03-2"
TOKEN = "AQCEAAAAKgAAAAMAAAAAAAAAAf+secret-task-token+"
PRESCRIBER = "0c5f3b1e-7d0a-4a8e-9c1f-2b7d4e6a8f10"
PHARMACIST = "3d7b9e21-6c4a-4b8f-9e05-7a1c2d3e4f50"
DECIDED_AT = datetime(2026, 11, 22, 12, 30, tzinfo=UTC)
HIDDEN = ("taskToken", "executionArn", "prescribedBy")


def approval(**overrides: Any) -> dict[str, Any]:
    """An approval record as the workflow and the token consumer leave it while a decision is awaited."""
    return {
        "approvalId": APPROVAL_ID,
        "status": "PENDING",
        "escalated": False,
        "prescriptionId": APPROVAL_ID.removeprefix("apr-"),
        "encounterId": "5f51a656-9daa-559d-8d95-7aa5a75d9b03",
        "drug": "Oxycodone Hydrochloride 5 MG Oral Tablet",
        "deaSchedule": "II",
        "quantity": 12,
        "refills": 0,
        "prescriberNpi": "1234567893",
        "prescribedBy": PRESCRIBER,
        "requestedAt": "2026-11-22T12:00:00Z",
        "executionArn": "arn:aws:states:us-east-1:123456789012:execution:approval:run-1",
        "taskToken": TOKEN,
        "tokenStoredAt": "2026-11-22T12:00:01+00:00",
        "expiresAt": "2026-11-24T12:00:01+00:00",
        **overrides,
    }


def token_body(**overrides: Any) -> str:
    return json.dumps({"approvalId": APPROVAL_ID, "stage": "REQUESTED", "taskToken": TOKEN, **overrides})


# ----- DecisionRequest ---------------------------------------------------------------------------------
def test_an_approval_needs_no_reason() -> None:
    request = DecisionRequest.model_validate({"decision": "APPROVE"})

    assert (request.decision, request.reason) == ("APPROVE", None)


def test_a_rejection_with_a_reason_is_accepted() -> None:
    request = DecisionRequest.model_validate({"decision": "REJECT", "reason": "  Exceeds the protocol  "})

    assert (request.decision, request.reason) == ("REJECT", "Exceeds the protocol")


@pytest.mark.parametrize("reason", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_a_rejection_needs_a_reason(reason: str | None) -> None:
    body = {"decision": "REJECT"} | ({} if reason is None else {"reason": reason})

    with pytest.raises(ValidationError):
        DecisionRequest.model_validate(body)


@pytest.mark.parametrize("decision", ["MAYBE", "approve", "", None, 1])
def test_a_decision_other_than_approve_or_reject_is_refused(decision: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        DecisionRequest.model_validate({"decision": decision, "reason": "because"})

    assert [error["loc"] for error in caught.value.errors()] == [("decision",)]


def test_a_body_without_a_decision_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        DecisionRequest.model_validate({"reason": "because"})

    assert [(error["loc"], error["type"]) for error in caught.value.errors()] == [(("decision",), "missing")]


@pytest.mark.parametrize("extra", ["decidedBy", "taskToken", "status"])
def test_fields_other_than_decision_and_reason_are_refused(extra: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DecisionRequest.model_validate({"decision": "APPROVE", extra: "x"})

    assert [(error["loc"], error["type"]) for error in caught.value.errors()] == [
        ((extra,), "extra_forbidden")
    ]


def test_a_reason_may_be_500_characters_but_not_501() -> None:
    assert DecisionRequest.model_validate({"decision": "REJECT", "reason": "r" * 500}).reason == "r" * 500

    with pytest.raises(ValidationError) as caught:
        DecisionRequest.model_validate({"decision": "REJECT", "reason": "r" * 501})

    assert [(error["loc"], error["type"]) for error in caught.value.errors()] == [
        (("reason",), "string_too_long")
    ]


# ----- parse_token_message -----------------------------------------------------------------------------
@pytest.mark.parametrize("stage", ["REQUESTED", "ESCALATED"])
def test_a_token_message_names_its_approval_stage_and_token(stage: str) -> None:
    message = parse_token_message(token_body(stage=stage))

    assert (message.approval_id, message.stage, message.task_token) == (APPROVAL_ID, stage, TOKEN)


def test_a_parsed_token_message_does_not_show_its_token() -> None:
    message = parse_token_message(token_body())

    assert TOKEN not in repr(message)
    assert TOKEN not in str(message)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (token_body()[:-5], "body"),
        ("[]", "body"),
        (token_body(stage="DECIDED"), "stage"),
        (token_body(approvalId="rx-5f51a656-9daa-559d-8d95-7aa5a75d9b03-2"), "approvalId"),
        (token_body(taskToken=""), "taskToken"),
        (token_body(taskToken="t" * 4097), "taskToken"),
        (token_body(executionArn="arn:aws:states:us-east-1:1:execution:x:y"), "executionArn"),
        (json.dumps({"approvalId": APPROVAL_ID, "stage": "REQUESTED"}), "taskToken"),
    ],
    ids=[
        "truncated-json",
        "not-an-object",
        "unknown-stage",
        "not-an-approval-id",
        "empty-token",
        "token-too-long",
        "extra-field",
        "no-token",
    ],
)
def test_a_malformed_token_message_is_refused_naming_the_field_never_the_token(body: str, named: str) -> None:
    with pytest.raises(MalformedMessageError) as caught:
        parse_token_message(body)

    assert named in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert "t" * 50 not in str(caught.value)
    # Raised from None: no chained pydantic error (which quotes the input) reaches a traceback.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


# ----- deadline ----------------------------------------------------------------------------------------
def test_a_requested_wait_expires_after_two_waits_the_escalated_one_after_one() -> None:
    stored_at = datetime(2026, 11, 22, 12, tzinfo=UTC)
    wait = timedelta(hours=24)

    assert deadline("REQUESTED", stored_at, wait) == datetime(2026, 11, 24, 12, tzinfo=UTC)
    assert deadline("ESCALATED", stored_at, wait) == datetime(2026, 11, 23, 12, tzinfo=UTC)


# ----- approval_view -----------------------------------------------------------------------------------
def test_the_view_hides_the_token_the_execution_and_the_prescribers_login() -> None:
    view = approval_view(approval())

    for hidden in HIDDEN:
        assert hidden not in view
    assert TOKEN not in json.dumps(view)
    assert PRESCRIBER not in json.dumps(view)


def test_the_view_shows_what_a_pharmacist_needs_to_decide() -> None:
    view = approval_view(approval())

    assert view == {
        name: approval()[name]
        for name in (
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
        )
    }


def test_the_view_of_a_decided_approval_shows_the_audit_of_the_decision() -> None:
    decided = approval(
        status="REJECTED", decision="REJECT", decidedBy=PHARMACIST, decidedAt="2026-11-22T12:30:00+00:00"
    )
    decided["reason"] = "Exceeds the protocol"
    del decided["taskToken"]

    view = approval_view(decided)

    assert {name: view[name] for name in ("status", "decision", "decidedBy", "decidedAt", "reason")} == {
        "status": "REJECTED",
        "decision": "REJECT",
        "decidedBy": PHARMACIST,
        "decidedAt": "2026-11-22T12:30:00+00:00",
        "reason": "Exceeds the protocol",
    }


# ----- check_decision ----------------------------------------------------------------------------------
def test_another_pharmacist_may_decide_a_pending_approval_with_a_token() -> None:
    check_decision(approval(), PHARMACIST)  # no exception


def test_nobody_may_decide_on_their_own_prescription() -> None:
    with pytest.raises(ForbiddenError):
        check_decision(approval(), PRESCRIBER)


def test_the_prescriber_is_refused_even_once_the_approval_is_decided() -> None:
    with pytest.raises(ForbiddenError):
        check_decision(approval(status="APPROVED", taskToken=None), PRESCRIBER)


@pytest.mark.parametrize("status", [ApprovalStatus.APPROVED, ApprovalStatus.REJECTED, ApprovalStatus.EXPIRED])
def test_an_approval_that_is_no_longer_pending_conflicts_carrying_its_current_state(status: str) -> None:
    record = approval(status=str(status))
    del record["taskToken"]

    with pytest.raises(ConflictError) as caught:
        check_decision(record, PHARMACIST)

    assert caught.value.current == approval_view(record)
    assert caught.value.current["status"] == status
    assert str(status).lower() in str(caught.value)


def test_a_pending_approval_whose_token_is_not_stored_yet_conflicts() -> None:
    record = approval()
    del record["taskToken"]

    with pytest.raises(ConflictError) as caught:
        check_decision(record, PHARMACIST)

    assert caught.value.current is not None
    assert caught.value.current["status"] == "PENDING"
    assert "not ready" in str(caught.value)


def test_a_conflict_never_carries_the_token() -> None:
    with pytest.raises(ConflictError) as caught:
        check_decision(approval(status="APPROVED"), PHARMACIST)

    assert "taskToken" not in caught.value.current
    assert TOKEN not in str(caught.value)


# ----- decided_values and workflow_decision ------------------------------------------------------------
def test_an_approval_records_who_decided_when_and_the_outcome() -> None:
    values = decided_values(DecisionRequest(decision="APPROVE"), PHARMACIST, DECIDED_AT)

    assert values == {
        "status": "APPROVED",
        "decision": "APPROVE",
        "decidedBy": PHARMACIST,
        "decidedAt": "2026-11-22T12:30:00+00:00",
    }


def test_a_rejection_records_its_reason_too() -> None:
    values = decided_values(DecisionRequest(decision="REJECT", reason="Too many"), PHARMACIST, DECIDED_AT)

    assert values == {
        "status": "REJECTED",
        "decision": "REJECT",
        "decidedBy": PHARMACIST,
        "decidedAt": "2026-11-22T12:30:00+00:00",
        "reason": "Too many",
    }


def test_the_workflow_hears_who_when_and_why_of_a_rejection() -> None:
    values = decided_values(DecisionRequest(decision="REJECT", reason="Too many"), PHARMACIST, DECIDED_AT)

    assert workflow_decision(values) == {
        "decidedBy": PHARMACIST,
        "decidedAt": "2026-11-22T12:30:00+00:00",
        "reason": "Too many",
    }


def test_the_workflow_hears_an_empty_reason_for_an_approval() -> None:
    values = decided_values(DecisionRequest(decision="APPROVE"), PHARMACIST, DECIDED_AT)

    assert workflow_decision(values) == {
        "decidedBy": PHARMACIST,
        "decidedAt": "2026-11-22T12:30:00+00:00",
        "reason": "",
    }
