"""A stack's dead-letter queues: what is on them, and moving their messages back (redrive)."""

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from carebus_client.errors import (
    CarebusError,
    UsageError,
)
from carebus_client.queues import Queue, queue_url_of, queues_of_outputs, squashed
from carebus_client.stacks import Stack, aws_errors

DEAD_LETTER_OUTPUT_SUFFIX = "DeadLetterQueueUrl"

_RECEIVE_LIMIT = 10  # SQS hands out at most ten messages per ReceiveMessage


# A dead-letter queue among the stack's outputs, named after its output key (billing, event-delivery).
DeadLetterQueue = Queue


@dataclass(frozen=True)
class QueueDepth:
    visible: int
    in_flight: int


@dataclass(frozen=True)
class DeadLetter:
    """A message kept in a dead-letter queue; carebus bodies carry ids only, so they are safe to show."""

    message_id: str
    body: str
    sent_at: datetime | None
    receive_count: int


@dataclass(frozen=True)
class Redrive:
    moved: int
    destination: str


def dead_letter_queues(stack: Stack) -> list[DeadLetterQueue]:
    return queues_of_outputs(stack, DEAD_LETTER_OUTPUT_SUFFIX)


def find_dead_letter_queue(stack: Stack, name: str) -> DeadLetterQueue:
    """A DLQ by logical name (billing, event-delivery; case and dashes do not matter) or output key."""
    wanted = squashed(name.removesuffix(DEAD_LETTER_OUTPUT_SUFFIX))
    queues = dead_letter_queues(stack)
    for queue in queues:
        if wanted in (
            squashed(queue.name),
            squashed(queue.output_key.removesuffix(DEAD_LETTER_OUTPUT_SUFFIX)),
        ):
            return queue
    known = ", ".join(queue.name for queue in queues)
    raise UsageError(f"stack {stack.name} has no dead-letter queue {name!r} (it has {known})")


def queue_depth(stack: Stack, queue: DeadLetterQueue) -> QueueDepth:
    with aws_errors(stack.target):
        attributes = stack.client("sqs").get_queue_attributes(
            QueueUrl=queue.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
    return QueueDepth(
        int(attributes.get("ApproximateNumberOfMessages", 0)),
        int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
    )


def peek(stack: Stack, queue: DeadLetterQueue, limit: int = 10) -> list[DeadLetter]:
    """Up to limit messages, left in place: received with a visibility timeout of zero."""
    sqs = stack.client("sqs")
    seen: dict[str, DeadLetter] = {}
    with aws_errors(stack.target):
        while len(seen) < limit:
            messages = sqs.receive_message(
                QueueUrl=queue.url,
                MaxNumberOfMessages=min(_RECEIVE_LIMIT, limit - len(seen)),
                VisibilityTimeout=0,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
            ).get("Messages", [])
            fresh = [message for message in messages if message["MessageId"] not in seen]
            if not fresh:
                break
            for message in fresh:
                attributes = message.get("Attributes", {})
                sent = attributes.get("SentTimestamp")
                seen[message["MessageId"]] = DeadLetter(
                    message["MessageId"],
                    message["Body"],
                    datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None,
                    int(attributes.get("ApproximateReceiveCount", 0)),
                )
    return list(seen.values())


def redrive(stack: Stack, queue: DeadLetterQueue, timeout_seconds: float = 60) -> Redrive:
    """Move the queue's messages back to their source queue.

    On AWS that is SQS's own message move task. An emulator behind --endpoint-url (moto has no move task)
    gets the equivalent: receive, send to the source queue, delete, for the messages there now.
    """
    with aws_errors(stack.target):
        if stack.target.endpoint_url:
            return _move_messages_by_hand(stack, queue)
        return _move_messages_by_task(stack, queue, timeout_seconds)


def _move_messages_by_task(stack: Stack, queue: DeadLetterQueue, timeout_seconds: float) -> Redrive:
    sqs = stack.client("sqs")
    arn = _queue_arn(sqs, queue.url)
    sqs.start_message_move_task(SourceArn=arn)
    deadline = time.monotonic() + timeout_seconds
    while True:
        [task] = sqs.list_message_move_tasks(SourceArn=arn, MaxResults=1)["Results"]
        moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
        if task["Status"] == "COMPLETED":
            return Redrive(moved, "their source queues")
        if task["Status"] in ("FAILED", "CANCELLED"):
            raise CarebusError(
                f"the move task of {queue.name} ended {task['Status']} after {moved} messages: "
                f"{task.get('FailureReason', 'no reason given')}"
            )
        if time.monotonic() > deadline:
            raise CarebusError(
                f"the move task of {queue.name} is still running ({moved} messages moved so far)"
            )
        time.sleep(1)


def _move_messages_by_hand(stack: Stack, queue: DeadLetterQueue) -> Redrive:
    sqs = stack.client("sqs")
    source_url = _source_queue_url(sqs, queue)
    # Only what is there now: a message that fails again must not be moved round in circles.
    remaining = queue_depth(stack, queue).visible
    moved = 0
    while remaining > 0:
        messages = sqs.receive_message(
            QueueUrl=queue.url,
            MaxNumberOfMessages=min(_RECEIVE_LIMIT, remaining),
            VisibilityTimeout=30,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            sqs.send_message(
                QueueUrl=source_url,
                MessageBody=message["Body"],
                MessageAttributes=_sendable_attributes(message.get("MessageAttributes", {})),
            )
            sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
        remaining -= len(messages)
    return Redrive(moved, source_url)


def _source_queue_url(sqs: Any, queue: DeadLetterQueue) -> str:
    """The queue whose dead letters these are: the RedriveAllowPolicy's source, else the queue whose
    RedrivePolicy targets this one."""
    # "All" rather than the name: moto refuses RedriveAllowPolicy as an attribute name (and drops it).
    attributes = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"]).get("Attributes", {})
    allowed = json.loads(attributes.get("RedriveAllowPolicy") or "{}").get("sourceQueueArns", [])
    if len(allowed) == 1:
        return queue_url_of(sqs, allowed[0])
    sources = sqs.list_dead_letter_source_queues(QueueUrl=queue.url).get("queueUrls", [])
    if len(sources) == 1:
        return sources[0]
    if not sources:
        raise CarebusError(
            f"{queue.name} has no source queue to redrive to: its messages come from a subscription "
            "or a rule target, not from a queue"
        )
    raise CarebusError(f"{queue.name} is the dead-letter queue of {len(sources)} queues: redrive it on AWS")


def _sendable_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Received message attributes as SendMessage takes them (without the empty list members)."""
    return {
        name: {
            key: value
            for key, value in attribute.items()
            if key in ("DataType", "StringValue", "BinaryValue")
        }
        for name, attribute in attributes.items()
    }


def _queue_arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
