"""A stack's queues, as its outputs name them: how many messages each holds, and putting one in."""

import json
import re
from dataclasses import dataclass
from typing import Any

from carebus_client.errors import UsageError
from carebus_client.stacks import Stack, aws_errors

QUEUE_OUTPUT_SUFFIX = "QueueUrl"


@dataclass(frozen=True)
class Queue:
    """A queue among the stack's outputs, named after its output key (BillingQueueUrl: billing,
    BillingDeadLetterQueueUrl: billing-dead-letter)."""

    name: str
    output_key: str
    url: str

    @property
    def queue_name(self) -> str:
        """The queue's own name, the last part of its URL."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class QueueCounts:
    """SQS's approximate counts of one queue, and the dead-letter queue its failures go to, if any."""

    queue: Queue
    arn: str
    visible: int
    in_flight: int
    delayed: int
    dead_letter_arn: str | None


def queue_url_of(sqs: Any, queue_arn: str) -> str:
    """The URL of the queue an ARN names (in the ARN's account)."""
    _, _, _, _, account, name = queue_arn.split(":", 5)
    return sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]


def queues_of_outputs(stack: Stack, suffix: str = QUEUE_OUTPUT_SUFFIX) -> list[Queue]:
    """The queues whose output keys end with suffix, each named after its key without it."""
    return [
        Queue(kebab(key.removesuffix(suffix)), key, url)
        for key, url in sorted(stack.outputs.items())
        if key.endswith(suffix)
    ]


def stack_queues(stack: Stack) -> list[Queue]:
    return queues_of_outputs(stack)


def find_queue(stack: Stack, name: str) -> Queue:
    """A queue by the name its output key gives it (billing; case and dashes do not matter), its output
    key (BillingQueueUrl) or its own name (carebus-local-billing)."""
    wanted = squashed(name.removesuffix(QUEUE_OUTPUT_SUFFIX))
    queues = stack_queues(stack)
    for queue in queues:
        if wanted in (squashed(queue.name), squashed(queue.queue_name)):
            return queue
    known = ", ".join(sorted(queue.name for queue in queues))
    raise UsageError(f"stack {stack.name} has no queue {name!r} (it has {known})")


def queue_counts(stack: Stack) -> list[QueueCounts]:
    """Every queue of the outputs: each work queue followed by its dead-letter queue, then the dead-letter
    queues of what is not a queue (a subscription, a rule target), by name."""
    counted = [_counts(stack, queue) for queue in stack_queues(stack)]
    by_arn = {counts.arn: counts for counts in counted}
    ordered: list[QueueCounts] = []
    for counts in counted:
        if counts.dead_letter_arn is None or counts in ordered:
            continue
        ordered.append(counts)
        dead_letters = by_arn.get(counts.dead_letter_arn)
        if dead_letters is not None and dead_letters not in ordered:
            ordered.append(dead_letters)
    return ordered + [counts for counts in counted if counts not in ordered]


def send_message(stack: Stack, queue: Queue, body: str) -> str:
    """SendMessage of body as it is (no attributes): the id SQS gave the message."""
    with aws_errors(stack.target):
        return str(stack.client("sqs").send_message(QueueUrl=queue.url, MessageBody=body)["MessageId"])


def _counts(stack: Stack, queue: Queue) -> QueueCounts:
    with aws_errors(stack.target):
        # "All" rather than the names: one call for the counts, the ARN and the redrive policy.
        attributes = stack.client("sqs").get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"])[
            "Attributes"
        ]
    redrive = json.loads(attributes.get("RedrivePolicy") or "{}")
    return QueueCounts(
        queue,
        attributes.get("QueueArn", ""),
        int(attributes.get("ApproximateNumberOfMessages", 0)),
        int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
        redrive.get("deadLetterTargetArn"),
    )


def kebab(name: str) -> str:
    """An output key's name in lower case with dashes: BillingDeadLetter is billing-dead-letter."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def squashed(name: str) -> str:
    """A name as a user may type it, compared without case, dashes, underscores or spaces."""
    return re.sub(r"[-_\s]", "", name).lower()
