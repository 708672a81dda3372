import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from carebus.approvals import (
    REJECTION_ERROR,
    WAIT_STATES,
    ApprovalStatus,
    Decision,
    DecisionRequest,
    WaitOutcome,
    WaitReport,
    approval_view,
    check_decision,
    deadline,
    decided_view,
    decision_for,
    parse_token_message,
    read_wait,
    settle,
)
from carebus.errors import ConflictError, ForbiddenError, MalformedMessageError, ServiceUnavailableError

APPROVAL_ID = "apr-rx-5f51a656-9daa-559d-8d95-7aa5a75d9b03-2"
TOKEN = "AQCEAAAAKgAAAAMAAAAAAAAAAf+secret-task-token+"
PRESCRIBER = "0c5f3b1e-7d0a-4a8e-9c1f-2b7d4e6a8f10"
PHARMACIST = "3d7b9e21-6c4a-4b8f-9e05-7a1c2d3e4f50"
DECIDED_AT = datetime(2026, 11, 22, 12, 30, tzinfo=UTC)
HIDDEN = ("taskToken", "executionArn", "prescribedBy", "decisionId")
APPROVE = DecisionRequest(decision="APPROVE")
REJECT = DecisionRequest(decision="REJECT", reason="Exceeds the protocol")


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


def test_a_rejection_with_a_reason_is_accepted_as_written() -> None:
    reason = "Exceeds the protocol:\n\tsee the 2024 policy"
    request = DecisionRequest.model_validate({"decision": "REJECT", "reason": reason})

    assert (request.decision, request.reason) == ("REJECT", reason)


@pytest.mark.parametrize("reason", ["  padded  ", "\u202eevil", "nul\x00inside", "\u200b"])
def test_a_reason_must_be_printable_text(reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DecisionRequest.model_validate({"decision": "REJECT", "reason": reason})

    refusals = [(error["loc"], error["type"]) for error in caught.value.errors()]
    assert refusals == [(("reason",), "text_characters")]


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
    assert check_decision(approval(), PHARMACIST, APPROVE) is False


def test_nobody_may_decide_on_their_own_prescription() -> None:
    with pytest.raises(ForbiddenError):
        check_decision(approval(), PRESCRIBER, APPROVE)


def test_the_prescriber_is_refused_even_once_the_approval_is_decided() -> None:
    with pytest.raises(ForbiddenError):
        check_decision(approval(status="APPROVED", taskToken=None), PRESCRIBER, APPROVE)


@pytest.mark.parametrize("status", [status for status in ApprovalStatus if status != ApprovalStatus.PENDING])
def test_an_approval_that_is_no_longer_pending_conflicts_carrying_its_current_state(status: str) -> None:
    record = approval(status=str(status))
    del record["taskToken"]

    with pytest.raises(ConflictError) as caught:
        check_decision(record, PHARMACIST, APPROVE)

    assert caught.value.current == approval_view(record)
    assert caught.value.current["status"] == status
    assert str(status).lower() in str(caught.value)


def test_a_pending_approval_whose_token_is_not_stored_yet_conflicts() -> None:
    record = approval()
    del record["taskToken"]

    with pytest.raises(ConflictError) as caught:
        check_decision(record, PHARMACIST, APPROVE)

    assert caught.value.current is not None
    assert caught.value.current["status"] == "PENDING"
    assert "not ready" in str(caught.value)


def test_a_conflict_never_carries_the_token() -> None:
    with pytest.raises(ConflictError) as caught:
        check_decision(approval(status="APPROVED"), PHARMACIST, APPROVE)

    assert "taskToken" not in caught.value.current
    assert TOKEN not in str(caught.value)


def test_the_same_pharmacists_same_decision_that_already_stands_is_answered_as_it_stands() -> None:
    approved = approval(status="APPROVED", decision="APPROVE", decidedBy=PHARMACIST, decidedAt="t")
    rejected = approval(status="REJECTED", decision="REJECT", decidedBy=PHARMACIST, reason=REJECT.reason)

    assert check_decision(approved, PHARMACIST, APPROVE) is True
    assert check_decision(rejected, PHARMACIST, REJECT) is True


@pytest.mark.parametrize(
    ("record", "request_"),
    [
        (approval(status="APPROVED", decision="APPROVE", decidedBy=PHARMACIST), REJECT),
        (approval(status="REJECTED", decision="REJECT", decidedBy=PHARMACIST, reason="Other"), REJECT),
        (approval(status="APPROVED", decision="APPROVE", decidedBy=PRESCRIBER + "-other"), APPROVE),
    ],
    ids=["other-decision", "other-reason", "other-pharmacist"],
)
def test_any_other_decision_of_a_decided_approval_conflicts(
    record: dict[str, Any], request_: DecisionRequest
) -> None:
    with pytest.raises(ConflictError):
        check_decision(record, PHARMACIST, request_)


# ----- Decision and decision_for -----------------------------------------------------------------------
def test_a_decision_says_who_when_what_and_why() -> None:
    decision = decision_for(approval(), REJECT, PHARMACIST, DECIDED_AT)

    assert (decision.decision, decision.decided_by, decision.decided_at, decision.reason) == (
        "REJECT",
        PHARMACIST,
        "2026-11-22T12:30:00+00:00",
        "Exceeds the protocol",
    )
    assert decision.status is ApprovalStatus.REJECTED


def test_an_approval_without_a_reason_carries_an_empty_one_for_the_workflow() -> None:
    decision = decision_for(approval(), APPROVE, PHARMACIST, DECIDED_AT)

    assert json.loads(decision.to_callback()) == {
        "decisionId": decision.decision_id,
        "decision": "APPROVE",
        "decidedBy": PHARMACIST,
        "decidedAt": "2026-11-22T12:30:00+00:00",
        "reason": "",
    }


def test_a_decision_survives_the_round_trip_through_the_workflow() -> None:
    decision = decision_for(approval(), REJECT, PHARMACIST, DECIDED_AT)

    assert Decision.from_callback(decision.to_callback()) == decision


@pytest.mark.parametrize("text", [None, "", "{}", "not json", '{"decision": "APPROVE"}'])
def test_a_callback_that_is_not_a_decision_reads_as_none(text: str | None) -> None:
    assert Decision.from_callback(text) is None


@given(
    minutes=st.integers(min_value=0, max_value=10_000),
    request_=st.sampled_from([APPROVE, REJECT, DecisionRequest(decision="REJECT", reason="Other")]),
)
def test_a_retried_decision_keeps_the_id_of_its_first_attempt(
    minutes: int, request_: DecisionRequest
) -> None:
    first = decision_for(approval(), request_, PHARMACIST, DECIDED_AT)
    retried = decision_for(approval(), request_, PHARMACIST, DECIDED_AT + timedelta(minutes=minutes))

    assert retried.decision_id == first.decision_id


def test_decisions_of_other_pharmacists_other_outcomes_or_another_wait_have_other_ids() -> None:
    ids = {
        decision_for(record, request_, pharmacist, DECIDED_AT).decision_id
        for record in (approval(), approval(escalated=True), approval(approvalId=APPROVAL_ID[:-1] + "3"))
        for request_ in (APPROVE, REJECT, DecisionRequest(decision="REJECT", reason="Other"))
        for pharmacist in (PHARMACIST, PRESCRIBER)
    }

    assert len(ids) == 3 * 3 * 2


# ----- decided_view ------------------------------------------------------------------------------------
def test_the_decided_view_is_the_approval_as_the_workflow_records_the_decision() -> None:
    decision = decision_for(approval(), REJECT, PHARMACIST, DECIDED_AT)

    view = decided_view(approval(), decision)

    assert view == {
        **approval_view(approval()),
        "status": "REJECTED",
        "decision": "REJECT",
        "decidedBy": PHARMACIST,
        "decidedAt": "2026-11-22T12:30:00+00:00",
        "reason": "Exceeds the protocol",
    }


def test_the_decided_view_of_an_approval_shows_no_empty_reason_and_no_secrets() -> None:
    view = decided_view(approval(), decision_for(approval(), APPROVE, PHARMACIST, DECIDED_AT))

    assert "reason" not in view
    for hidden in HIDDEN:
        assert hidden not in view


# ----- read_wait: what the execution history says of a wait -------------------------------------------
def entered(name: str) -> dict[str, Any]:
    return {"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": name}}


def exited(name: str) -> dict[str, Any]:
    return {"type": "TaskStateExited", "stateExitedEventDetails": {"name": name}}


def succeeded(output: str) -> dict[str, Any]:
    return {"type": "TaskSucceeded", "taskSucceededEventDetails": {"output": output}}


def failed(error: str, cause: str | None = None) -> dict[str, Any]:
    return {"type": "TaskFailed", "taskFailedEventDetails": {"error": error, "cause": cause}}


FIRST_WAIT = WAIT_STATES["REQUESTED"]
MINE = decision_for(approval(), APPROVE, PHARMACIST, DECIDED_AT)
THEIRS = decision_for(approval(), REJECT, "5e2d8c41-0b7a-4f3e-a1d2-6c9b8e7f0a13", DECIDED_AT)
BEFORE_THE_WAIT = [
    {"type": "ExecutionStarted"},
    entered("LoadPrescription"),
    succeeded('{"Item": {}}'),
    exited("LoadPrescription"),
    entered(FIRST_WAIT),
    {"type": "TaskScheduled"},
    {"type": "TaskSubmitted"},
]


def test_a_wait_without_an_outcome_is_still_open() -> None:
    assert read_wait(BEFORE_THE_WAIT, FIRST_WAIT) == WaitReport(WaitOutcome.OPEN)


def test_a_succeeded_wait_was_decided_by_the_approval_in_its_output() -> None:
    history = [*BEFORE_THE_WAIT, succeeded(MINE.to_callback()), exited(FIRST_WAIT)]

    assert read_wait(history, FIRST_WAIT) == WaitReport(WaitOutcome.DECIDED, MINE)


def test_a_wait_failed_as_a_rejection_was_decided_by_the_rejection_in_its_cause() -> None:
    history = [*BEFORE_THE_WAIT, failed(REJECTION_ERROR, THEIRS.to_callback()), exited(FIRST_WAIT)]

    assert read_wait(history, FIRST_WAIT) == WaitReport(WaitOutcome.DECIDED, THEIRS)


@pytest.mark.parametrize(
    "ending",
    [
        [{"type": "TaskTimedOut"}],
        [failed("States.Timeout")],
        [failed("States.HeartbeatTimeout")],
        [failed(REJECTION_ERROR, "not a decision")],
        [exited(FIRST_WAIT)],
        [{"type": "ExecutionAborted"}],
    ],
    ids=["timed-out", "timeout-error", "heartbeat", "unreadable-rejection", "exited", "execution-stopped"],
)
def test_a_wait_that_ended_otherwise_ended_without_a_decision(ending: list[dict[str, Any]]) -> None:
    assert read_wait([*BEFORE_THE_WAIT, *ending], FIRST_WAIT) == WaitReport(WaitOutcome.ENDED)


def test_the_outcome_of_another_tasks_is_not_the_waits() -> None:
    history = [*BEFORE_THE_WAIT[:-3], succeeded(MINE.to_callback())]

    assert read_wait(history, FIRST_WAIT) == WaitReport(WaitOutcome.OPEN)


def test_the_escalated_wait_is_read_on_its_own() -> None:
    second_wait = WAIT_STATES["ESCALATED"]
    history = [*BEFORE_THE_WAIT, {"type": "TaskTimedOut"}, exited(FIRST_WAIT), entered(second_wait)]

    assert read_wait(history, FIRST_WAIT) == WaitReport(WaitOutcome.ENDED)
    assert read_wait(history, second_wait) == WaitReport(WaitOutcome.OPEN)
    assert read_wait([*history, succeeded(MINE.to_callback())], second_wait) == WaitReport(
        WaitOutcome.DECIDED, MINE
    )


# ----- settle: the answer after a resume call failed ---------------------------------------------------
def test_when_this_decision_reached_the_wait_it_is_answered_as_recorded() -> None:
    landed = MINE.model_copy(update={"decided_at": "2026-11-22T12:29:59+00:00"})

    view = settle(WaitReport(WaitOutcome.DECIDED, landed), MINE, approval())

    assert view == decided_view(approval(), landed)


def test_when_another_decision_reached_the_wait_first_it_conflicts_showing_that_decision() -> None:
    with pytest.raises(ConflictError) as caught:
        settle(WaitReport(WaitOutcome.DECIDED, THEIRS), MINE, approval())

    assert caught.value.current == decided_view(approval(), THEIRS)


def test_when_the_wait_ended_without_a_decision_it_conflicts_showing_the_approval_now() -> None:
    now = approval(escalated=True)
    del now["taskToken"]

    with pytest.raises(ConflictError) as caught:
        settle(WaitReport(WaitOutcome.ENDED), MINE, now)

    assert caught.value.current == approval_view(now)


def test_when_the_wait_is_still_open_the_decision_can_be_sent_again() -> None:
    with pytest.raises(ServiceUnavailableError):
        settle(WaitReport(WaitOutcome.OPEN), MINE, approval())
