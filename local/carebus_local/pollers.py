"""SQS event source mappings, emulated: receive a batch, invoke the function, keep only what failed."""

import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from carebus_local.stack import EventSourceMappingSpec

_RECEIVE_LIMIT = 10  # SQS hands out at most ten messages per ReceiveMessage
_LONGEST_POLL_SECONDS = 20  # and long-polls at most 20 seconds


class Invocable(Protocol):
    """A function as a poller sees it (an InProcessFunction, or the runtime's serialized invoker)."""

    def invoke(self, event: dict[str, Any]) -> Any: ...


def _lambda_message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """SQS API message attributes in the shape Lambda's SQS event uses (camelCase, empty lists)."""
    converted = {}
    for name, attribute in attributes.items():
        value: dict[str, Any] = {
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": attribute["DataType"],
        }
        if "StringValue" in attribute:
            value["stringValue"] = attribute["StringValue"]
        if "BinaryValue" in attribute:
            value["binaryValue"] = attribute["BinaryValue"]
        converted[name] = value
    return converted


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's SQS poller hands a function for these received messages."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": _lambda_message_attributes(message.get("MessageAttributes", {})),
                "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


@dataclass
class PollResult:
    """One invocation's outcome: which messages it got and which it reported as failed."""

    received: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    error: str | None = None


class QueuePoller:
    """One event source mapping: a queue, its function, batch size, batching window and failure mode."""

    def __init__(
        self,
        sqs: Any,
        mapping: EventSourceMappingSpec,
        function: Invocable,
        region: str,
        batching_window_seconds: float | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        self.sqs = sqs
        self.mapping = mapping
        self.function = function
        self.region = region
        # The mapping's MaximumBatchingWindowInSeconds, unless lab time shortens it.
        self.batching_window_seconds = (
            mapping.batching_window_seconds if batching_window_seconds is None else batching_window_seconds
        )
        # What a pause waits on: whoever runs the poller ends it early by setting it (a fresh event, never
        # set, if nobody does). Not time.sleep: a test may patch that for the code it is testing.
        self._stopping = stopping or threading.Event()
        name = mapping.queue_arn.rsplit(":", 1)[1]
        self.queue_url = sqs.get_queue_url(QueueName=name)["QueueUrl"]

    def _ask(self, wait_seconds: int, count: int) -> list[dict[str, Any]]:
        return self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(_RECEIVE_LIMIT, count),
            WaitTimeSeconds=min(_LONGEST_POLL_SECONDS, wait_seconds),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])

    def _receive(self, wait_seconds: int, fill_batch: bool) -> list[dict[str, Any]]:
        """One batch: long-polls wait_seconds for a first message, then (if fill_batch) long-polls the rest
        of the batching window for more, as Lambda's poller does, instead of asking again and again. SQS
        long-polls in whole seconds: a window's last fraction of a second is waited out, then asked once."""
        deadline = time.monotonic() + (self.batching_window_seconds if fill_batch else 0)
        messages = self._ask(wait_seconds, self.mapping.batch_size)
        while messages and len(messages) < self.mapping.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if remaining < 1:
                self._stopping.wait(remaining)
            messages += self._ask(int(remaining), self.mapping.batch_size - len(messages))
            if remaining < 1:
                break
        return messages

    def poll_once(
        self, wait_seconds: int = 0, retry_after_seconds: int | None = None, fill_batch: bool = True
    ) -> PollResult:
        """Deliver one batch, waiting up to the batching window for it to fill (unless fill_batch is
        False). Failed messages stay invisible for the queue's visibility timeout, as on Lambda, unless
        retry_after_seconds shortens it (tests and demos do not wait two minutes)."""
        messages = self._receive(wait_seconds, fill_batch)
        result = PollResult(received=[message["MessageId"] for message in messages])
        if not messages:
            return result
        try:
            answer = self.function.invoke(sqs_event(messages, self.mapping.queue_arn, self.region))
        except Exception as error:  # noqa: BLE001 - a failed invocation fails the whole batch, as on Lambda
            result.error = f"{type(error).__name__}: {error}"
            failed = set(result.received)
        else:
            reported = (
                (answer or {}).get("batchItemFailures", []) if self.mapping.report_batch_item_failures else []
            )
            failed = {item["itemIdentifier"] for item in reported}
        result.failed = [message_id for message_id in result.received if message_id in failed]
        done = [message for message in messages if message["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(done)
                ],
            )
        if retry_after_seconds is not None:
            for message in messages:
                if message["MessageId"] in failed:
                    self.sqs.change_message_visibility(
                        QueueUrl=self.queue_url,
                        ReceiptHandle=message["ReceiptHandle"],
                        VisibilityTimeout=retry_after_seconds,
                    )
        return result
