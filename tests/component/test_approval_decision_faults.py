"""A pharmacist's decision under faults: whatever single call fails or loses its reply, the decision is taken
once and the answer, the approval, the prescription, the workflow and the bus agree. Tokens work once here,
as on AWS (carebus_local.fidelity), so a retried resume meets TaskTimedOut as it would there."""

import json
import threading
from typing import Any

import boto3
import pytest

from carebus.adapters import approval_workflow
from carebus_chaos.faults import Fault, FaultInjector, once
from carebus_testing import (
    PHARMACIST_SUB,
    SAMPLE_APPROVAL_ID,
    approval_executions,
    body_of,
    deliver_token,
    denied_calls,
    listing,
    load_event,
    recorded_approval,
    recorded_calls,
    request_sample_approval,
    wait_for_execution_end,
    wait_until,
)

APPROVE = "approvals/approve.json"
REJECT = "approvals/reject.json"
LOST_REPLIES = [Fault.RETRIED, Fault.REPLY_LOST]


@pytest.fixture
def approvals(function):
    return function("ApprovalsFunction")


@pytest.fixture
def pending(driver, function) -> dict[str, Any]:
    driver.capture_bus()
    return request_sample_approval(driver, function)


def controlled_prescription(driver) -> dict[str, Any]:
    (prescription,) = [record for record in driver.items("PrescriptionsTable") if record.get("deaSchedule")]
    return prescription


def approval_outcomes(driver) -> list[tuple[str, str]]:
    return [
        (event["detail-type"], event["detail"]["eventId"])
        for event in driver.bus_events()
        if event["source"] == "carebus.approvals"
    ]


def execution_of(driver) -> dict[str, Any]:
    [execution] = approval_executions(driver.stack)
    return wait_for_execution_end(execution["executionArn"])


def assert_decided_once(driver, answer: dict[str, Any], status: str, detail_type: str) -> None:
    """The answer, the approval, the prescription, the workflow and the bus all say the same, once."""
    assert (answer["status"], answer["decidedBy"]) == (status, PHARMACIST_SUB)
    record = recorded_approval(driver)
    assert (record["status"], record["decidedBy"], record["decidedAt"]) == (
        status,
        PHARMACIST_SUB,
        answer["decidedAt"],
    )
    assert "taskToken" not in record
    prescription = controlled_prescription(driver)
    assert (prescription["status"], prescription["decidedBy"]) == (status, PHARMACIST_SUB)
    assert execution_of(driver)["status"] == "SUCCEEDED"
    assert approval_outcomes(driver) == [(detail_type, f"{detail_type}/{SAMPLE_APPROVAL_ID}")]


@pytest.mark.parametrize("fault", LOST_REPLIES)
def test_an_approval_whose_resume_lost_its_reply_is_answered_200_and_taken_once(
    approvals, pending, driver, fault
):
    with FaultInjector(once("SendTaskSuccess", fault)).active() as faults, recorded_calls() as calls:
        response = approvals.invoke(load_event(APPROVE))

    assert faults.total(fault) == 1
    assert response["statusCode"] == 200, response["body"]
    assert_decided_once(driver, body_of(response), "APPROVED", "PrescriptionApproved")
    assert "GetExecutionHistory" in [operation for _, operation, _ in calls]
    assert denied_calls(driver.stack, "ApprovalsFunction", calls) == []


@pytest.mark.parametrize("fault", LOST_REPLIES)
def test_a_rejection_whose_resume_lost_its_reply_is_answered_200_and_taken_once_with_its_reason(
    approvals, pending, driver, fault
):
    reason = json.loads(load_event(REJECT)["body"])["reason"]
    with FaultInjector(once("SendTaskFailure", fault)).active() as faults:
        response = approvals.invoke(load_event(REJECT))

    assert faults.total(fault) == 1
    assert response["statusCode"] == 200, response["body"]
    assert body_of(response)["reason"] == reason
    assert_decided_once(driver, body_of(response), "REJECTED", "PrescriptionRejected")
    assert controlled_prescription(driver)["rejectionReason"] == reason


def test_the_retry_of_a_decision_whose_answer_was_lost_is_answered_as_it_stands(approvals, pending, driver):
    first = approvals.invoke(load_event(APPROVE))
    recorded_approval(driver)

    with recorded_calls() as calls:
        again = approvals.invoke(load_event(APPROVE))

    assert (first["statusCode"], again["statusCode"]) == (200, 200)
    assert body_of(again) == body_of(first)
    assert [operation for _, operation, _ in calls] == ["GetItem"]  # nothing is sent twice
    assert_decided_once(driver, body_of(again), "APPROVED", "PrescriptionApproved")


def test_a_lost_reply_with_an_unreadable_history_answers_503_and_the_retry_confirms_the_decision(
    approvals, pending, driver
):
    lost_then_unreadable = [
        once("SendTaskSuccess", Fault.RETRIED),
        once("GetExecutionHistory", Fault.THROTTLED),
    ]

    def choose(call: Any) -> Fault | None:
        return next((fault for rule in lost_then_unreadable if (fault := rule(call))), None)

    with FaultInjector(choose).active() as faults:
        unsure = approvals.invoke(load_event(APPROVE))

    assert faults.total() == 2
    assert unsure["statusCode"] == 503
    assert unsure["multiValueHeaders"]["Retry-After"] == ["2"]
    confirmed = approvals.invoke(load_event(APPROVE))

    assert confirmed["statusCode"] == 200
    assert_decided_once(driver, body_of(confirmed), "APPROVED", "PrescriptionApproved")


def test_a_workflow_step_that_keeps_failing_leaves_approval_and_prescription_failed_and_visible(
    approvals, pending, driver
):
    # The wait fails with an error the workflow has no path for: its failure path takes over.
    boto3.client("stepfunctions").send_task_failure(taskToken=pending["taskToken"], error="Unexpected")

    assert execution_of(driver)["status"] == "FAILED"
    record = recorded_approval(driver)
    assert record["status"] == "FAILED"
    assert "taskToken" not in record
    assert controlled_prescription(driver)["status"] == "APPROVAL_FAILED"
    assert approval_outcomes(driver) == [
        ("PrescriptionApprovalFailed", f"PrescriptionApprovalFailed/{SAMPLE_APPROVAL_ID}")
    ]
    listed = body_of(approvals.invoke(listing("FAILED")))["approvals"]
    assert [(item["approvalId"], item["status"]) for item in listed] == [(SAMPLE_APPROVAL_ID, "FAILED")]
    assert "failedAt" in listed[0]
    late = approvals.invoke(load_event(APPROVE))
    assert late["statusCode"] == 409
    assert body_of(late)["current"]["status"] == "FAILED"


class TestWhenTheWaitEndsWhileTheDecisionIsUnderway:
    @pytest.fixture
    def stack_parameters(self) -> dict[str, str]:
        return {"ApprovalTimeoutSeconds": "3", "ApprovalHeartbeatSeconds": "3"}

    def test_a_decision_that_arrives_after_the_escalation_conflicts_and_the_escalated_wait_is_decidable(
        self, approvals, pending, driver, monkeypatch
    ):
        escalated = threading.Event()
        real_check = approval_workflow.check_decision

        def check_then_let_the_wait_time_out(record: dict[str, Any], pharmacist: str, request: Any) -> bool:
            already = real_check(record, pharmacist, request)
            if not escalated.is_set():
                wait_until(lambda: recorded_escalation(driver), timeout=15, what="the escalation")
                escalated.set()
            return already

        monkeypatch.setattr(approval_workflow, "check_decision", check_then_let_the_wait_time_out)

        late = approvals.invoke(load_event(APPROVE))

        assert late["statusCode"] == 409
        current = body_of(late)["current"]
        assert (current["status"], current["escalated"]) == ("PENDING", True)
        deliver_token(driver)  # the escalated wait's token
        decided = approvals.invoke(load_event(APPROVE))
        assert decided["statusCode"] == 200
        assert_decided_once(driver, body_of(decided), "APPROVED", "PrescriptionApproved")


def recorded_escalation(driver) -> bool:
    record = driver.table("ApprovalsTable").get_item(Key={"approvalId": SAMPLE_APPROVAL_ID})["Item"]
    return bool(record.get("escalated"))
