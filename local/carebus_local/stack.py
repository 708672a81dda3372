"""The offline stack as provisioned: what each resource became, and what the runtime emulates around moto."""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT_ID = "123456789012"  # moto's default account


class UnsupportedResourceError(Exception):
    """The template declares a resource type the offline runtime cannot create."""


@dataclass
class FunctionSpec:
    """A Lambda function the runtime calls in-process instead of creating it on moto."""

    logical_id: str
    name: str
    arn: str
    handler: str
    code_dir: Path
    timeout: int
    memory_size: int
    environment: dict[str, str]


@dataclass
class EventSourceMappingSpec:
    """An SQS event source mapping, emulated by the runtime's pollers."""

    function_logical_id: str
    queue_arn: str
    batch_size: int
    batching_window_seconds: int
    report_batch_item_failures: bool
    maximum_concurrency: int | None


@dataclass
class RuleTargetSpec:
    """An EventBridge target moto cannot deliver (a state machine or a function): the runtime does.

    A shadow rule with the same pattern copies matching events to shadow_queue_url, so that moto's own
    pattern matching decides what the target receives.
    """

    rule_name: str
    event_bus_name: str
    event_pattern: dict[str, Any]
    target: dict[str, Any]
    shadow_queue_url: str


@dataclass
class Provisioned:
    """What one resource became: its Ref value and its GetAtt attributes."""

    ref: Any
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class OfflineStack:
    """A provisioned stack: resources by logical id, outputs, and what the runtime must emulate."""

    name: str
    region: str
    resources: dict[str, Provisioned]
    outputs: dict[str, Any]
    functions: dict[str, FunctionSpec]
    event_source_mappings: list[EventSourceMappingSpec]
    rule_targets: list[RuleTargetSpec]
    rest_apis: dict[str, dict[str, Any]]
    cfn: dict[str, Any]

    def created(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """The template's resources of a type that exist, by logical id (a resource whose condition is
        false is in the template, not in the stack)."""
        return {
            logical_id: resource
            for logical_id, resource in self.cfn["Resources"].items()
            if resource["Type"] == resource_type and logical_id in self.resources
        }

    def ref(self, logical_id: str) -> Any:
        return self.resources[logical_id].ref

    def attribute(self, logical_id: str, name: str) -> Any:
        return self.resources[logical_id].attributes[name]

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """What Lambda would put in the function's environment (template variables and Lambda's own)."""
        spec = self.functions[logical_id]
        return {
            **spec.environment,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def as_json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
