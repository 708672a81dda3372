"""The DynamoDB and EventBridge adapters the consumers share, on moto (a table of their own, not the stack):
batch reads that finish what DynamoDB left unprocessed, transactions that write only what is new, and
PutEvents failures traced back to the records whose events they were."""

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from carebus.adapters import dynamo
from carebus.adapters.dynamo import BatchReadIncompleteError, Table
from carebus.adapters.eventbus import put_entries


@pytest.fixture
def table() -> Iterator[Table]:
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName="records",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield Table(client, "records")


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dynamo.time, "sleep", lambda _: None)


def _calls(monkeypatch: pytest.MonkeyPatch, table: Table, operation: str) -> list[dict[str, Any]]:
    requests: list[dict[str, Any]] = []
    real = getattr(table.client, operation)

    def recording(**request: Any) -> Any:
        requests.append(request)
        return real(**request)

    monkeypatch.setattr(table.client, operation, recording)
    return requests


def test_a_batch_read_returns_the_stored_records_consistently_and_leaves_out_missing_keys(table, monkeypatch):
    for number in range(3):
        table.put_new({"id": f"r{number}", "value": number}, "id")
    requests = _calls(monkeypatch, table, "batch_get_item")

    records = table.get_many([{"id": "r0"}, {"id": "missing"}, {"id": "r2"}])

    assert sorted(records, key=lambda record: record["id"]) == [
        {"id": "r0", "value": 0},
        {"id": "r2", "value": 2},
    ]
    [request] = requests
    assert request["RequestItems"]["records"]["ConsistentRead"] is True


def test_a_batch_read_of_more_than_a_hundred_keys_takes_one_request_per_hundred(table, monkeypatch):
    keys = [{"id": f"r{number}"} for number in range(150)]
    for key in keys[:120]:
        table.put_new(key, "id")
    requests = _calls(monkeypatch, table, "batch_get_item")

    records = table.get_many(keys)

    assert len(records) == 120
    assert [len(request["RequestItems"]["records"]["Keys"]) for request in requests] == [100, 50]


def test_keys_left_unprocessed_are_asked_for_again_until_read(table, monkeypatch):
    for number in range(4):
        table.put_new({"id": f"r{number}"}, "id")
    real = table.client.batch_get_item
    asked: list[int] = []

    def throttled_once(**request: Any) -> dict[str, Any]:
        keys = request["RequestItems"]["records"]["Keys"]
        asked.append(len(keys))
        if len(asked) > 1:
            return real(**request)
        answer = real(RequestItems={"records": {**request["RequestItems"]["records"], "Keys": keys[:1]}})
        return {**answer, "UnprocessedKeys": {"records": {"Keys": keys[1:], "ConsistentRead": True}}}

    monkeypatch.setattr(table.client, "batch_get_item", throttled_once)

    records = table.get_many([{"id": f"r{number}"} for number in range(4)])

    assert sorted(record["id"] for record in records) == ["r0", "r1", "r2", "r3"]
    assert asked == [4, 3]


def test_a_batch_read_that_stays_unprocessed_fails_instead_of_answering_short(table, monkeypatch):
    table.put_new({"id": "r0"}, "id")

    def always_throttled(**request: Any) -> dict[str, Any]:
        return {"Responses": {}, "UnprocessedKeys": request["RequestItems"]}

    monkeypatch.setattr(table.client, "batch_get_item", always_throttled)

    with pytest.raises(BatchReadIncompleteError):
        table.get_many([{"id": "r0"}])


def test_a_transaction_of_new_records_writes_only_those_not_stored_yet(table, monkeypatch):
    table.put_new({"id": "kept", "status": "DECIDED"}, "id")
    requests = _calls(monkeypatch, table, "transact_write_items")

    stored = table.put_all_new(
        [{"id": "new-1", "status": "NEW"}, {"id": "kept", "status": "NEW"}, {"id": "new-2", "status": "NEW"}],
        "id",
    )

    assert stored == [True, False, True]
    assert table.get({"id": "kept"}) == {"id": "kept", "status": "DECIDED"}
    assert table.get({"id": "new-2"}) == {"id": "new-2", "status": "NEW"}
    # The first transaction was cancelled whole (nothing written); the second held only the new ones.
    assert [len(request["TransactItems"]) for request in requests] == [3, 2]


def test_a_transaction_of_records_all_stored_already_writes_nothing(table):
    table.put_new({"id": "a"}, "id")

    assert table.put_all_new([{"id": "a", "status": "NEW"}], "id") == [False]
    assert table.get({"id": "a"}) == {"id": "a"}


def test_a_transaction_cancelled_for_another_reason_is_an_error_to_retry(table, monkeypatch):
    def conflicting(**request: Any) -> dict[str, Any]:
        raise ClientError(
            {
                "Error": {"Code": "TransactionCanceledException", "Message": "injected"},
                "CancellationReasons": [{"Code": "TransactionConflict"}],
            },
            "TransactWriteItems",
        )

    monkeypatch.setattr(table.client, "transact_write_items", conflicting)

    with pytest.raises(ClientError):
        table.put_all_new([{"id": "a"}], "id")


class _Bus:
    """A PutEvents client that refuses the entries (by DetailType) or the requests (by number) it is told."""

    def __init__(
        self, refused_types: frozenset[str] = frozenset(), failing_requests: frozenset[int] = frozenset()
    ):
        self.refused_types = refused_types
        self.failing_requests = failing_requests
        self.requests: list[list[dict[str, str]]] = []

    def put_events(self, Entries: list[dict[str, str]]) -> dict[str, Any]:
        self.requests.append(Entries)
        if len(self.requests) in self.failing_requests:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "injected"}}, "PutEvents")
        results = [
            {"ErrorCode": "InternalFailure"}
            if entry["DetailType"] in self.refused_types
            else {"EventId": "e"}
            for entry in Entries
        ]
        return {"FailedEntryCount": sum("ErrorCode" in result for result in results), "Entries": results}


def _entries(detail_type: str, count: int) -> list[dict[str, str]]:
    return [{"DetailType": detail_type, "Source": "test", "Detail": "{}", "EventBusName": "bus"}] * count


def test_the_entries_of_every_record_go_ten_to_a_request():
    bus = _Bus()

    failed = put_entries(bus, {"m1": _entries("A", 8), "m2": _entries("B", 8), "m3": _entries("C", 7)})

    assert failed == {}
    assert [len(request) for request in bus.requests] == [10, 10, 3]


def test_a_refused_entry_fails_the_record_it_came_from_and_no_other():
    bus = _Bus(refused_types=frozenset({"B"}))

    failed = put_entries(
        bus, {"m1": _entries("A", 2), "m2": _entries("A", 1) + _entries("B", 1), "m3": _entries("C", 1)}
    )

    assert failed == {"m2": "InternalFailure"}


def test_a_request_the_bus_refuses_whole_fails_the_records_of_that_request_only():
    bus = _Bus(failing_requests=frozenset({2}))

    failed = put_entries(bus, {"m1": _entries("A", 10), "m2": _entries("B", 5), "m3": _entries("C", 5)})

    assert failed == {"m2": "ThrottlingException", "m3": "ThrottlingException"}
    assert len(bus.requests) == 2


def test_a_record_logs_only_its_own_keys_never_those_the_record_before_it_set(capsys):
    import io
    import json as json_module

    from aws_lambda_powertools import Logger

    from carebus.adapters.consumer import consume_messages
    from carebus.errors import MalformedMessageError

    stream = io.StringIO()
    logger = Logger(service="keys-test", stream=stream)

    def parse(body: str) -> dict[str, str]:
        if body == "not a message":
            raise MalformedMessageError("not a message")
        return json_module.loads(body)

    def process(message: dict[str, str]) -> None:
        logger.info("processed")

    event = {
        "Records": [
            {"messageId": "m1", "body": json_module.dumps({"approvalId": "apr-1"}), "messageAttributes": {}},
            {"messageId": "m2", "body": "not a message", "messageAttributes": {}},
        ]
    }
    answer = consume_messages(
        event,
        None,  # type: ignore[arg-type] - no Lambda context is needed here
        parse=parse,
        process=process,
        log_keys=lambda message: {"approval_id": message["approvalId"]},
        logger=logger,
    )

    lines = [json_module.loads(line) for line in stream.getvalue().splitlines()]
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    processed, failed = lines
    assert (processed["message_id"], processed["approval_id"]) == ("m1", "apr-1")
    assert failed["message_id"] == "m2"
    assert "approval_id" not in failed
    assert "message_id" not in logger.get_current_keys()
