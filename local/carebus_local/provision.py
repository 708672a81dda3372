"""Provision the translated template on moto (or any endpoint boto3 reaches): one creator per resource type.

Nothing here knows carebus's queues, filters, routes or rules: it creates what the template declares,
resolving intrinsic functions the way CloudFormation would, and refuses resource types it cannot create.
"""

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import boto3

from carebus_local.template import PROJECT_ROOT, code_locations

ACCOUNT_ID = "123456789012"  # moto's default account
DEFAULT_STACK_NAME = "carebus-local"
_NO_VALUE = object()
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


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
    ) -> None:
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
        self._clients: dict[str, Any] = {}
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
            "AWS::StackId": self.arn("cloudformation", f"stack/{self.stack_name}/local"),
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

    # ----- provisioning ----------------------------------------------------------------------------
    def provision(self) -> OfflineStack:
        resources = self.cfn["Resources"]
        graph = {
            logical_id: (
                {dep for dep in _dependencies(resource.get("Properties", {})) if dep in resources}
                | set(_as_list(resource.get("DependsOn")))
            )
            for logical_id, resource in resources.items()
        }
        unsupported = sorted(
            {resource["Type"] for resource in resources.values() if resource["Type"] not in self.creators}
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
            properties = self.resolve(resource.get("Properties", {}))
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


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# ----- creators: one per resource type ---------------------------------------------------------------
Creator = Callable[[Provisioner, str, dict[str, Any]], Provisioned]


def _kms_key(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    key = p.client("kms").create_key(
        Description=props.get("Description", logical_id), Policy=_json(props["KeyPolicy"])
    )["KeyMetadata"]
    if props.get("EnableKeyRotation"):
        p.client("kms").enable_key_rotation(KeyId=key["KeyId"])
    return Provisioned(key["KeyId"], {"Arn": key["Arn"], "KeyId": key["KeyId"]})


def _kms_alias(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    p.client("kms").create_alias(AliasName=props["AliasName"], TargetKeyId=props["TargetKeyId"])
    return Provisioned(props["AliasName"])


def _dynamodb_table(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("TableName") or p.physical_name(logical_id, 255)
    request: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    sse = props.get("SSESpecification")
    if sse:
        request["SSESpecification"] = {
            "Enabled": sse.get("SSEEnabled", False),
            **({"SSEType": sse["SSEType"]} if "SSEType" in sse else {}),
            **({"KMSMasterKeyId": sse["KMSMasterKeyId"]} if "KMSMasterKeyId" in sse else {}),
        }
    for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if index_kind in props:
            request[index_kind] = props[index_kind]
    client = p.client("dynamodb")
    table = client.create_table(**request)["TableDescription"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    recovery = props.get("PointInTimeRecoverySpecification")
    if recovery:
        client.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification=recovery)
    return Provisioned(name, {"Arn": table["TableArn"]})


def _sns_topic(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    attributes = {name: str(props[name]) for name in ("KmsMasterKeyId", "DisplayName") if name in props}
    client = p.client("sns")
    arn = client.create_topic(
        Name=props.get("TopicName") or p.physical_name(logical_id, 256), Attributes=attributes
    )["TopicArn"]
    for subscription in props.get("Subscription", []):
        client.subscribe(TopicArn=arn, Protocol=subscription["Protocol"], Endpoint=subscription["Endpoint"])
    return Provisioned(arn, {"TopicArn": arn, "TopicName": arn.rsplit(":", 1)[1]})


def _sns_topic_policy(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    for topic in props["Topics"]:
        p.client("sns").set_topic_attributes(
            TopicArn=topic, AttributeName="Policy", AttributeValue=_json(props["PolicyDocument"])
        )
    return Provisioned(p.physical_name(logical_id))


def _sns_subscription(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    attributes = {}
    for name in ("RawMessageDelivery", "FilterPolicyScope"):
        if name in props:
            attributes[name] = str(props[name]).lower() if name == "RawMessageDelivery" else props[name]
    for name in ("FilterPolicy", "RedrivePolicy", "DeliveryPolicy"):
        if name in props:
            attributes[name] = _json(props[name])
    arn = p.client("sns").subscribe(
        TopicArn=props["TopicArn"],
        Protocol=props["Protocol"],
        Endpoint=props["Endpoint"],
        Attributes=attributes,
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    return Provisioned(arn, {"Arn": arn})


_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
    "FifoQueue",
    "ContentBasedDeduplication",
)


def _sqs_queue(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    attributes = {
        name: str(props[name]).lower() if isinstance(props[name], bool) else str(props[name])
        for name in _QUEUE_ATTRIBUTES
        if name in props
    }
    for name in ("RedrivePolicy", "RedriveAllowPolicy"):
        if name in props:
            attributes[name] = _json(props[name])
    name = props.get("QueueName") or p.physical_name(logical_id, 80)
    url = p.client("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = p.arn("sqs", name)
    return Provisioned(url, {"Arn": arn, "QueueName": name, "QueueUrl": url})


def _sqs_queue_policy(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    for url in props["Queues"]:
        p.client("sqs").set_queue_attributes(
            QueueUrl=url, Attributes={"Policy": _json(props["PolicyDocument"])}
        )
    return Provisioned(p.physical_name(logical_id))


def _event_bus(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    # moto keeps neither the bus's key nor its dead-letter config; encryption is checked statically.
    arn = p.client("events").create_event_bus(Name=props["Name"])["EventBusArn"]
    return Provisioned(props["Name"], {"Arn": arn, "Name": props["Name"]})


def _event_archive(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("ArchiveName") or p.physical_name(logical_id, 48)
    request: dict[str, Any] = {"ArchiveName": name, "EventSourceArn": props["SourceArn"]}
    if "EventPattern" in props:
        request["EventPattern"] = _json(props["EventPattern"])
    if "RetentionDays" in props:
        request["RetentionDays"] = int(props["RetentionDays"])
    arn = p.client("events").create_archive(**request)["ArchiveArn"]
    return Provisioned(name, {"Arn": arn})


# moto delivers these target kinds itself; the runtime delivers the others after moto matched the rule.
_MOTO_DELIVERED_TARGETS = (":sqs:", ":sns:", ":logs:", ":events:")


def _event_rule(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("Name") or p.physical_name(logical_id, 64)
    bus = props.get("EventBusName", "default")
    client = p.client("events")
    request: dict[str, Any] = {"Name": name, "EventBusName": bus, "State": props.get("State", "ENABLED")}
    if "EventPattern" in props:
        request["EventPattern"] = _json(props["EventPattern"])
    if "ScheduleExpression" in props:
        request["ScheduleExpression"] = props["ScheduleExpression"]
    arn = client.put_rule(**request)["RuleArn"]
    delivered = [
        target
        for target in props.get("Targets", [])
        if any(kind in target["Arn"] for kind in _MOTO_DELIVERED_TARGETS)
    ]
    if delivered:
        client.put_targets(Rule=name, EventBusName=bus, Targets=delivered)
    for target in props.get("Targets", []):
        if target in delivered:
            continue
        shadow = f"{name}-{target['Id']}"[:64]
        sqs = p.client("sqs")
        url = sqs.create_queue(QueueName=f"offline-delivery-{shadow}"[:80])["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        client.put_rule(Name=shadow, EventBusName=bus, EventPattern=request["EventPattern"], State="ENABLED")
        client.put_targets(
            Rule=shadow, EventBusName=bus, Targets=[{"Id": "offline-delivery", "Arn": queue_arn}]
        )
        p.rule_targets.append(RuleTargetSpec(name, bus, props.get("EventPattern", {}), target, url))
    return Provisioned(f"{bus}|{name}" if bus != "default" else name, {"Arn": arn})


def _log_group(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("LogGroupName") or p.physical_name(logical_id, 512)
    client = p.client("logs")
    client.create_log_group(
        logGroupName=name, **({"kmsKeyId": props["KmsKeyId"]} if "KmsKeyId" in props else {})
    )
    if "RetentionInDays" in props:
        client.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
    return Provisioned(name, {"Arn": p.arn("logs", f"log-group:{name}:*")})


def _log_resource_policy(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    p.client("logs").put_resource_policy(
        policyName=props["PolicyName"], policyDocument=_json(props["PolicyDocument"])
    )
    return Provisioned(props["PolicyName"])


def _log_query_definition(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    # moto has no Logs Insights query definitions (nor their query language): the definition is kept in
    # the offline stack only, and offline tools count the audit trail themselves.
    definition_id = hashlib.sha256(f"{p.stack_name}/{logical_id}".encode()).hexdigest()[:36]
    return Provisioned(definition_id, {"QueryDefinitionId": definition_id})


def _iam_role(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("RoleName") or p.physical_name(logical_id, 64)
    client = p.client("iam")
    role = client.create_role(
        RoleName=name, AssumeRolePolicyDocument=_json(props["AssumeRolePolicyDocument"])
    )["Role"]
    for policy in props.get("Policies", []):
        client.put_role_policy(
            RoleName=name,
            PolicyName=policy["PolicyName"],
            # IAM takes a document without Version as the 2008 language; moto refuses it, so say 2012.
            PolicyDocument=_json({"Version": "2012-10-17", **policy["PolicyDocument"]}),
        )
    return Provisioned(name, {"Arn": role["Arn"], "RoleId": role["RoleId"]})


def _lambda_function(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("FunctionName") or p.physical_name(logical_id, 64)
    arn = p.arn("lambda", f"function:{name}")
    p.functions[logical_id] = FunctionSpec(
        logical_id=logical_id,
        name=name,
        arn=arn,
        handler=props["Handler"],
        code_dir=p.code_dirs[logical_id],
        timeout=int(props.get("Timeout", 3)),
        memory_size=int(props.get("MemorySize", 128)),
        environment={
            key: str(value) for key, value in props.get("Environment", {}).get("Variables", {}).items()
        },
    )
    return Provisioned(name, {"Arn": arn})


def _lambda_layer(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    arn = p.arn("lambda", f"layer:{props.get('LayerName', logical_id)}:1")
    return Provisioned(arn, {"Arn": arn})


def _lambda_event_source_mapping(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    function = next(spec for spec in p.functions.values() if spec.name == props["FunctionName"])
    p.mappings.append(
        EventSourceMappingSpec(
            function_logical_id=function.logical_id,
            queue_arn=props["EventSourceArn"],
            batch_size=int(props.get("BatchSize", 10)),
            batching_window_seconds=int(props.get("MaximumBatchingWindowInSeconds", 0)),
            report_batch_item_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
            maximum_concurrency=props.get("ScalingConfig", {}).get("MaximumConcurrency"),
        )
    )
    return Provisioned(p.physical_name(logical_id))


def _nothing_to_create(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    """Account settings and invoke permissions have no offline counterpart."""
    return Provisioned(p.physical_name(logical_id))


def _rest_api(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    api_id = hashlib.sha256(f"{p.stack_name}/{logical_id}".encode()).hexdigest()[:10]
    p.rest_apis[logical_id] = {"id": api_id, "body": props.get("Body", {}), "stages": []}
    return Provisioned(api_id, {"RootResourceId": f"{api_id}-root"})


def _api_deployment(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    return Provisioned(p.physical_name(logical_id))


def _api_stage(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    for api in p.rest_apis.values():
        if api["id"] == props["RestApiId"]:
            api["stages"].append(props["StageName"])
    return Provisioned(props["StageName"])


def _user_pool(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    request = {
        name: props[name]
        for name in (
            "Policies",
            "UsernameAttributes",
            "AutoVerifiedAttributes",
            "AdminCreateUserConfig",
            "AccountRecoverySetting",
            "DeletionProtection",
        )
        if name in props
    }
    pool = p.client("cognito-idp").create_user_pool(
        PoolName=props.get("UserPoolName") or p.physical_name(logical_id), **request
    )["UserPool"]
    provider = f"cognito-idp.{p.region}.amazonaws.com/{pool['Id']}"
    return Provisioned(
        pool["Id"], {"Arn": pool["Arn"], "ProviderName": provider, "ProviderURL": f"https://{provider}"}
    )


def _user_pool_client(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    request = {
        name: props[name]
        for name in (
            "ExplicitAuthFlows",
            "GenerateSecret",
            "PreventUserExistenceErrors",
            "EnableTokenRevocation",
            "AccessTokenValidity",
            "IdTokenValidity",
            "RefreshTokenValidity",
            "TokenValidityUnits",
        )
        if name in props
    }
    client = p.client("cognito-idp").create_user_pool_client(
        UserPoolId=props["UserPoolId"], ClientName=props.get("ClientName", logical_id), **request
    )["UserPoolClient"]
    return Provisioned(client["ClientId"], {"ClientSecret": client.get("ClientSecret", "")})


def _user_pool_group(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    p.client("cognito-idp").create_group(
        UserPoolId=props["UserPoolId"], GroupName=props["GroupName"], Description=props.get("Description", "")
    )
    return Provisioned(props["GroupName"])


def _cloudwatch_alarm(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("AlarmName") or p.physical_name(logical_id, 255)
    request = {
        key: value
        for key, value in props.items()
        if key
        in (
            "AlarmDescription",
            "Namespace",
            "MetricName",
            "Dimensions",
            "Statistic",
            "Period",
            "EvaluationPeriods",
            "Threshold",
            "ComparisonOperator",
            "TreatMissingData",
            "AlarmActions",
        )
    }
    if "Metrics" in props:
        request["Metrics"] = props["Metrics"]
    for number in ("Period", "EvaluationPeriods"):
        if number in request:
            request[number] = int(request[number])
    request["Threshold"] = float(request["Threshold"])
    p.client("cloudwatch").put_metric_alarm(AlarmName=name, **request)
    return Provisioned(name, {"Arn": p.arn("cloudwatch", f"alarm:{name}")})


def _state_machine(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
    if "DefinitionS3Location" in props:
        location = props["DefinitionS3Location"]
        if not isinstance(location, str):
            raise UnsupportedResourceError(
                f"{logical_id}: only a local DefinitionS3Location file works offline"
            )
        definition = (p.template_dir / location).read_text()
    elif "DefinitionString" in props:
        definition = props["DefinitionString"]
    else:
        definition = json.dumps(props["Definition"])
    # What CloudFormation does with DefinitionSubstitutions: plain ${Name} replacement in the text.
    for name, value in props.get("DefinitionSubstitutions", {}).items():
        definition = definition.replace("${" + name + "}", str(value))
    name = props.get("StateMachineName") or p.physical_name(logical_id, 80)
    request: dict[str, Any] = {
        "name": name,
        "definition": definition,
        "roleArn": props["RoleArn"],
        "type": props.get("StateMachineType", "STANDARD"),
    }
    if "TracingConfiguration" in props:
        request["tracingConfiguration"] = {"enabled": bool(props["TracingConfiguration"].get("Enabled"))}
    arn = p.client("stepfunctions").create_state_machine(**request)["stateMachineArn"]
    return Provisioned(arn, {"Arn": arn, "Name": name})


CREATORS: dict[str, Creator] = {
    "AWS::KMS::Key": _kms_key,
    "AWS::KMS::Alias": _kms_alias,
    "AWS::DynamoDB::Table": _dynamodb_table,
    "AWS::SNS::Topic": _sns_topic,
    "AWS::SNS::TopicPolicy": _sns_topic_policy,
    "AWS::SNS::Subscription": _sns_subscription,
    "AWS::SQS::Queue": _sqs_queue,
    "AWS::SQS::QueuePolicy": _sqs_queue_policy,
    "AWS::Events::EventBus": _event_bus,
    "AWS::Events::Archive": _event_archive,
    "AWS::Events::Rule": _event_rule,
    "AWS::Logs::LogGroup": _log_group,
    "AWS::Logs::ResourcePolicy": _log_resource_policy,
    "AWS::Logs::QueryDefinition": _log_query_definition,
    "AWS::IAM::Role": _iam_role,
    "AWS::Lambda::Function": _lambda_function,
    "AWS::Lambda::LayerVersion": _lambda_layer,
    "AWS::Lambda::EventSourceMapping": _lambda_event_source_mapping,
    "AWS::Lambda::Permission": _nothing_to_create,
    "AWS::ApiGateway::Account": _nothing_to_create,
    "AWS::ApiGateway::RestApi": _rest_api,
    "AWS::ApiGateway::Deployment": _api_deployment,
    "AWS::ApiGateway::Stage": _api_stage,
    "AWS::Cognito::UserPool": _user_pool,
    "AWS::Cognito::UserPoolClient": _user_pool_client,
    "AWS::Cognito::UserPoolGroup": _user_pool_group,
    "AWS::CloudWatch::Alarm": _cloudwatch_alarm,
    "AWS::StepFunctions::StateMachine": _state_machine,
}


def provision_stack(
    template_path: Path | None = None,
    *,
    stack_name: str = DEFAULT_STACK_NAME,
    region: str = "us-east-1",
    parameters: Mapping[str, str] | None = None,
    endpoint_url: str | None = None,
) -> OfflineStack:
    """template.yaml (or another SAM template), translated and provisioned where boto3 points."""
    from carebus_local.template import TEMPLATE_PATH, load_template, translate

    path = template_path or TEMPLATE_PATH
    sam_template = load_template(path)
    cfn = translate(sam_template, region=region)
    return Provisioner(
        cfn,
        sam_template,
        template_dir=path.parent,
        stack_name=stack_name,
        region=region,
        parameters=parameters,
        endpoint_url=endpoint_url,
    ).provision()
