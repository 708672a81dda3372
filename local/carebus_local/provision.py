"""Provision the translated template on moto (or any endpoint boto3 reaches): one creator per resource type.

Nothing here knows carebus's queues, filters, routes or rules: it creates what the template declares,
resolving intrinsic functions the way CloudFormation would, and refuses resource types it cannot create
(unless the resource's condition is false: it is not created at all).
"""

import json
import re
import uuid
from collections.abc import Callable, Mapping, MutableMapping
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from carebus_client.stacks import DEFAULT_STACK_NAME
from carebus_local.creators import CREATORS
from carebus_local.stack import (
    ACCOUNT_ID,
    EventSourceMappingSpec,
    FunctionSpec,
    OfflineStack,
    Provisioned,
    RuleTargetSpec,
    UnsupportedResourceError,
    as_list,
)
from carebus_local.template import PROJECT_ROOT, code_locations

_NO_VALUE = object()
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")
# A CloudFormation dynamic reference: {{resolve:service:reference}}, resolved when the resource is created.
_DYNAMIC_REFERENCE = re.compile(r"\{\{resolve:([a-z-]+):([^}]*)\}\}")


class DynamicReferenceError(Exception):
    """A dynamic reference names a secret, key or parameter that cannot be read: CloudFormation fails the
    resource, so provisioning fails."""


def secret_reference(reference: str) -> tuple[str, str, str, str]:
    """secret-id, json-key, version-stage, version-id of `secret-id[:SecretString[:json-key[:version-stage
    [:version-id]]]]`, the part after {{resolve:secretsmanager: (secret-id a name or a full ARN)."""
    parts = reference.split(":")
    # A secret's ARN has colons of its own: arn:aws:secretsmanager:region:account:secret:name.
    length = 7 if reference.startswith("arn:") else 1
    secret_id, rest = ":".join(parts[:length]), parts[length:]
    if not secret_id or len(rest) > 4:
        raise DynamicReferenceError(f"{{{{resolve:secretsmanager:{reference}}}}} is not a secret reference")
    secret_string, json_key, version_stage, version_id = rest + [""] * (4 - len(rest))
    if secret_string not in ("", "SecretString") or (version_stage and version_id):
        raise DynamicReferenceError(
            f"{{{{resolve:secretsmanager:{reference}}}}}: the second field must be SecretString, and only "
            "one of version-stage and version-id may be given"
        )
    return secret_id, json_key, version_stage, version_id


class TemplateRuleError(ValueError):
    """The parameters break one of the template's Rules (CloudFormation refuses them before creating)."""


def _dependencies(value: Any) -> set[str]:
    """The logical ids a property value refers to (pseudo parameters and parameters included)."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            found.add(target[0] if isinstance(target, list) else target.split(".", 1)[0])
        if "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            local = set(value["Fn::Sub"][1]) if isinstance(value["Fn::Sub"], list) else set()
            found |= {name.split(".", 1)[0] for name in _SUB_VARIABLE.findall(text)} - local
        for item in value.values():
            found |= _dependencies(item)
    elif isinstance(value, list):
        for item in value:
            found |= _dependencies(item)
    return found


class Provisioner:
    """Creates a translated template's resources in dependency order through boto3 clients."""

    def __init__(
        self,
        cfn: dict[str, Any],
        sam_template: dict[str, Any],
        *,
        stack_name: str = DEFAULT_STACK_NAME,
        region: str = "us-east-1",
        parameters: Mapping[str, str] | None = None,
        endpoint_url: str | None = None,
        template_dir: Path = PROJECT_ROOT,
        overrides: Mapping[str, Callable[["Provisioner", str, dict[str, Any]], Provisioned]] | None = None,
        clients: MutableMapping[str, Any] | None = None,
    ) -> None:
        """clients: boto3 clients by service, filled as needed; provisions that reach the same endpoint
        in the same region may share one mapping (a test suite provisions many stacks on one moto)."""
        self.cfn = cfn
        self.stack_name = stack_name
        self.region = region
        self.endpoint_url = endpoint_url
        self.code_dirs = code_locations(sam_template, template_dir)
        self.template_dir = template_dir
        self.parameters = self._parameter_values(parameters or {})
        self.conditions: dict[str, bool] = {}
        self.resources: dict[str, Provisioned] = {}
        self.functions: dict[str, FunctionSpec] = {}
        self.mappings: list[EventSourceMappingSpec] = []
        self.rule_targets: list[RuleTargetSpec] = []
        self.rest_apis: dict[str, dict[str, Any]] = {}
        self._clients: MutableMapping[str, Any] = {} if clients is None else clients
        self.creators = {**CREATORS, **(overrides or {})}

    # ----- plumbing --------------------------------------------------------------------------------
    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service, region_name=self.region, endpoint_url=self.endpoint_url
            )
        return self._clients[service]

    def physical_name(self, logical_id: str, limit: int = 64) -> str:
        return f"{self.stack_name}-{logical_id}"[:limit]

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{ACCOUNT_ID}:{resource}"

    def _parameter_values(self, given: Mapping[str, str]) -> dict[str, Any]:
        values: dict[str, Any] = {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": self.stack_name,
            # CloudFormation gives each stack instance a UUID of its own; so does a fresh offline stack.
            "AWS::StackId": self.arn("cloudformation", f"stack/{self.stack_name}/{uuid.uuid4()}"),
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": _NO_VALUE,
        }
        for name, definition in self.cfn.get("Parameters", {}).items():
            values[name] = given.get(name, definition.get("Default"))
        unknown = set(given) - set(self.cfn.get("Parameters", {}))
        if unknown:
            raise ValueError(f"the template has no parameters {sorted(unknown)}")
        return values

    # ----- intrinsic functions ---------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self.cfn["Conditions"][name]))
        return self.conditions[name]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in (self.resolve(item) for item in value) if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((name, argument),) = value.items()
            if name == "Ref":
                if argument in self.parameters:
                    return self.parameters[argument]
                return self.resources[argument].ref
            if name == "Fn::GetAtt":
                logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self.resources[logical_id].attributes[attribute]
            if name == "Fn::Sub":
                return self._sub(argument)
            if name == "Fn::If":
                return self.resolve(argument[1] if self.condition(argument[0]) else argument[2])
            if name == "Fn::Equals":
                return self.resolve(argument[0]) == self.resolve(argument[1])
            if name == "Fn::Not":
                return not self.resolve(argument[0])
            if name == "Fn::And":
                return all(self.resolve(item) for item in argument)
            if name == "Fn::Or":
                return any(self.resolve(item) for item in argument)
            if name == "Condition":
                return self.condition(argument)
            if name == "Fn::Join":
                return argument[0].join(str(item) for item in self.resolve(argument[1]))
            if name == "Fn::Select":
                return self.resolve(argument[1])[int(self.resolve(argument[0]))]
            if name == "Fn::Split":
                return str(self.resolve(argument[1])).split(argument[0])
            if name.startswith("Fn::"):
                raise UnsupportedResourceError(f"intrinsic function {name} is not supported offline")
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
        local = {name: self.resolve(item) for name, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in local:
                return str(local[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                logical_id, attribute = name.split(".", 1)
                return str(self.resources[logical_id].attributes[attribute])
            return str(self.resolve({"Ref": name}))

        return _SUB_VARIABLE.sub(replace, text).replace("${!", "${")

    # ----- dynamic references ----------------------------------------------------------------------
    def dynamic_references(self, logical_id: str, value: Any) -> Any:
        """Property values with their dynamic references resolved, as CloudFormation resolves them when it
        creates the resource (secretsmanager and ssm; others are refused)."""
        if isinstance(value, dict):
            return {key: self.dynamic_references(logical_id, item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.dynamic_references(logical_id, item) for item in value]
        if isinstance(value, str) and "{{resolve:" in value:
            return _DYNAMIC_REFERENCE.sub(
                lambda match: self._dynamic_reference(logical_id, match.group(1), match.group(2)), value
            )
        return value

    def _dynamic_reference(self, logical_id: str, service: str, reference: str) -> str:
        try:
            if service == "ssm":
                return self.client("ssm").get_parameter(Name=reference)["Parameter"]["Value"]
            if service != "secretsmanager":
                raise UnsupportedResourceError(
                    f"{logical_id}: {{{{resolve:{service}:...}}}} is not supported offline"
                )
            secret_id, json_key, version_stage, version_id = secret_reference(reference)
            version = {"VersionStage": version_stage} if version_stage else {}
            version |= {"VersionId": version_id} if version_id else {}
            text = self.client("secretsmanager").get_secret_value(SecretId=secret_id, **version)[
                "SecretString"
            ]
        except ClientError as error:
            raise DynamicReferenceError(
                f"{logical_id}: {{{{resolve:{service}:{reference}}}}} cannot be resolved: "
                f"{error.response['Error']['Code']} ({error.response['Error'].get('Message', '')})"
            ) from None
        if not json_key:
            return text
        try:
            value = json.loads(text)[json_key]
        except (ValueError, KeyError, TypeError):
            raise DynamicReferenceError(
                f"{logical_id}: {{{{resolve:secretsmanager:{reference}}}}} cannot be resolved: the secret's "
                f"SecretString is not a JSON object with the key {json_key!r}"
            ) from None
        return value if isinstance(value, str) else json.dumps(value)

    # ----- provisioning ----------------------------------------------------------------------------
    def check_rules(self) -> None:
        """The template's Rules, as CloudFormation checks the parameters against them before it creates
        anything: a rule whose condition holds must see every assertion hold."""
        for name, rule in self.cfn.get("Rules", {}).items():
            if "RuleCondition" in rule and not self.resolve(rule["RuleCondition"]):
                continue
            for assertion in rule.get("Assertions", []):
                if not self.resolve(assertion["Assert"]):
                    why = assertion.get("AssertDescription", "an assertion does not hold")
                    raise TemplateRuleError(f"the parameters break the template's rule {name}: {why}")

    def provision(self) -> OfflineStack:
        self.check_rules()
        resources = self.cfn["Resources"]
        graph = {
            logical_id: (
                {dep for dep in _dependencies(resource.get("Properties", {})) if dep in resources}
                | set(as_list(resource.get("DependsOn")))
            )
            for logical_id, resource in resources.items()
        }
        # A resource whose condition is false is never created, so its type need not be creatable offline.
        unsupported = sorted(
            {
                resource["Type"]
                for resource in resources.values()
                if resource["Type"] not in self.creators
                and ("Condition" not in resource or self.condition(resource["Condition"]))
            }
        )
        if unsupported:
            raise UnsupportedResourceError(
                f"the offline runtime cannot create {', '.join(unsupported)}; "
                "deploy to AWS for these or add a creator in carebus_local/provision.py"
            )
        for logical_id in TopologicalSorter(graph).static_order():
            resource = resources[logical_id]
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            properties = self.dynamic_references(logical_id, self.resolve(resource.get("Properties", {})))
            self.resources[logical_id] = self.creators[resource["Type"]](self, logical_id, properties)
        outputs = {
            name: self.resolve(output["Value"])
            for name, output in self.cfn.get("Outputs", {}).items()
            if "Condition" not in output or self.condition(output["Condition"])
        }
        return OfflineStack(
            name=self.stack_name,
            region=self.region,
            resources=self.resources,
            outputs=outputs,
            functions=self.functions,
            event_source_mappings=self.mappings,
            rule_targets=self.rule_targets,
            rest_apis=self.rest_apis,
            cfn=self.cfn,
        )
