"""EventBridge targets moto cannot deliver (state machines, functions), delivered after moto matched.

Each such target has a shadow rule with its rule's pattern that copies matching events to a queue; here
they are read, shaped as the target asks (Input, InputPath or InputTransformer) and delivered.
"""

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

from carebus_local.stack import RuleTargetSpec

_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.-]+)>")


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


class RuleTargetDelivery:
    """Delivers what the shadow rules caught: state machines start, functions are invoked."""

    def __init__(
        self,
        specs: list[RuleTargetSpec],
        sqs: Any,
        stepfunctions: Any,
        invoke_function: Callable[[str, dict[str, Any]], Any] | None = None,
    ) -> None:
        self.specs = specs
        self.sqs = sqs
        self.stepfunctions = stepfunctions
        self.invoke_function = invoke_function

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
        were delivered."""
        messages = self.sqs.receive_message(
            QueueUrl=spec.shadow_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
        ).get("Messages", [])
        for message in messages:
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
