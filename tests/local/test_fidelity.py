"""The offline stack behaves as AWS documents where moto alone is more lenient (carebus_local.fidelity)."""

import json
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from carebus.approvals import Decision
from carebus_testing import (
    approval_executions,
    deliver_token,
    request_sample_approval,
    wait_for_execution_end,
)

SHORT_WAITS = {"ApprovalTimeoutSeconds": "2", "ApprovalHeartbeatSeconds": "2"}


def refusal(call) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"]


def history_of(stack) -> list[dict]:
    [execution] = approval_executions(stack)
    return boto3.client("stepfunctions").get_execution_history(executionArn=execution["executionArn"])[
        "events"
    ]


# ----- task tokens -----------------------------------------------------------------------------------
def a_decision() -> str:
    """An approval as the approvals function sends it."""
    return Decision(
        decision_id="d-1", decision="APPROVE", decided_by="someone", decided_at="2026-12-01T00:00:00+00:00"
    ).to_callback()


def test_a_task_token_is_accepted_once_and_refused_as_timed_out_after(driver, function):
    token = request_sample_approval(driver, function)["taskToken"]
    stepfunctions = boto3.client("stepfunctions")

    stepfunctions.send_task_success(taskToken=token, output=a_decision())

    assert refusal(lambda: stepfunctions.send_task_success(taskToken=token, output=a_decision())) == (
        "TaskTimedOut"
    )
    assert refusal(lambda: stepfunctions.send_task_failure(taskToken=token, error="X")) == "TaskTimedOut"
    assert refusal(lambda: stepfunctions.send_task_heartbeat(taskToken=token)) == "TaskTimedOut"
    [execution] = approval_executions(driver.stack)
    assert wait_for_execution_end(execution["executionArn"])["status"] == "SUCCEEDED"


def test_a_spent_token_stays_refused_after_its_execution_ended(driver, function):
    token = request_sample_approval(driver, function)["taskToken"]
    stepfunctions = boto3.client("stepfunctions")
    stepfunctions.send_task_failure(taskToken=token, error="Unexpected")
    [execution] = approval_executions(driver.stack)
    wait_for_execution_end(execution["executionArn"])

    assert refusal(lambda: stepfunctions.send_task_success(taskToken=token, output="{}")) == "TaskTimedOut"


def test_a_token_nobody_issued_is_invalid(stack):
    stepfunctions = boto3.client("stepfunctions")

    assert refusal(lambda: stepfunctions.send_task_success(taskToken="not-issued", output="{}")) == (
        "InvalidToken"
    )


def test_the_cause_of_a_task_failure_reaches_the_workflow(driver, function):
    token = request_sample_approval(driver, function)["taskToken"]
    cause = json.dumps({"why": "the cause travels"})

    boto3.client("stepfunctions").send_task_failure(taskToken=token, error="Unexpected", cause=cause)

    [execution] = approval_executions(driver.stack)
    wait_for_execution_end(execution["executionArn"])
    (failed,) = [event for event in history_of(driver.stack) if event["type"] == "TaskFailed"][:1]
    assert failed["taskFailedEventDetails"] == {
        "resourceType": "sqs",
        "resource": "sendMessage.waitForTaskToken",
        "error": "Unexpected",
        "cause": cause,
    }


class TestAfterTheWaitTimedOut:
    @pytest.fixture
    def stack_parameters(self) -> dict[str, str]:
        return dict(SHORT_WAITS)

    def test_the_token_of_a_wait_that_timed_out_is_refused_while_the_next_wait_runs(self, driver, function):
        first = request_sample_approval(driver, function)["taskToken"]
        deliver_token(driver)  # the escalated wait has begun
        [execution] = approval_executions(driver.stack)
        assert boto3.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])[
            "status"
        ] == ("RUNNING")

        stepfunctions = boto3.client("stepfunctions")
        assert (
            refusal(lambda: stepfunctions.send_task_success(taskToken=first, output="{}")) == "TaskTimedOut"
        )


# ----- DynamoDB requests are atomic ------------------------------------------------------------------
@pytest.fixture
def table():
    """A table on moto, nothing else."""
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName="fidelity",
            AttributeDefinitions=[{"AttributeName": "encounterId", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "encounterId", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield "fidelity"


@pytest.fixture(autouse=True)
def threads_switch_often():
    """Threads switch every microsecond instead of every 5 ms, so that a request that is not atomic is
    interleaved with others, as on a busy server."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(interval)


def test_of_concurrent_conditional_puts_on_one_key_exactly_one_succeeds(table):
    dynamodb = boto3.client("dynamodb")
    start = threading.Barrier(8, timeout=30)

    def put(key: str, writer: int) -> str:
        start.wait()
        try:
            dynamodb.put_item(
                TableName=table,
                Item={"encounterId": {"S": key}, "writer": {"N": str(writer)}},
                ConditionExpression="attribute_not_exists(encounterId)",
            )
        except ClientError as error:
            return error.response["Error"]["Code"]
        return "stored"

    rounds = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        for round_ in range(10):
            rounds.append(sorted(pool.map(put, [f"one-key-{round_}"] * 8, range(8))))

    assert rounds == [["ConditionalCheckFailedException"] * 7 + ["stored"]] * 10


def test_a_cancelled_transaction_never_undoes_what_other_requests_wrote_meanwhile(table):
    dynamodb = boto3.client("dynamodb")
    dynamodb.put_item(TableName=table, Item={"encounterId": {"S": "taken"}})
    keys = [str(uuid.uuid4()) for _ in range(100)]
    done = threading.Event()
    outcomes: list[str] = []
    # Many writes, the last of which fails its condition: the whole transaction is cancelled.
    cancelled = [
        *({"Put": {"TableName": table, "Item": {"encounterId": {"S": f"cancelled-{i}"}}}} for i in range(24)),
        {
            "Put": {
                "TableName": table,
                "Item": {"encounterId": {"S": "taken"}},
                "ConditionExpression": "attribute_not_exists(encounterId)",
            }
        },
    ]

    def cancel_transactions() -> None:
        while not done.is_set():
            try:
                dynamodb.transact_write_items(TransactItems=cancelled)
            except ClientError as error:
                outcomes.append(error.response["Error"]["Code"])
            else:
                outcomes.append("committed")

    canceller = threading.Thread(target=cancel_transactions)
    canceller.start()
    try:
        for key in keys:
            dynamodb.put_item(TableName=table, Item={"encounterId": {"S": key}})
    finally:
        done.set()
        canceller.join()

    stored = {item["encounterId"]["S"] for item in dynamodb.scan(TableName=table)["Items"]}
    assert set(keys) - stored == set()
    assert not stored & {f"cancelled-{i}" for i in range(24)}
    assert outcomes
    assert set(outcomes) == {"TransactionCanceledException"}


# ----- EventBridge -----------------------------------------------------------------------------------
def test_every_rule_that_matches_an_event_sees_the_same_event_time(monkeypatch):
    ticks = iter(range(1_800_000_000, 1_800_001_000, 7))
    # moto stamps each matching rule's copy with a fresh clock reading; a clock that moves on every read
    # makes that visible without waiting for a second to turn.
    monkeypatch.setattr("moto.events.models.unix_time", lambda: float(next(ticks)))
    with mock_aws():
        sqs, events = boto3.client("sqs"), boto3.client("events")
        queues = [sqs.create_queue(QueueName=f"rule-{number}")["QueueUrl"] for number in range(2)]
        for number, url in enumerate(queues):
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            events.put_rule(Name=f"rule-{number}", EventPattern=json.dumps({"source": ["carebus.test"]}))
            events.put_targets(Rule=f"rule-{number}", Targets=[{"Id": "queue", "Arn": arn}])

        events.put_events(Entries=[{"Source": "carebus.test", "DetailType": "Tested", "Detail": "{}"}])

        times = [
            json.loads(sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"])["time"] for url in queues
        ]
    assert times[0] == times[1]


def test_a_replay_sends_only_the_archived_events_of_its_window():
    with mock_aws():
        sqs, events = boto3.client("sqs"), boto3.client("events")
        url = sqs.create_queue(QueueName="replayed")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        bus = events.describe_event_bus()["Arn"]
        archive = events.create_archive(ArchiveName="all", EventSourceArn=bus)["ArchiveArn"]
        events.put_events(Entries=[{"Source": "carebus.test", "DetailType": "early", "Detail": "{}"}])
        time.sleep(0.01)
        window_start = datetime.now(UTC)
        events.put_events(Entries=[{"Source": "carebus.test", "DetailType": "late", "Detail": "{}"}])
        events.put_rule(Name="replays", EventPattern=json.dumps({"source": ["carebus.test"]}))
        events.put_targets(Rule="replays", Targets=[{"Id": "queue", "Arn": arn}])

        events.start_replay(
            ReplayName="late-only",
            EventSourceArn=archive,
            EventStartTime=window_start,
            EventEndTime=window_start + timedelta(minutes=1),
            Destination={"Arn": bus},
        )

        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(message["Body"])["detail-type"] for message in received] == ["late"]
