"""What the three queue consumers do with bad messages, how those reach the DLQ, and what they log."""

import json
import uuid
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

import pytest

from carebus_testing import json_logs, load_event, sample_body, set_clock, submit_sample


@dataclass(frozen=True)
class Consumer:
    function: str
    queue: str
    table: str
    reference: str  # its sample reference event, under events/


CONSUMERS = [
    pytest.param(
        Consumer("BillingFunction", "BillingQueue", "ClaimsTable", "billing/encounter_reference.json"),
        id="billing",
    ),
    pytest.param(
        Consumer(
            "SchedulingFunction",
            "SchedulingQueue",
            "AppointmentsTable",
            "scheduling/encounter_reference.json",
        ),
        id="scheduling",
    ),
    pytest.param(
        Consumer(
            "PrescriptionsFunction",
            "PrescriptionsQueue",
            "PrescriptionsTable",
            "prescriptions/encounter_reference.json",
        ),
        id="prescriptions",
    ),
]

MALFORMED_BODIES = [
    "not json at all",
    "",
    "{}",
    '{"encounterId": "5f51a656-9daa-559d-8d95-7aa5a75d9b03"}',
    '{"schemaVersion": 2, "encounterId": "5f51a656-9daa-559d-8d95-7aa5a75d9b03"}',
    '{"schemaVersion": 1, "encounterId": "5F51A656-9DAA-559D-8D95-7AA5A75D9B03"}',
    '{"schemaVersion": 1, "encounterId": "5f51a656-9daa-559d-8d95-7aa5a75d9b03", "patient": {}}',
    '[{"schemaVersion": 1, "encounterId": "5f51a656-9daa-559d-8d95-7aa5a75d9b03"}]',
]


@pytest.fixture
def consumer(request, function, monkeypatch) -> Consumer:
    chosen: Consumer = request.param
    # Scheduling books into the sample's follow-up window only while that window is still ahead.
    if chosen.function == "SchedulingFunction":
        set_clock(function, monkeypatch)
    return chosen


def sample_patient() -> dict[str, Any]:
    return sample_body()["patient"]


def record_with(consumer: Consumer, body: str, encounter_id: str | None = None) -> dict[str, Any]:
    """The consumer's sample record with another body, a message id of its own, and, if given, the
    encounter id as the routing attribute (otherwise none, as from a sender that is not the topic)."""
    record = deepcopy(load_event(consumer.reference)["Records"][0])
    record["messageId"] = str(uuid.uuid4())
    record["receiptHandle"] = f"AQEB{uuid.uuid4().hex}"
    record["body"] = body
    if encounter_id is None:
        record["messageAttributes"] = {}
    else:
        record["messageAttributes"]["encounterId"]["stringValue"] = encounter_id
    return record


def written_for(driver: Any, consumer: Consumer, encounter_id: str) -> list[dict[str, Any]]:
    return [item for item in driver.items(consumer.table) if item.get("encounterId") == encounter_id]


@pytest.mark.parametrize("consumer", CONSUMERS, indirect=True)
def test_only_the_malformed_record_of_a_poison_and_valid_batch_fails(consumer, function, driver):
    encounter_id = submit_sample(function)
    batch = load_event("billing/poison_and_valid_batch.json")
    if consumer.function != "BillingFunction":
        batch["Records"][1] = load_event(consumer.reference)["Records"][0]
    poison, valid = batch["Records"]

    response = function(consumer.function).invoke(batch)

    assert response == {"batchItemFailures": [{"itemIdentifier": poison["messageId"]}]}
    assert json.loads(valid["body"])["encounterId"] == encounter_id
    assert written_for(driver, consumer, encounter_id)


@pytest.mark.parametrize("consumer", CONSUMERS, indirect=True)
def test_a_batch_of_only_malformed_records_reports_every_one_without_failing_the_invocation(
    consumer, function, driver
):
    batch = {"Records": [record_with(consumer, body) for body in MALFORMED_BODIES]}

    response = function(consumer.function).invoke(batch)

    assert response == {
        "batchItemFailures": [{"itemIdentifier": record["messageId"]} for record in batch["Records"]]
    }
    assert driver.items(consumer.table) == []


@pytest.mark.parametrize("consumer", CONSUMERS, indirect=True)
def test_a_reference_to_an_unknown_encounter_is_a_batch_item_failure(consumer, function, driver):
    submit_sample(function)
    unknown = str(uuid.uuid4())
    record = record_with(consumer, json.dumps({"schemaVersion": 1, "encounterId": unknown}), unknown)

    response = function(consumer.function).invoke({"Records": [record]})

    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert driver.items(consumer.table) == []


@pytest.mark.parametrize("consumer", CONSUMERS, indirect=True)
def test_a_poison_message_reaches_the_dead_letter_queue_after_the_maximum_receives(consumer, stack, driver):
    redrive = stack.cfn["Resources"][consumer.queue]["Properties"]["RedrivePolicy"]
    max_receives = int(redrive["maxReceiveCount"])
    dead_letters = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
    poison = '{"encounterId": "not-a-uuid"}'
    message_id = driver.send_raw(consumer.queue, poison)

    for attempt in range(1, max_receives + 1):
        result = driver.deliver(consumer.queue)
        assert result.received == [message_id], f"receive {attempt}"
        assert result.failed == [message_id], f"receive {attempt}"
        assert result.error is None
        assert driver.depth(dead_letters) == 0, f"dead-lettered after only {attempt} receives"

    result = driver.deliver(consumer.queue)

    assert result.received == []
    assert driver.depth(consumer.queue) == 0
    assert [message["Body"] for message in driver.messages(dead_letters)] == [poison]


@pytest.mark.parametrize("consumer", CONSUMERS, indirect=True)
def test_every_log_line_of_the_sample_carries_the_encounter_id_and_no_phi(consumer, function):
    encounter_id = submit_sample(function)
    handler = function(consumer.function)

    with json_logs(handler) as lines:
        response = handler.invoke(load_event(consumer.reference))

    assert response == {"batchItemFailures": []}
    log_lines = [line for line in lines if "level" in line]  # the rest are EMF metric records
    assert log_lines, "the consumer logged nothing"
    assert [line.get("encounter_id") for line in log_lines] == [encounter_id] * len(log_lines)
    everything = json.dumps(lines)
    for field, value in sample_patient().items():
        if field != "id":
            assert value not in everything, field


@pytest.mark.parametrize("consumer", CONSUMERS, indirect=True)
def test_the_warning_for_a_failed_reference_carries_the_encounter_id(consumer, function):
    unknown = str(uuid.uuid4())
    record = record_with(consumer, json.dumps({"schemaVersion": 1, "encounterId": unknown}), unknown)
    handler = function(consumer.function)

    with json_logs(handler) as lines:
        response = handler.invoke({"Records": [record]})

    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    warnings = [line for line in lines if line.get("level") == "WARNING"]
    assert warnings, "the failure was not logged"
    assert [line.get("encounter_id") for line in warnings] == [unknown] * len(warnings)
