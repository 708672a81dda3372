"""ApprovalTokenFunction on moto: each wait's token kept in its approval record, stale ones dropped, and
the token never in a log line."""

import json
import uuid
from copy import deepcopy
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from carebus_local.functions import InProcessFunction
from carebus_testing import (
    SAMPLE_APPROVAL_ID,
    json_logs,
    load_event,
    recorded_approval,
    request_sample_approval,
    submit_sample,
    wait_until,
)

SAMPLE = "approval_tokens/task_token.json"
SAMPLE_TOKEN = json.loads(load_event(SAMPLE)["Records"][0]["body"])["taskToken"]
SECRET = "AQDEAAAAKgAAAAMAAAAAAAAAAQ-a-live-looking-task-token"


@pytest.fixture
def tokens(function) -> InProcessFunction:
    return function("ApprovalTokenFunction")


def requested_without_token(function, driver) -> None:
    """The sample approval recorded and its first wait open, its token still on the queue."""
    submit_sample(function)
    driver.deliver("PrescriptionsQueue")
    assert driver.deliver_rule_targets() == 1
    wait_until(lambda: driver.depth("ApprovalTokenQueue"), what="the first token on its queue")


def approval_record(driver) -> dict[str, Any] | None:
    return (
        driver.table("ApprovalsTable")
        .get_item(Key={"approvalId": SAMPLE_APPROVAL_ID}, ConsistentRead=True)
        .get("Item")
    )


def token_event(*bodies: str) -> dict[str, Any]:
    """The sample event with these bodies, each record with a message id of its own."""
    template = load_event(SAMPLE)["Records"][0]
    records = []
    for body in bodies:
        record = deepcopy(template)
        record["messageId"] = str(uuid.uuid4())
        record["receiptHandle"] = f"AQEB{uuid.uuid4().hex}"
        record["body"] = body
        records.append(record)
    return {"Records": records}


def token_body(stage: str = "REQUESTED", token: str = SECRET, **fields: Any) -> str:
    return json.dumps({"approvalId": SAMPLE_APPROVAL_ID, "stage": stage, "taskToken": token, **fields})


def log_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if "level" in line]


# ----- storing -----------------------------------------------------------------------------------------
def test_the_sample_token_is_stored_and_its_refused_heartbeat_is_no_failure(
    tokens, function, driver, stack, heartbeats
):
    requested_without_token(function, driver)
    wait = timedelta(seconds=int(stack.cfn["Parameters"]["ApprovalTimeoutSeconds"]["Default"]))

    with json_logs(tokens) as lines:
        response = tokens.invoke(load_event(SAMPLE))

    assert response == {"batchItemFailures": []}
    # The sample's token is no live wait's: Step Functions refuses its heartbeat, which ends nothing.
    assert heartbeats == ["InvalidToken"]
    record = approval_record(driver)
    assert record["taskToken"] == SAMPLE_TOKEN
    stored_at = datetime.fromisoformat(record["tokenStoredAt"])
    assert datetime.fromisoformat(record["expiresAt"]) == stored_at + 2 * wait
    assert (record["status"], record["escalated"]) == ("PENDING", False)
    assert log_lines(lines)
    assert all(line["level"] == "INFO" for line in log_lines(lines))
    assert SAMPLE_TOKEN not in json.dumps(lines)


def test_the_workflows_own_token_is_stored_and_heartbeaten(function, driver, heartbeats):
    requested_without_token(function, driver)
    (message,) = driver.messages("ApprovalTokenQueue")
    handed_out = json.loads(message["Body"])["taskToken"]

    result = driver.deliver("ApprovalTokenQueue")

    assert result.failed == []
    assert heartbeats == ["accepted"]
    assert approval_record(driver)["taskToken"] == handed_out
    assert driver.depth("ApprovalTokenQueue") == 0


def test_every_log_line_carries_the_approval_id_and_never_the_token(tokens, function, driver):
    requested_without_token(function, driver)

    with json_logs(tokens) as lines:
        response = tokens.invoke(token_event(token_body()))

    assert response == {"batchItemFailures": []}
    assert log_lines(lines)
    assert [line.get("approval_id") for line in log_lines(lines)] == [SAMPLE_APPROVAL_ID] * len(
        log_lines(lines)
    )
    assert SECRET not in json.dumps(lines)


# ----- dropping ----------------------------------------------------------------------------------------
def test_a_token_for_a_decided_approval_is_dropped(tokens, function, driver, heartbeats):
    request_sample_approval(driver, function)
    assert function("ApprovalsFunction").invoke(load_event("approvals/approve.json"))["statusCode"] == 200
    heartbeats.clear()
    decided = recorded_approval(driver)

    response = tokens.invoke(token_event(token_body("REQUESTED"), token_body("ESCALATED")))

    assert response == {"batchItemFailures": []}
    assert approval_record(driver) == decided
    assert "taskToken" not in decided
    assert heartbeats == []


def test_a_token_for_an_unknown_approval_creates_no_record(tokens, driver, heartbeats):
    response = tokens.invoke(load_event(SAMPLE))

    assert response == {"batchItemFailures": []}
    assert driver.items("ApprovalsTable") == []
    assert heartbeats == []


class TestAfterEscalation:
    """Three-second waits: the first token is left on the queue until the request has escalated."""

    @pytest.fixture
    def stack_parameters(self) -> dict[str, str]:
        return {"ApprovalTimeoutSeconds": "3", "ApprovalHeartbeatSeconds": "3"}

    def test_a_stale_requested_token_is_dropped_and_the_escalated_one_kept(
        self, tokens, function, driver, heartbeats
    ):
        requested_without_token(function, driver)
        wait_until(lambda: driver.depth("ApprovalTokenQueue") == 2, what="the escalated wait's token")
        handed_out = {
            json.loads(message["Body"])["stage"]: json.loads(message["Body"])["taskToken"]
            for message in driver.messages("ApprovalTokenQueue")
        }
        assert set(handed_out) == {"REQUESTED", "ESCALATED"}

        with json_logs(tokens) as lines:
            while driver.depth("ApprovalTokenQueue"):
                assert driver.deliver("ApprovalTokenQueue").failed == []
            # The first wait's token once more, as a late redelivery would bring it.
            late = tokens.invoke(token_event(token_body("REQUESTED", handed_out["REQUESTED"])))
        record = approval_record(driver)

        assert late == {"batchItemFailures": []}
        assert (record["status"], record["escalated"]) == ("PENDING", True)
        assert record["taskToken"] == handed_out["ESCALATED"]
        # Only the escalated wait was heartbeaten: both REQUESTED deliveries were dropped before.
        assert heartbeats == ["accepted"]
        everything = json.dumps(lines)
        for token in handed_out.values():
            assert token not in everything


# ----- malformed messages ------------------------------------------------------------------------------
MALFORMED = [
    token_body()[:-3],
    token_body(stage="DECIDED"),
    token_body(approvalId="rx-5f51a656-9daa-559d-8d95-7aa5a75d9b03-2"),
    token_body(executionArn="arn:aws:states:us-east-1:123456789012:execution:x:y"),
    json.dumps({"approvalId": SAMPLE_APPROVAL_ID, "stage": "REQUESTED"}),
    json.dumps([json.loads(token_body())]),
    "",
]


def test_malformed_messages_are_batch_item_failures_and_their_tokens_are_never_logged(
    tokens, function, driver
):
    requested_without_token(function, driver)
    event = token_event(*MALFORMED, token_body("REQUESTED", SAMPLE_TOKEN))
    *malformed, valid = event["Records"]

    with json_logs(tokens) as lines:
        response = tokens.invoke(event)

    assert response == {
        "batchItemFailures": [{"itemIdentifier": record["messageId"]} for record in malformed]
    }
    assert approval_record(driver)["taskToken"] == SAMPLE_TOKEN
    warnings = [line for line in lines if line.get("level") == "WARNING"]
    assert len(warnings) == len(malformed)
    assert {line["message_id"] for line in warnings} == {record["messageId"] for record in malformed}
    assert SECRET not in json.dumps(lines)
    assert valid["messageId"] not in {line["message_id"] for line in warnings}


def test_a_malformed_token_message_reaches_the_dead_letter_queue_after_the_maximum_receives(stack, driver):
    redrive = stack.cfn["Resources"]["ApprovalTokenQueue"]["Properties"]["RedrivePolicy"]
    max_receives = int(redrive["maxReceiveCount"])
    dead_letters = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
    poison = token_body(stage="DECIDED")
    message_id = driver.send_raw("ApprovalTokenQueue", poison)

    for attempt in range(1, max_receives + 1):
        result = driver.deliver("ApprovalTokenQueue")
        assert result.failed == [message_id], f"receive {attempt}"
        assert driver.depth(dead_letters) == 0, f"dead-lettered after only {attempt} receives"

    assert driver.deliver("ApprovalTokenQueue").received == []
    assert [message["Body"] for message in driver.messages(dead_letters)] == [poison]


def test_a_heartbeat_refused_for_another_reason_is_retried(tokens, function, driver, monkeypatch):
    requested_without_token(function, driver)

    def throttled(**_: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "ThrottlingException", "Message": "injected"}}, "SendTaskHeartbeat"
        )

    monkeypatch.setattr(tokens.module.stepfunctions, "send_task_heartbeat", throttled)
    event = token_event(token_body())

    with json_logs(tokens) as lines:
        response = tokens.invoke(event)

    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert SECRET not in json.dumps(lines)
