"""One creator per resource type: how each of the translated template's resources is made on moto."""

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from carebus_local.creators_catalog import CATALOG_CREATORS
from carebus_local.creators_observability import cloudwatch_dashboard
from carebus_local.creators_outbound import OUTBOUND_CREATORS
from carebus_local.creators_partner_api import PARTNER_API_CREATORS
from carebus_local.stack import (
    EventSourceMappingSpec,
    FunctionSpec,
    Provisioned,
    RuleTargetSpec,
    UnsupportedResourceError,
    as_json,
)

if TYPE_CHECKING:
    from carebus_local.provision import Provisioner

type Creator = Callable[["Provisioner", str, dict[str, Any]], Provisioned]


def _kms_key(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    key = p.client("kms").create_key(
        Description=props.get("Description", logical_id), Policy=as_json(props["KeyPolicy"])
    )["KeyMetadata"]
    if props.get("EnableKeyRotation"):
        p.client("kms").enable_key_rotation(KeyId=key["KeyId"])
    return Provisioned(key["KeyId"], {"Arn": key["Arn"], "KeyId": key["KeyId"]})


def _kms_alias(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    p.client("kms").create_alias(AliasName=props["AliasName"], TargetKeyId=props["TargetKeyId"])
    return Provisioned(props["AliasName"])


def _dynamodb_table(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
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


def _sns_topic(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    attributes = {name: str(props[name]) for name in ("KmsMasterKeyId", "DisplayName") if name in props}
    client = p.client("sns")
    arn = client.create_topic(
        Name=props.get("TopicName") or p.physical_name(logical_id, 256), Attributes=attributes
    )["TopicArn"]
    for subscription in props.get("Subscription", []):
        client.subscribe(TopicArn=arn, Protocol=subscription["Protocol"], Endpoint=subscription["Endpoint"])
    return Provisioned(arn, {"TopicArn": arn, "TopicName": arn.rsplit(":", 1)[1]})


def _sns_topic_policy(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    for topic in props["Topics"]:
        p.client("sns").set_topic_attributes(
            TopicArn=topic, AttributeName="Policy", AttributeValue=as_json(props["PolicyDocument"])
        )
    return Provisioned(p.physical_name(logical_id))


def _sns_subscription(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    attributes = {}
    for name in ("RawMessageDelivery", "FilterPolicyScope"):
        if name in props:
            attributes[name] = str(props[name]).lower() if name == "RawMessageDelivery" else props[name]
    for name in ("FilterPolicy", "RedrivePolicy", "DeliveryPolicy"):
        if name in props:
            attributes[name] = as_json(props[name])
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


def _sqs_queue(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    attributes = {
        name: str(props[name]).lower() if isinstance(props[name], bool) else str(props[name])
        for name in _QUEUE_ATTRIBUTES
        if name in props
    }
    for name in ("RedrivePolicy", "RedriveAllowPolicy"):
        if name in props:
            attributes[name] = as_json(props[name])
    name = props.get("QueueName") or p.physical_name(logical_id, 80)
    url = p.client("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = p.arn("sqs", name)
    return Provisioned(url, {"Arn": arn, "QueueName": name, "QueueUrl": url})


def _sqs_queue_policy(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    for url in props["Queues"]:
        p.client("sqs").set_queue_attributes(
            QueueUrl=url, Attributes={"Policy": as_json(props["PolicyDocument"])}
        )
    return Provisioned(p.physical_name(logical_id))


def _event_bus(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    # moto keeps neither the bus's key nor its dead-letter config; encryption is checked statically.
    arn = p.client("events").create_event_bus(Name=props["Name"])["EventBusArn"]
    return Provisioned(props["Name"], {"Arn": arn, "Name": props["Name"]})


def _event_archive(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("ArchiveName") or p.physical_name(logical_id, 48)
    request: dict[str, Any] = {"ArchiveName": name, "EventSourceArn": props["SourceArn"]}
    if "EventPattern" in props:
        request["EventPattern"] = as_json(props["EventPattern"])
    if "RetentionDays" in props:
        request["RetentionDays"] = int(props["RetentionDays"])
    arn = p.client("events").create_archive(**request)["ArchiveArn"]
    return Provisioned(name, {"Arn": arn})


# moto delivers these target kinds (not API destinations: no auth, no retry); the runtime the others.
_MOTO_DELIVERED_TARGETS = (":sqs:", ":sns:", ":logs:", ":event-bus/")


def _event_rule(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("Name") or p.physical_name(logical_id, 64)
    bus = props.get("EventBusName", "default")
    client = p.client("events")
    request: dict[str, Any] = {"Name": name, "EventBusName": bus, "State": props.get("State", "ENABLED")}
    if "EventPattern" in props:
        request["EventPattern"] = as_json(props["EventPattern"])
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


def _log_group(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("LogGroupName") or p.physical_name(logical_id, 512)
    client = p.client("logs")
    client.create_log_group(
        logGroupName=name, **({"kmsKeyId": props["KmsKeyId"]} if "KmsKeyId" in props else {})
    )
    if "RetentionInDays" in props:
        client.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
    return Provisioned(name, {"Arn": p.arn("logs", f"log-group:{name}:*")})


def _log_resource_policy(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    p.client("logs").put_resource_policy(
        policyName=props["PolicyName"], policyDocument=as_json(props["PolicyDocument"])
    )
    return Provisioned(props["PolicyName"])


def _log_query_definition(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    # moto has no Logs Insights query definitions (nor their query language): the definition is kept in
    # the offline stack only, and offline tools count the audit trail themselves.
    definition_id = hashlib.sha256(f"{p.stack_name}/{logical_id}".encode()).hexdigest()[:36]
    return Provisioned(definition_id, {"QueryDefinitionId": definition_id})


def _iam_role(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("RoleName") or p.physical_name(logical_id, 64)
    client = p.client("iam")
    role = client.create_role(
        RoleName=name, AssumeRolePolicyDocument=as_json(props["AssumeRolePolicyDocument"])
    )["Role"]
    for policy in props.get("Policies", []):
        client.put_role_policy(
            RoleName=name,
            PolicyName=policy["PolicyName"],
            # IAM takes a document without Version as the 2008 language; moto refuses it, so say 2012.
            PolicyDocument=as_json({"Version": "2012-10-17", **policy["PolicyDocument"]}),
        )
    return Provisioned(name, {"Arn": role["Arn"], "RoleId": role["RoleId"]})


def _lambda_function(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
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


def _lambda_layer(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    arn = p.arn("lambda", f"layer:{props.get('LayerName', logical_id)}:1")
    return Provisioned(arn, {"Arn": arn})


def _lambda_event_source_mapping(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
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


def _nothing_to_create(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    """Account settings and invoke permissions have no offline counterpart."""
    return Provisioned(p.physical_name(logical_id))


def _rest_api(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    api_id = hashlib.sha256(f"{p.stack_name}/{logical_id}".encode()).hexdigest()[:10]
    p.rest_apis[logical_id] = {"id": api_id, "body": props.get("Body", {}), "stages": []}
    return Provisioned(api_id, {"RootResourceId": f"{api_id}-root"})


def _api_deployment(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    return Provisioned(p.physical_name(logical_id))


def _api_stage(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    for api in p.rest_apis.values():
        if api["id"] == props["RestApiId"]:
            api["stages"].append(props["StageName"])
    return Provisioned(props["StageName"])


def _user_pool(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
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
    cognito = p.client("cognito-idp")
    pool = cognito.create_user_pool(
        PoolName=props.get("UserPoolName") or p.physical_name(logical_id), **request
    )["UserPool"]
    # As CloudFormation does: MfaConfiguration and EnabledMfas become the pool's MFA configuration. The
    # feature plan and threat protection (UserPoolTier, UserPoolAddOns) have no offline counterpart.
    if props.get("MfaConfiguration", "OFF") != "OFF":
        cognito.set_user_pool_mfa_config(
            UserPoolId=pool["Id"],
            MfaConfiguration=props["MfaConfiguration"],
            SoftwareTokenMfaConfiguration={"Enabled": "SOFTWARE_TOKEN_MFA" in props.get("EnabledMfas", [])},
        )
    provider = f"cognito-idp.{p.region}.amazonaws.com/{pool['Id']}"
    return Provisioned(
        pool["Id"], {"Arn": pool["Arn"], "ProviderName": provider, "ProviderURL": f"https://{provider}"}
    )


def _user_pool_group(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    p.client("cognito-idp").create_group(
        UserPoolId=props["UserPoolId"], GroupName=props["GroupName"], Description=props.get("Description", "")
    )
    return Provisioned(props["GroupName"])


def _cloudwatch_alarm(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
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
            "ExtendedStatistic",
            "Period",
            "EvaluationPeriods",
            "DatapointsToAlarm",
            "Threshold",
            "ComparisonOperator",
            "TreatMissingData",
            "AlarmActions",
        )
    }
    if "Metrics" in props:
        request["Metrics"] = props["Metrics"]
    for number in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
        if number in request:
            request[number] = int(request[number])
    request["Threshold"] = float(request["Threshold"])
    p.client("cloudwatch").put_metric_alarm(AlarmName=name, **request)
    return Provisioned(name, {"Arn": p.arn("cloudwatch", f"alarm:{name}")})


def _state_machine(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
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
    "AWS::Cognito::UserPoolGroup": _user_pool_group,
    "AWS::CloudWatch::Alarm": _cloudwatch_alarm,
    "AWS::CloudWatch::Dashboard": cloudwatch_dashboard,
    "AWS::StepFunctions::StateMachine": _state_machine,
    **CATALOG_CREATORS,
    **OUTBOUND_CREATORS,
    **PARTNER_API_CREATORS,
}
