"""EventBridge targets moto cannot deliver (state machines, functions, API destinations), delivered after
moto matched.

Each such target has a shadow rule with its rule's pattern that copies matching events to a queue; here
they are read, shaped as the target asks (Input, InputPath or InputTransformer) and delivered. An API
destination's failed request is retried as EventBridge retries it (carebus_local.api_destinations decides
when and how often) without holding the target's other events: the event goes back on its shadow queue
with DelaySeconds (lab time), its retry count and first-seen time in message attributes. When the retries
end, the original event goes to the target's dead-letter queue with EventBridge's attributes, or, without
one, is dropped as EventBridge drops it.
"""

import json
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any, Final

from botocore.exceptions import ClientError

from carebus_client.queues import queue_url_of
from carebus_local.api_destinations import (
    API_DESTINATION_ARN_PART,
    API_DESTINATION_TIMEOUT_SECONDS,
    ApiDestinations,
    DeadLetter,
    Invocation,
    Retry,
    RetryPolicy,
    dead_letter_attributes,
    next_step,
    not_callable,
)
from carebus_local.stack import RuleTargetSpec

log = logging.getLogger("carebus.local")

_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.-]+)>")
# Message attributes on a retried event in its shadow queue.
_RETRIES: Final = "carebus.retryAttempts"
_FIRST_SEEN_MS: Final = "carebus.firstSeenMs"
_LAST_ERROR_CODE: Final = "carebus.lastErrorCode"
_LAST_ERROR_MESSAGE: Final = "carebus.lastErrorMessage"
_BATCH: Final = 10
# A batch's calls at one a second (the lowest rate limit), each up to its timeout, and a margin.
_API_DESTINATION_BATCH_SECONDS: Final = int(_BATCH * (API_DESTINATION_TIMEOUT_SECONDS + 1) + 30)


def _at_path(document: Any, path: str) -> Any:
    """A simple JSONPath ($, $.a.b) as EventBridge's InputPath and InputPathsMap use it."""
    if path == "$":
        return document
    if not path.startswith("$."):
        raise ValueError(f"unsupported JSONPath {path!r}")
    value = document
    for part in path[2:].split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def target_input(event: dict[str, Any], target: dict[str, Any]) -> str:
    """What EventBridge hands the target for this event, as text."""
    if "Input" in target:
        return target["Input"]
    if "InputPath" in target:
        return json.dumps(_at_path(event, target["InputPath"]))
    if "InputTransformer" in target:
        transformer = target["InputTransformer"]
        values = {name: _at_path(event, path) for name, path in transformer.get("InputPathsMap", {}).items()}

        def fill(match: re.Match[str]) -> str:
            value = values.get(match.group(1))
            # Inside quotes a string goes in as is; anywhere else a value goes in as JSON.
            return value if isinstance(value, str) else json.dumps(value)

        return _PLACEHOLDER.sub(fill, transformer["InputTemplate"])
    return json.dumps(event)


def _attribute(message: dict[str, Any], name: str) -> str | None:
    value = message.get("MessageAttributes", {}).get(name)
    return None if value is None else value["StringValue"]


class RuleTargetDelivery:
    """Delivers what the shadow rules caught: state machines start, functions are invoked, API destinations
    are called (with EventBridge's retries and dead-letter queue)."""

    def __init__(
        self,
        specs: list[RuleTargetSpec],
        sqs: Any,
        stepfunctions: Any,
        invoke_function: Callable[[str, dict[str, Any]], Any] | None = None,
        api_destinations: ApiDestinations | None = None,
    ) -> None:
        self.specs = specs
        self.sqs = sqs
        self.stepfunctions = stepfunctions
        self.invoke_function = invoke_function
        self.api_destinations = api_destinations

    def deliver(self, spec: RuleTargetSpec, event: dict[str, Any]) -> None:
        arn = spec.target["Arn"]
        payload = target_input(event, spec.target)
        if ":states:" in arn:
            # EventBridge names each execution itself; moto would otherwise name every one "None".
            self.stepfunctions.start_execution(stateMachineArn=arn, name=str(uuid.uuid4()), input=payload)
        elif ":lambda:" in arn and self.invoke_function is not None:
            self.invoke_function(arn, json.loads(payload))
        else:
            raise ValueError(f"the offline runtime cannot deliver to {arn}")

    def deliver_waiting(self, spec: RuleTargetSpec, wait_seconds: int) -> int:
        """Deliver what one target's shadow queue holds, long-polling up to wait_seconds for the first of
        it (as an EventBridge target gets an event as soon as it matches, not on the next tick); how many
        were handled (delivered, or for an API destination also retried later or dead-lettered)."""
        calls = API_DESTINATION_ARN_PART in spec.target["Arn"]
        messages = self.sqs.receive_message(
            QueueUrl=spec.shadow_queue_url,
            MaxNumberOfMessages=_BATCH,
            WaitTimeSeconds=wait_seconds,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["SentTimestamp"],
            # Calls take up to their timeout and their rate limit's slot each: the batch stays hidden
            # until all of it is handled, so that no event of it is handed out twice.
            **({"VisibilityTimeout": _API_DESTINATION_BATCH_SECONDS} if calls else {}),
        ).get("Messages", [])
        for message in messages:
            if calls:
                self._call_api_destination(spec, message)
            else:
                self.deliver(spec, json.loads(message["Body"]))
            self.sqs.delete_message(QueueUrl=spec.shadow_queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def deliver_pending(self) -> int:
        """Deliver every caught event once; how many were delivered."""
        delivered = 0
        for spec in self.specs:
            while delivered_now := self.deliver_waiting(spec, wait_seconds=0):
                delivered += delivered_now
        return delivered

    # ----- API destinations ------------------------------------------------------------------------
    def _call_api_destination(self, spec: RuleTargetSpec, message: dict[str, Any]) -> None:
        """One request for a caught event, then what EventBridge does next: nothing, a retry later (back on
        the shadow queue, delayed) or the dead-letter queue."""
        api = self.api_destinations
        if api is None:
            raise ValueError(f"the offline runtime was given no way to call {spec.target['Arn']}")
        policy = RetryPolicy.of(spec.target)
        retries_done = int(_attribute(message, _RETRIES) or 0)
        first_seen_ms = int(_attribute(message, _FIRST_SEEN_MS) or message["Attributes"]["SentTimestamp"])
        step: Retry | DeadLetter | None
        if api.clock() - first_seen_ms / 1000 > policy.maximum_event_age_seconds:
            # Held back (rate limit, backlog) for longer than the policy lets an event live: never sent.
            invocation = Invocation(
                None,
                _attribute(message, _LAST_ERROR_CODE) or "UNKNOWN",
                _attribute(message, _LAST_ERROR_MESSAGE)
                or "The event is older than MaximumEventAgeInSeconds.",
            )
            step = DeadLetter("MaximumEventAgeInSeconds")
        else:
            try:
                invocation = api.invoke(spec.target, target_input(json.loads(message["Body"]), spec.target))
            except Exception as error:  # noqa: BLE001 - any failure to make the request dead-letters the event
                log.warning("%s cannot be called: %s", spec.target["Arn"], error)
                invocation = not_callable(error)
            age = api.clock() - first_seen_ms / 1000
            step = next_step(invocation, retries_done, age, policy, api.backoff)
        if isinstance(step, Retry):
            log.warning(
                "%s answered %s: retry %d in %d s",
                spec.target["Arn"],
                invocation.status or invocation.error_code,
                retries_done + 1,
                step.delay_seconds,
            )
            self.sqs.send_message(
                QueueUrl=spec.shadow_queue_url,
                MessageBody=message["Body"],
                DelaySeconds=step.delay_seconds,
                MessageAttributes={
                    _RETRIES: {"DataType": "Number", "StringValue": str(retries_done + 1)},
                    _FIRST_SEEN_MS: {"DataType": "Number", "StringValue": str(first_seen_ms)},
                    _LAST_ERROR_CODE: {"DataType": "String", "StringValue": invocation.error_code},
                    _LAST_ERROR_MESSAGE: {"DataType": "String", "StringValue": invocation.error_message},
                },
            )
        elif isinstance(step, DeadLetter):
            self._dead_letter(spec, message["Body"], invocation, retries_done, step)

    def _dead_letter(
        self, spec: RuleTargetSpec, event: str, invocation: Invocation, retries_done: int, step: DeadLetter
    ) -> None:
        assert self.api_destinations is not None
        queue_arn = spec.target.get("DeadLetterConfig", {}).get("Arn")
        if not queue_arn:
            log.error(
                "%s: event dropped (%s), no dead-letter queue", spec.target["Arn"], invocation.error_message
            )
            return
        attributes = dead_letter_attributes(
            self.api_destinations.rule_arn(spec),
            spec.target["Arn"],
            invocation,
            retries_done,
            step.exhausted_retry_condition,
        )
        try:
            self.sqs.send_message(
                QueueUrl=queue_url_of(self.sqs, queue_arn), MessageBody=event, MessageAttributes=attributes
            )
        except ClientError:
            # EventBridge counts InvocationsFailedToBeSentToDLQ and drops the event.
            log.exception(
                "%s: event dropped, the dead-letter queue %s refused it", spec.target["Arn"], queue_arn
            )
            return
        log.warning("%s: event sent to %s (%s)", spec.target["Arn"], queue_arn, invocation.error_message)
