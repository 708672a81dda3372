"""What the bench reads from template.yaml: each function's code, handler and environment, the queue
mappings' batching and concurrency, the API stage throttle. Nothing here restates the template."""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from carebus_local.template import PROJECT_ROOT, load_template

REGION: Final = "us-east-1"
ACCOUNT: Final = "123456789012"
STACK: Final = "carebus-bench"
# How a resource's Ref and Arn read once deployed, by type: plausible values, never a call to AWS.
_REF_SHAPES: Final = {
    "AWS::SNS::Topic": "arn:aws:sns:{region}:{account}:{stack}-{id}",
    "AWS::SQS::Queue": "https://sqs.{region}.amazonaws.com/{account}/{stack}-{id}",
    "AWS::Serverless::StateMachine": "arn:aws:states:{region}:{account}:stateMachine:{stack}-{id}",
    "AWS::StepFunctions::StateMachine": "arn:aws:states:{region}:{account}:stateMachine:{stack}-{id}",
}
_PSEUDO_PARAMETERS: Final = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::StackName": STACK,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_uri: Path
    handler_module: str
    memory_mb: int
    environment: dict[str, str]


@dataclass(frozen=True)
class QueueMapping:
    function: str
    queue: str
    batch_size: int
    batching_window_seconds: int
    maximum_concurrency: int | None


class EnvironmentResolver:
    """Intrinsic functions in environment values, resolved to what a deployed stack would plausibly hold."""

    def __init__(self, template: Mapping[str, Any]) -> None:
        self._resources = template.get("Resources", {})
        self._parameters = template.get("Parameters", {})

    def _ref(self, name: str) -> str:
        if name in _PSEUDO_PARAMETERS:
            return _PSEUDO_PARAMETERS[name]
        if name in self._parameters:
            return str(self._parameters[name].get("Default", ""))
        shape = _REF_SHAPES.get(self._resources[name]["Type"], "{stack}-{id}")
        return shape.format(region=REGION, account=ACCOUNT, stack=STACK, id=name)

    def resolve(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, int | float):
            return str(value)
        if "Ref" in value:
            return self._ref(value["Ref"])
        if "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            return f"arn:aws:bench:{REGION}:{ACCOUNT}:{STACK}-{logical_id}/{attribute}"
        if "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            while "${" in text:
                start = text.index("${")
                end = text.index("}", start)
                text = text[:start] + self._ref(text[start + 2 : end].split(".")[0]) + text[end + 1 :]
            return text
        raise ValueError(f"no local meaning for {value!r}")


def _functions_of(template: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def functions(template: Mapping[str, Any] | None = None) -> list[FunctionSpec]:
    """Every function, with the environment Globals and its own block give it (its own wins)."""
    template = template or load_template()
    resolver = EnvironmentResolver(template)
    defaults = template.get("Globals", {}).get("Function", {})
    specs = []
    for logical_id, resource in _functions_of(template).items():
        properties = resource["Properties"]
        variables = {
            **defaults.get("Environment", {}).get("Variables", {}),
            **properties.get("Environment", {}).get("Variables", {}),
        }
        specs.append(
            FunctionSpec(
                logical_id=logical_id,
                code_uri=(PROJECT_ROOT / properties["CodeUri"]).resolve(),
                handler_module=properties["Handler"].rsplit(".", 1)[0],
                memory_mb=int(properties.get("MemorySize", defaults.get("MemorySize", 128))),
                environment={name: resolver.resolve(value) for name, value in variables.items()},
            )
        )
    return specs


def queue_mappings(template: Mapping[str, Any] | None = None) -> list[QueueMapping]:
    """Each SQS event source mapping: which function, from which queue, in what batches, how wide."""
    template = template or load_template()
    mappings = []
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Lambda::EventSourceMapping":
            continue
        properties = resource["Properties"]
        source = properties["EventSourceArn"]
        if "Fn::GetAtt" not in source:
            continue
        mappings.append(
            QueueMapping(
                function=properties["FunctionName"]["Ref"],
                queue=source["Fn::GetAtt"][0],
                batch_size=int(properties.get("BatchSize", 10)),
                batching_window_seconds=int(properties.get("MaximumBatchingWindowInSeconds", 0)),
                maximum_concurrency=properties.get("ScalingConfig", {}).get("MaximumConcurrency"),
            )
        )
    return mappings


def api_stage_throttles(template: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rate and burst limits each API's method settings give its stage."""
    template = template or load_template()
    throttles = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Api":
            continue
        for setting in resource["Properties"].get("MethodSettings", []):
            if "ThrottlingRateLimit" in setting:
                throttles.append(
                    {
                        "api": logical_id,
                        "rate_limit": setting["ThrottlingRateLimit"],
                        "burst_limit": setting.get("ThrottlingBurstLimit"),
                    }
                )
    return throttles


def reserved_concurrency(template: Mapping[str, Any] | None = None) -> dict[str, int | None]:
    """Each function's ReservedConcurrentExecutions (None: it draws on the account's pool)."""
    template = template or load_template()
    defaults = template.get("Globals", {}).get("Function", {})
    return {
        logical_id: resource["Properties"].get(
            "ReservedConcurrentExecutions", defaults.get("ReservedConcurrentExecutions")
        )
        for logical_id, resource in _functions_of(template).items()
    }
