"""The carebus CLI against one offline runtime: approvals and dead-letter queues."""

import json
import re
import uuid
from pathlib import Path

import pytest
from cli_harness import (
    Cli,
    Ran,
    assert_one_line_without_traceback,
    body_file,
    submitted,
)

from carebus_testing import wait_until

# Every command of this module reaches its own offline stack (tests/stack/conftest.py).
pytestmark = pytest.mark.usefixtures("carebus_home")


# ----- approvals -----------------------------------------------------------------------------------------
def pending_approval_id(carebus: Cli, tmp_path: Path) -> str:
    """Submit the sample body (one controlled prescription) and wait until a pharmacist can decide it."""
    carebus("login", "--as", "physician")
    encounter_id = submitted(carebus, body_file(tmp_path))
    carebus("login", "--as", "pharmacist")
    approval = re.compile(rf"apr-rx-{encounter_id}-\d+")

    def listed() -> str | None:
        match = approval.search(carebus("approvals", "list").out)
        return match.group(0) if match else None

    return wait_until(listed, 30, "the approval to be pending")


def decided(carebus: Cli, *argv: str) -> Ran:
    """A decision, retried while the workflow has not yet handed over its wait (409, still pending)."""

    def attempt() -> Ran | None:
        ran = carebus("approvals", *argv)
        return None if ran.code == 1 and "not ready" in ran.err else ran

    return wait_until(attempt, 30, "the approval to become decidable")


def test_a_pharmacist_lists_shows_and_approves(carebus, tmp_path):
    approval_id = pending_approval_id(carebus, tmp_path)

    shown = carebus("approvals", "show", approval_id)
    approved = decided(carebus, "approve", approval_id)
    again = carebus("approvals", "approve", approval_id)
    contradicted = carebus("approvals", "reject", approval_id, "--reason", "changed my mind")

    assert shown.code == 0
    assert all(field in shown.out for field in ("drug", "deaSchedule", "PENDING"))
    assert approved.code == 0, approved.err
    assert f"{approval_id} APPROVED" in approved.out
    # Sending the same decision again is safe: it is answered as it stands.
    assert again.code == 0
    assert again.out.splitlines()[-1] == approved.out.splitlines()[-1]
    assert contradicted.code == 1
    assert contradicted.error_lines()[0].startswith("carebus: error: 409 ")
    listed = wait_until(
        lambda: (
            (ran := carebus("approvals", "list", "--status", "APPROVED")).code == 0
            and approval_id in ran.out
            and ran
        ),
        10,
        "the approval to be listed as approved",
    )
    assert approval_id in listed.out


def test_a_pharmacist_rejects_with_a_reason(carebus, tmp_path):
    approval_id = pending_approval_id(carebus, tmp_path)

    rejected = decided(carebus, "reject", approval_id, "--reason", "duplicate therapy")

    assert rejected.code == 0, rejected.err
    assert f"{approval_id} REJECTED" in rejected.out


def test_a_rejection_without_a_reason_is_a_usage_error(carebus):
    ran = carebus("approvals", "reject", "apr-rx-anything-1")

    assert ran.code == 2
    assert "--reason" in ran.err


def test_a_physician_may_not_list_approvals(carebus):
    carebus("login", "--as", "physician")

    ran = carebus("approvals", "list")

    assert ran.code == 1
    assert ran.error_lines()[0].startswith("carebus: error: 403 ")


# ----- dead-letter queues --------------------------------------------------------------------------------
def test_dlq_list_shows_every_dead_letter_queue_of_the_outputs_with_its_depth(carebus, runtime):
    ran = carebus("dlq", "list")

    assert ran.code == 0, ran.err
    dead_letter_keys = [key for key in runtime.stack.outputs if key.endswith("DeadLetterQueueUrl")]
    assert len(dead_letter_keys) >= 4
    for key in dead_letter_keys:
        assert key in ran.out
    [billing_row] = [line for line in ran.out.splitlines() if "BillingDeadLetterQueueUrl" in line]
    assert re.search(r"billing\W+BillingDeadLetterQueueUrl\W+\d+\W+\d+", billing_row)


def test_a_malformed_message_is_shown_in_its_dlq_and_redriven_to_its_source_queue(carebus, runtime):
    sqs = runtime.client("sqs")
    outputs = runtime.stack.outputs
    body = json.dumps({"schemaVersion": 1, "encounterId": f"malformed-{uuid.uuid4().hex[:8]}"})
    sqs.send_message(QueueUrl=outputs["BillingQueueUrl"], MessageBody=body)

    def depth(queue_url: str) -> int:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    wait_until(lambda: depth(outputs["BillingDeadLetterQueueUrl"]) == 1, 30, "the message in the billing DLQ")

    shown = carebus("dlq", "show", "billing")
    shown_by_output_key = carebus("dlq", "show", "BillingDeadLetterQueueUrl")
    redriven = carebus("dlq", "redrive", "billing")
    # Back on its source queue (waiting or being retried): it takes five more receives to die again.
    on_source_queue = depth(outputs["BillingQueueUrl"])
    left_in_dlq = depth(outputs["BillingDeadLetterQueueUrl"])

    marker = json.loads(body)["encounterId"]
    assert shown.code == 0, shown.err
    assert marker in shown.out
    assert marker in shown_by_output_key.out
    assert redriven.code == 0, redriven.err
    assert "Moved 1 message(s) from billing" in redriven.out
    assert (on_source_queue, left_in_dlq) == (1, 0)


def test_a_dlq_without_a_source_queue_cannot_be_redriven(carebus):
    ran = carebus("dlq", "redrive", "subscription")

    assert ran.code == 1
    assert_one_line_without_traceback(ran)
    assert "no source queue" in ran.err


def test_an_unknown_dlq_is_a_usage_error(carebus):
    ran = carebus("dlq", "show", "nonsense")

    assert ran.code == 2
    assert_one_line_without_traceback(ran)
    assert "billing" in ran.err
