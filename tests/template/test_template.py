"""Static proofs over template.yaml, as the CloudFormation that the SAM transform makes of it.

moto enforces neither KMS key policies nor resource policies, so these tests are where the stack's
security properties are proven. Nothing is resolved: the tests assert on the intrinsic structures
(``{"Ref": ...}``, ``{"Fn::GetAtt": [..., "Arn"]}``, ``{"Fn::Sub": ...}``). Resources are discovered by
type, and roles (which queue is a dead-letter queue, which table keeps idempotency records) are
derived from the template, so a resource added later is covered without touching these tests.
"""

import fnmatch
import inspect
import json
import re
import tomllib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.shared.version import VERSION as INSTALLED_POWERTOOLS_VERSION
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from cfnlint.api import ManualArgs, lint_file
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from carebus_local.template import PROJECT_ROOT, TEMPLATE_PATH, code_locations, load_template, translate
from carebus_tooling.contract import gateway_models

# Powertools for AWS Lambda (Python) releases and the public layer version that ships each of them.
POWERTOOLS_LAYER_VERSIONS = {"3.34.0": 37}
POWERTOOLS_LAYER_ACCOUNT = "017000801446"

STACK_KEY = "CarebusKey"
ENCOUNTER_TOPIC = "EncounterTopic"
ALARM_TOPIC = "AlarmTopic"
PUBLISHER_ROLE = "IntakeFunctionRole"

# The only AWS-managed policies SAM may attach to a function role (logs, X-Ray). Not the SQS execution
# role SAM's SQS event would add: it lets a function read every queue of the account, so the mappings
# are declared with their own queue-scoped statements.
SAM_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
# Services whose actions must always name the resources they act on.
RESOURCE_SCOPED_SERVICES = {"dynamodb", "sns", "sqs", "events", "kms", "states"}

# CloudFormation's and the services' defaults for properties a resource may leave out.
SQS_DEFAULT_RETENTION_SECONDS = 345_600
SQS_DEFAULT_VISIBILITY_TIMEOUT = 30
LAMBDA_DEFAULT_TIMEOUT = 3
# AWS: set a source queue's visibility timeout to at least six times the function timeout, plus the
# batching window, so that retries of a throttled or slow batch do not make messages visible again.
VISIBILITY_TIMEOUT_FACTOR = 6

HTTP_METHODS = {
    "get",
    "put",
    "post",
    "delete",
    "options",
    "head",
    "patch",
    "trace",
    "x-amazon-apigateway-any-method",
}
BODY_METHODS = {"post", "put", "patch"}

QUEUE = "AWS::SQS::Queue"
QUEUE_POLICY = "AWS::SQS::QueuePolicy"
TOPIC = "AWS::SNS::Topic"
TOPIC_POLICY = "AWS::SNS::TopicPolicy"
SUBSCRIPTION = "AWS::SNS::Subscription"
FUNCTION = "AWS::Lambda::Function"
EVENT_SOURCE_MAPPING = "AWS::Lambda::EventSourceMapping"
LOG_GROUP = "AWS::Logs::LogGroup"
ALARM = "AWS::CloudWatch::Alarm"


# -----------------------------------------------------------------------------------------------------
# The template, built once per module
# -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    """template.yaml as written (SAM), short-form tags expanded."""
    return load_template(TEMPLATE_PATH)


@pytest.fixture(scope="module")
def cfn(sam: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation template that the SAM transform makes of template.yaml."""
    return translate(sam)


# -----------------------------------------------------------------------------------------------------
# Reading intrinsics and policies
# -----------------------------------------------------------------------------------------------------
def ref(logical_id: str) -> dict[str, str]:
    return {"Ref": logical_id}


def get_att(logical_id: str, attribute: str = "Arn") -> dict[str, list[str]]:
    return {"Fn::GetAtt": [logical_id, attribute]}


STACK_KEY_REF = ref(STACK_KEY)
STACK_KEY_ARN = get_att(STACK_KEY)


def att_target(value: Any, attribute: str = "Arn") -> str | None:
    """The logical id X of ``{"Fn::GetAtt": [X, attribute]}``, else None."""
    if not isinstance(value, dict) or "Fn::GetAtt" not in value:
        return None
    target = value["Fn::GetAtt"]
    if isinstance(target, str):
        target = target.split(".", 1)
    return target[0] if list(target[1:]) == [attribute] else None


def ref_target(value: Any) -> str | None:
    """The logical id X of ``{"Ref": X}``, else None."""
    return value["Ref"] if isinstance(value, dict) and isinstance(value.get("Ref"), str) else None


def sub_string(value: Any) -> str | None:
    """The template string of a plain string or of an ``Fn::Sub`` (either form), else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return None


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def of_type(cfn: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {lid: resource for lid, resource in cfn["Resources"].items() if resource["Type"] == resource_type}


def props(resource: dict[str, Any]) -> dict[str, Any]:
    return resource.get("Properties", {})


def json_property(value: Any) -> Any:
    """A property CloudFormation accepts as an object or as a JSON string (RedrivePolicy, ...)."""
    return json.loads(value) if isinstance(value, str) else value


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return as_list(document.get("Statement", []))


def actions(statement: dict[str, Any]) -> list[Any]:
    return as_list(statement.get("Action", []))


def covers(statement: dict[str, Any], action: str) -> bool:
    """Whether the statement's Action matches the action (IAM wildcards, case-insensitive)."""
    return any(
        isinstance(pattern, str) and fnmatch.fnmatchcase(action.lower(), pattern.lower())
        for pattern in actions(statement)
    )


def service_principals(statement: dict[str, Any]) -> list[Any]:
    principal = statement.get("Principal")
    return as_list(principal.get("Service", [])) if isinstance(principal, dict) else []


def is_public(statement: dict[str, Any]) -> bool:
    principal = statement.get("Principal")
    return principal == "*" or (isinstance(principal, dict) and "*" in as_list(principal.get("AWS", [])))


def condition(statement: dict[str, Any], operator: str, key: str) -> Any:
    return statement.get("Condition", {}).get(operator, {}).get(key)


def condition_keys(statement: dict[str, Any]) -> set[str]:
    return {key for clause in statement.get("Condition", {}).values() for key in clause}


def denies_insecure_transport(statement: dict[str, Any], *required_actions: str) -> bool:
    return (
        statement.get("Effect") == "Deny"
        and is_public(statement)
        and str(condition(statement, "Bool", "aws:SecureTransport")).lower() == "false"
        and all(covers(statement, action) for action in required_actions)
    )


def describe(owner: str, index: int, statement: dict[str, Any]) -> str:
    return f"{owner} statement {statement.get('Sid', index)}"


def policy_statements(cfn: dict[str, Any], policy_type: str, target_property: str, target: str) -> list[dict]:
    """Every statement of every resource policy (queue or topic) that names Ref target."""
    return [
        statement
        for policy in of_type(cfn, policy_type).values()
        if ref(target) in as_list(props(policy).get(target_property, []))
        for statement in statements(props(policy)["PolicyDocument"])
    ]


def source_arns(statement: dict[str, Any]) -> list[Any]:
    """The ArnEquals aws:SourceArn values of a statement (one value or a list)."""
    value = condition(statement, "ArnEquals", "aws:SourceArn")
    return [] if value is None else value if isinstance(value, list) else [value]


def admits_topic(statement: dict[str, Any], topic_arn: Any) -> bool:
    """An Allow for SNS to send to a queue, on behalf of the given topic (among the stack's own)."""
    return (
        statement.get("Effect") == "Allow"
        and "sns.amazonaws.com" in service_principals(statement)
        and covers(statement, "sqs:SendMessage")
        and topic_arn in source_arns(statement)
    )


# -----------------------------------------------------------------------------------------------------
# Roles derived from the template
# -----------------------------------------------------------------------------------------------------
def source_queues(cfn: dict[str, Any]) -> dict[str, str | None]:
    """Each queue with a RedrivePolicy, and the queue its deadLetterTargetArn names."""
    return {
        lid: att_target(json_property(props(queue)["RedrivePolicy"]).get("deadLetterTargetArn"))
        for lid, queue in of_type(cfn, QUEUE).items()
        if "RedrivePolicy" in props(queue)
    }


def _dead_letter_targets(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "deadLetterTargetArn":
                yield value
            elif key == "DeadLetterConfig" and isinstance(value, dict):
                yield value.get("Arn", value.get("TargetArn"))
            yield from _dead_letter_targets(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dead_letter_targets(item)


def dead_letter_queues(cfn: dict[str, Any]) -> set[str]:
    """Queues some redrive policy (queue or subscription) or DeadLetterConfig (bus, rule) points at."""
    queues = of_type(cfn, QUEUE)
    targets = {att_target(target) for target in _dead_letter_targets(cfn["Resources"])}
    return {target for target in targets if target in queues}


def function_roles(cfn: dict[str, Any]) -> set[str]:
    return {att_target(props(function).get("Role")) for function in of_type(cfn, FUNCTION).values()} - {None}


def alarms_on(cfn: dict[str, Any], namespace: str, metric: str, dimension: str, value: Any) -> list[dict]:
    """The alarms on one metric of one resource (Dimensions naming it)."""
    return [
        props(alarm)
        for alarm in of_type(cfn, ALARM).values()
        if props(alarm).get("Namespace") == namespace
        and props(alarm).get("MetricName") == metric
        and {"Name": dimension, "Value": value} in props(alarm).get("Dimensions", [])
    ]


def api_operations(cfn: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(api id, "METHOD /path", operation) of every RestApi's OpenAPI body."""
    for api_id, api in of_type(cfn, "AWS::ApiGateway::RestApi").items():
        for path, path_item in props(api).get("Body", {}).get("paths", {}).items():
            for method, operation in path_item.items():
                if method.lower() in HTTP_METHODS:
                    yield api_id, f"{method.upper()} {path}", operation


# =====================================================================================================
# 1. The stack key
# =====================================================================================================
def key_policy_statements(cfn: dict[str, Any]) -> list[dict[str, Any]]:
    return statements(props(cfn["Resources"][STACK_KEY])["KeyPolicy"])


def test_every_kms_key_has_rotation_enabled(cfn):
    keys = of_type(cfn, "AWS::KMS::Key")
    assert STACK_KEY in keys
    assert [lid for lid, key in keys.items() if props(key).get("EnableKeyRotation") is not True] == []


@pytest.mark.parametrize("service", ["sns.amazonaws.com", "events.amazonaws.com", "cloudwatch.amazonaws.com"])
def test_the_stack_key_lets_delivering_services_generate_data_keys_and_decrypt(cfn, service):
    granted = {
        action
        for statement in key_policy_statements(cfn)
        if statement.get("Effect") == "Allow" and service in service_principals(statement)
        for action in actions(statement)
    }
    assert {"kms:GenerateDataKey*", "kms:Decrypt"} <= granted


def test_the_stack_key_lets_cloudwatch_logs_encrypt_only_this_accounts_log_groups(cfn):
    logs = {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}
    grants = [
        statement
        for statement in key_policy_statements(cfn)
        if statement.get("Effect") == "Allow" and logs in service_principals(statement)
    ]
    assert len(grants) == 1, "expected one key policy statement for the regional CloudWatch Logs principal"
    grant = grants[0]
    assert {"kms:Encrypt*", "kms:Decrypt*", "kms:GenerateDataKey*"} <= set(actions(grant))
    context_key = "kms:EncryptionContext:aws:logs:arn"
    log_groups = condition(grant, "ArnLike", context_key) or condition(grant, "ArnEquals", context_key)
    assert (sub_string(log_groups) or "").startswith(
        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
    ), f"the logs grant must be conditioned on {context_key} naming this account's log groups"


def test_every_service_statement_of_the_stack_key_policy_has_a_condition(cfn):
    service_statements = [s for s in key_policy_statements(cfn) if service_principals(s)]
    assert len(service_statements) >= 4
    assert [s.get("Sid") for s in service_statements if not s.get("Condition")] == []


def test_the_stack_key_policy_grants_nothing_to_everyone(cfn):
    assert [
        s.get("Sid") for s in key_policy_statements(cfn) if s.get("Effect") == "Allow" and is_public(s)
    ] == []


# =====================================================================================================
# 2. Queues: encryption and redrive
# =====================================================================================================
def test_every_queue_is_encrypted_with_the_stack_key(cfn):
    queues = of_type(cfn, QUEUE)
    assert queues
    keys = {lid: props(queue).get("KmsMasterKeyId") for lid, queue in queues.items()}
    assert {lid: key for lid, key in keys.items() if key != STACK_KEY_REF} == {}


def test_every_queue_is_a_redriving_work_queue_or_a_dead_letter_queue(cfn):
    unaccounted = set(of_type(cfn, QUEUE)) - set(source_queues(cfn)) - dead_letter_queues(cfn)
    assert unaccounted == set(), "a work queue without a RedrivePolicy retries a poison message forever"


def test_every_source_queue_redrives_after_five_receives_to_a_queue_that_keeps_messages_longer(cfn):
    queues = of_type(cfn, QUEUE)
    sources = source_queues(cfn)
    assert sources
    problems = []
    for source, dlq in sources.items():
        source_props = props(queues[source])
        policy = json_property(source_props["RedrivePolicy"])
        if dlq not in queues:
            problems.append(
                f"{source}: deadLetterTargetArn {policy.get('deadLetterTargetArn')} is no queue here"
            )
            continue
        if int(policy.get("maxReceiveCount", 0)) < 5:
            problems.append(f"{source}: maxReceiveCount {policy.get('maxReceiveCount')} < 5")
        kept = source_props.get("MessageRetentionPeriod", SQS_DEFAULT_RETENTION_SECONDS)
        kept_dead = props(queues[dlq]).get("MessageRetentionPeriod", SQS_DEFAULT_RETENTION_SECONDS)
        if not int(kept_dead) > int(kept):
            problems.append(
                f"{source}: its DLQ {dlq} keeps messages {kept_dead}s, not longer than its {kept}s"
            )
    assert not problems, "\n".join(problems)


def test_every_redrive_dead_letter_queue_accepts_redrives_only_from_its_source_queues(cfn):
    queues = of_type(cfn, QUEUE)
    sources_by_dlq: dict[str, list[str]] = defaultdict(list)
    for source, dlq in source_queues(cfn).items():
        if dlq in queues:
            sources_by_dlq[dlq].append(source)
    assert sources_by_dlq
    problems = []
    for dlq, sources in sources_by_dlq.items():
        allow = json_property(props(queues[dlq]).get("RedriveAllowPolicy"))
        if not allow:
            problems.append(f"{dlq}: no RedriveAllowPolicy")
            continue
        if allow.get("redrivePermission") != "byQueue":
            problems.append(f"{dlq}: redrivePermission is {allow.get('redrivePermission')!r}, not 'byQueue'")
        arns = [sub_string(arn) for arn in as_list(allow.get("sourceQueueArns", []))]
        if len(arns) != len(sources):
            problems.append(f"{dlq}: sourceQueueArns {arns} do not name exactly its sources {sources}")
        for source in sources:
            name = sub_string(props(queues[source]).get("QueueName"))
            if name is None:
                problems.append(f"{source}: no QueueName, so {dlq}'s RedriveAllowPolicy cannot name it")
            elif not any(arn and arn.startswith("arn:") and arn.endswith(f":{name}") for arn in arns):
                problems.append(f"{dlq}: no sourceQueueArns entry ends with {source}'s name {name!r}: {arns}")
    assert not problems, "\n".join(problems)


# =====================================================================================================
# 3. Queue policies
# =====================================================================================================
def test_every_queue_has_a_policy_that_denies_access_without_tls(cfn):
    queues = of_type(cfn, QUEUE)
    assert queues
    problems = []
    for lid in queues:
        statements_ = policy_statements(cfn, QUEUE_POLICY, "Queues", lid)
        if not statements_:
            problems.append(f"{lid}: no AWS::SQS::QueuePolicy names it")
        elif not any(
            denies_insecure_transport(s, "sqs:SendMessage", "sqs:ReceiveMessage") for s in statements_
        ):
            problems.append(
                f"{lid}: no statement denies every sqs action to everyone when aws:SecureTransport false"
            )
    assert not problems, "\n".join(problems)


def test_queue_policies_admit_services_only_on_behalf_of_carebus_sources(cfn):
    policies = of_type(cfn, QUEUE_POLICY)
    assert policies
    problems = []
    for lid, policy in policies.items():
        for index, statement in enumerate(statements(props(policy)["PolicyDocument"])):
            if statement.get("Effect") != "Allow":
                continue
            where = describe(lid, index, statement)
            services = service_principals(statement)
            if is_public(statement):
                problems.append(f"{where}: allows Principal '*'")
            stack_topics = [ref(topic) for topic in of_type(cfn, "AWS::SNS::Topic")]
            arns = source_arns(statement)
            if "sns.amazonaws.com" in services and (not arns or any(arn not in stack_topics for arn in arns)):
                problems.append(f"{where}: admits SNS without ArnEquals aws:SourceArn = this stack's topics")
            if "events.amazonaws.com" in services and "aws:SourceArn" not in condition_keys(statement):
                problems.append(f"{where}: admits EventBridge without an aws:SourceArn condition")
            if services and not condition_keys(statement) & {"aws:SourceArn", "aws:SourceAccount"}:
                problems.append(
                    f"{where}: admits {services} without an aws:SourceArn/aws:SourceAccount condition"
                )
    assert not problems, "\n".join(problems)


# =====================================================================================================
# 4. Event source mappings on queues
# =====================================================================================================
def sqs_event_source_mappings(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    queues = of_type(cfn, QUEUE)
    return {
        lid: props(mapping)
        for lid, mapping in of_type(cfn, EVENT_SOURCE_MAPPING).items()
        if att_target(props(mapping).get("EventSourceArn")) in queues
    }


def test_every_queue_event_source_mapping_reports_batch_item_failures_and_caps_concurrency(cfn):
    mappings = sqs_event_source_mappings(cfn)
    assert mappings
    problems = []
    for lid, mapping in mappings.items():
        if "ReportBatchItemFailures" not in mapping.get("FunctionResponseTypes", []):
            problems.append(f"{lid}: FunctionResponseTypes lacks ReportBatchItemFailures")
        concurrency = mapping.get("ScalingConfig", {}).get("MaximumConcurrency")
        if not isinstance(concurrency, int) or concurrency < 2:
            problems.append(f"{lid}: ScalingConfig.MaximumConcurrency is {concurrency!r}")
    assert not problems, "\n".join(problems)


def test_every_consumed_queue_hides_messages_for_six_function_timeouts_plus_the_batching_window(cfn):
    mappings = sqs_event_source_mappings(cfn)
    assert mappings
    problems = []
    for lid, mapping in mappings.items():
        queue_id = att_target(mapping["EventSourceArn"])
        function_id = ref_target(mapping.get("FunctionName"))
        function = cfn["Resources"].get(function_id or "")
        if function is None or function["Type"] != FUNCTION:
            problems.append(f"{lid}: FunctionName {mapping.get('FunctionName')} is no function of this stack")
            continue
        timeout = props(function).get("Timeout", LAMBDA_DEFAULT_TIMEOUT)
        window = mapping.get("MaximumBatchingWindowInSeconds", 0)
        needed = VISIBILITY_TIMEOUT_FACTOR * timeout + window
        visibility = props(cfn["Resources"][queue_id]).get(
            "VisibilityTimeout", SQS_DEFAULT_VISIBILITY_TIMEOUT
        )
        if visibility < needed:
            problems.append(
                f"{queue_id}: VisibilityTimeout {visibility} < {VISIBILITY_TIMEOUT_FACTOR} x {function_id} "
                f"Timeout {timeout} + batching window {window} = {needed}"
            )
    assert not problems, "\n".join(problems)


# =====================================================================================================
# 5. Topics, the encounter topic's policy, subscriptions
# =====================================================================================================
def test_every_topic_is_encrypted_with_the_stack_key(cfn):
    topics = of_type(cfn, TOPIC)
    assert ENCOUNTER_TOPIC in topics
    keys = {lid: props(topic).get("KmsMasterKeyId") for lid, topic in topics.items()}
    assert {lid: key for lid, key in keys.items() if key != STACK_KEY_REF} == {}


def test_every_topic_has_a_policy_that_denies_publishing_and_subscribing_without_tls(cfn):
    topics = of_type(cfn, TOPIC)
    assert topics
    unprotected = [
        lid
        for lid in topics
        if not any(
            denies_insecure_transport(s, "sns:Publish", "sns:Subscribe")
            for s in policy_statements(cfn, TOPIC_POLICY, "Topics", lid)
        )
    ]
    assert unprotected == []


def test_only_the_intake_function_role_may_publish_to_the_encounter_topic(cfn):
    publisher = get_att(PUBLISHER_ROLE)
    topic_statements = policy_statements(cfn, TOPIC_POLICY, "Topics", ENCOUNTER_TOPIC)
    allows = [s for s in topic_statements if s.get("Effect") == "Allow"]
    assert [s.get("Sid") for s in allows if is_public(s)] == []
    publish_allows = [s for s in allows if covers(s, "sns:Publish")]
    assert [s.get("Principal") for s in publish_allows] == [{"AWS": publisher}]
    assert any(
        s.get("Effect") == "Deny"
        and is_public(s)
        and covers(s, "sns:Publish")
        and condition(s, "ArnNotEquals", "aws:PrincipalArn") == publisher
        for s in topic_statements
    ), f"no Deny of sns:Publish to everyone whose aws:PrincipalArn is not {PUBLISHER_ROLE}"
    assert any(denies_insecure_transport(s, "sns:Publish") for s in topic_statements)
    # The IAM side agrees: no other role is given sns:Publish on the topic.
    publishing_roles = {
        lid
        for lid, role in of_type(cfn, "AWS::IAM::Role").items()
        for policy in props(role).get("Policies", [])
        for statement in statements(policy["PolicyDocument"])
        if statement.get("Effect") == "Allow"
        and covers(statement, "sns:Publish")
        and ref(ENCOUNTER_TOPIC) in as_list(statement.get("Resource"))
    }
    assert publishing_roles == {PUBLISHER_ROLE}


def test_every_subscription_delivers_raw_filtered_messages_and_dead_letters_the_undeliverable(cfn):
    subscriptions = of_type(cfn, SUBSCRIPTION)
    assert subscriptions
    queues = of_type(cfn, QUEUE)
    problems = []
    for lid, subscription in subscriptions.items():
        sub = props(subscription)
        # Raw delivery is an SQS (and HTTP) subscription's setting; e-mail always gets the JSON envelope.
        if sub.get("Protocol") == "sqs" and str(sub.get("RawMessageDelivery")).lower() != "true":
            problems.append(f"{lid}: RawMessageDelivery is {sub.get('RawMessageDelivery')!r}")
        if not sub.get("FilterPolicy"):
            problems.append(f"{lid}: no FilterPolicy")
        dead_letters = json_property(sub.get("RedrivePolicy") or {}).get("deadLetterTargetArn")
        if att_target(dead_letters) not in queues:
            problems.append(f"{lid}: RedrivePolicy.deadLetterTargetArn {dead_letters!r} is no queue here")
    assert not problems, "\n".join(problems)


def test_every_subscription_queue_and_its_dead_letter_queue_admit_the_subscription_topic(cfn):
    subscriptions = {
        lid: props(s) for lid, s in of_type(cfn, SUBSCRIPTION).items() if props(s)["Protocol"] == "sqs"
    }
    assert subscriptions
    problems = []
    for lid, sub in subscriptions.items():
        dead_letters = json_property(sub.get("RedrivePolicy") or {}).get("deadLetterTargetArn")
        for role, queue_id in (("endpoint", att_target(sub["Endpoint"])), ("DLQ", att_target(dead_letters))):
            if queue_id is None:
                problems.append(f"{lid}: its {role} is not a queue of this stack")
            elif not any(
                admits_topic(s, sub["TopicArn"])
                for s in policy_statements(cfn, QUEUE_POLICY, "Queues", queue_id)
            ):
                problems.append(f"{lid}: {role} {queue_id}'s policy does not admit {sub['TopicArn']}")
    assert not problems, "\n".join(problems)


# =====================================================================================================
# 6. SNS data protection, off unless asked for
# =====================================================================================================
def test_the_encounter_topic_data_protection_policy_is_attached_only_when_enabled(cfn):
    policy = props(cfn["Resources"][ENCOUNTER_TOPIC])["DataProtectionPolicy"]
    assert list(policy) == ["Fn::If"]
    condition_name, when_enabled, when_disabled = policy["Fn::If"]
    assert condition_name == "SnsDataProtectionEnabled"
    assert when_disabled == ref("AWS::NoValue")
    assert any("Deny" in s.get("Operation", {}) for s in statements(when_enabled))
    assert cfn["Conditions"]["SnsDataProtectionEnabled"] == {
        "Fn::Equals": [ref("EnableSnsDataProtection"), "true"]
    }
    assert cfn["Parameters"]["EnableSnsDataProtection"]["Default"] == "false"


# =====================================================================================================
# 7. Tables
# =====================================================================================================
def test_every_table_is_encrypted_with_the_stack_key_and_recoverable_to_a_point_in_time(cfn):
    tables = of_type(cfn, "AWS::DynamoDB::Table")
    assert tables
    expected_sse = {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": STACK_KEY_ARN}
    problems = []
    for lid, table in tables.items():
        if props(table).get("SSESpecification") != expected_sse:
            problems.append(f"{lid}: SSESpecification {props(table).get('SSESpecification')}")
        recovery = props(table).get("PointInTimeRecoverySpecification", {})
        if recovery.get("PointInTimeRecoveryEnabled") is not True:
            problems.append(f"{lid}: point-in-time recovery is off")
    assert not problems, "\n".join(problems)


def test_the_idempotency_table_expires_records_on_the_powertools_expiration_attribute(cfn):
    defaults = inspect.signature(DynamoDBPersistenceLayer.__init__).parameters
    key_attribute, expiry_attribute = defaults["key_attr"].default, defaults["expiry_attr"].default
    assert expiry_attribute == "expiration"
    idempotency_tables = {
        ref_target(props(function).get("Environment", {}).get("Variables", {}).get("IDEMPOTENCY_TABLE"))
        for function in of_type(cfn, FUNCTION).values()
    } - {None}
    assert idempotency_tables
    for lid in idempotency_tables:
        table = props(cfn["Resources"][lid])
        assert table.get("TimeToLiveSpecification") == {"AttributeName": expiry_attribute, "Enabled": True}, (
            lid
        )
        assert table["KeySchema"] == [{"AttributeName": key_attribute, "KeyType": "HASH"}], lid


# =====================================================================================================
# 8. Logs and function settings
# =====================================================================================================
def test_every_log_group_is_encrypted_with_the_stack_key_and_expires(cfn):
    log_groups = of_type(cfn, LOG_GROUP)
    assert log_groups
    problems = []
    for lid, log_group in log_groups.items():
        if props(log_group).get("KmsKeyId") != STACK_KEY_ARN:
            problems.append(f"{lid}: KmsKeyId {props(log_group).get('KmsKeyId')}")
        if props(log_group).get("RetentionInDays") is None:
            problems.append(f"{lid}: no RetentionInDays (kept forever)")
    assert not problems, "\n".join(problems)


def test_every_function_has_a_log_group_named_after_it(cfn):
    functions = of_type(cfn, FUNCTION)
    assert functions
    names = [props(log_group).get("LogGroupName") for log_group in of_type(cfn, LOG_GROUP).values()]
    missing = [lid for lid in functions if {"Fn::Sub": f"/aws/lambda/${{{lid}}}"} not in names]
    assert missing == [], "these functions would log to a group Lambda creates: unencrypted, kept forever"


def test_every_function_logs_json_traces_actively_and_runs_python313_on_arm64(cfn):
    functions = of_type(cfn, FUNCTION)
    assert functions
    expected = {
        "LogFormat": "JSON",
        "TracingMode": "Active",
        "Architectures": ["arm64"],
        "Runtime": "python3.13",
    }
    problems = {}
    for lid, function in functions.items():
        function_props = props(function)
        actual = {
            "LogFormat": function_props.get("LoggingConfig", {}).get("LogFormat"),
            "TracingMode": function_props.get("TracingConfig", {}).get("Mode"),
            "Architectures": function_props.get("Architectures"),
            "Runtime": function_props.get("Runtime"),
        }
        if actual != expected:
            problems[lid] = actual
    assert problems == {}


# =====================================================================================================
# 9. IAM
# =====================================================================================================
def inline_statements(cfn: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for lid, role in of_type(cfn, "AWS::IAM::Role").items():
        for policy in props(role).get("Policies", []):
            for index, statement in enumerate(statements(policy["PolicyDocument"])):
                yield describe(f"{lid}/{policy.get('PolicyName')}", index, statement), statement


def test_role_inline_policies_grant_no_wildcard_actions(cfn):
    found = list(inline_statements(cfn))
    assert found
    problems = []
    for where, statement in found:
        if statement.get("Effect") == "Allow" and "NotAction" in statement:
            problems.append(f"{where}: Allow with NotAction")
        wildcards = [a for a in actions(statement) if a == "*" or re.fullmatch(r"[\w-]+:\*", str(a))]
        if wildcards:
            problems.append(f"{where}: {wildcards}")
    assert not problems, "\n".join(problems)


def test_role_inline_policies_name_the_resources_of_data_and_messaging_actions(cfn):
    found = list(inline_statements(cfn))
    assert found
    problems = []
    for where, statement in found:
        services = {str(action).split(":", 1)[0].lower() for action in actions(statement)}
        scoped = services & RESOURCE_SCOPED_SERVICES
        if scoped and ("*" in as_list(statement.get("Resource", [])) or "NotResource" in statement):
            problems.append(f"{where}: {sorted(scoped)} actions on Resource '*'")
    assert not problems, "\n".join(problems)


def test_function_roles_attach_no_managed_policy_beyond_those_sam_adds(cfn):
    roles = function_roles(cfn)
    assert roles
    extra = {
        lid: sorted(
            set(props(cfn["Resources"][lid]).get("ManagedPolicyArns", [])) - SAM_MANAGED_POLICIES, key=str
        )
        for lid in roles
    }
    assert {lid: arns for lid, arns in extra.items() if arns} == {}


# =====================================================================================================
# 10. API
# =====================================================================================================
API_KEY_REQUIREMENT = "api_key"  # what SAM names the scheme of Auth.ApiKeyRequired


def test_every_api_operation_requires_the_cognito_authorizer(cfn):
    operations = list(api_operations(cfn))
    assert operations
    unprotected = [
        f"{api_id} {name}"
        for api_id, name, operation in operations
        # Alternatives in `security` are ORed in OpenAPI: each must require the authorizer (an empty one
        # means none). API Gateway reads SAM's `api_key` entry as the method's apiKeyRequired flag, applied
        # on top of the authorizer, never instead of it (the offline gateway does the same).
        if not operation.get("security")
        or not all(
            "CognitoAuthorizer" in requirement
            for requirement in operation["security"]
            if requirement != {API_KEY_REQUIREMENT: []}
        )
        or all(requirement == {API_KEY_REQUIREMENT: []} for requirement in operation["security"])
    ]
    assert unprotected == []


def test_every_partner_operation_needs_the_scope_and_an_api_key(cfn):
    body = props(cfn["Resources"]["PartnerApi"])["Body"]
    operations = [
        operation
        for item in body["paths"].values()
        for method, operation in item.items()
        if method != "parameters"
    ]
    assert operations
    for operation in operations:
        assert {"CognitoAuthorizer": ["carebus-partner/claims.read"]} in operation["security"]
        assert {API_KEY_REQUIREMENT: []} in operation["security"]
    scheme = body["components"]["securitySchemes"][API_KEY_REQUIREMENT]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "x-api-key")


def test_every_api_operation_with_a_body_validates_it_against_a_model(cfn):
    problems = []
    checked = 0
    for api_id, name, operation in api_operations(cfn):
        if name.split(" ", 1)[0].lower() not in BODY_METHODS:
            continue
        checked += 1
        body = props(cfn["Resources"][api_id])["Body"]
        validator = operation.get("x-amazon-apigateway-request-validator")
        validators = body.get("x-amazon-apigateway-request-validators", {})
        if validators.get(validator, {}).get("validateRequestBody") is not True:
            problems.append(f"{name}: request validator {validator!r} does not validate the body")
        request_body = operation.get("requestBody", {})
        schemas = [content.get("schema", {}) for content in request_body.get("content", {}).values()]
        schema_names = body.get("components", {}).get("schemas", {})
        if not request_body.get("required") or not schemas:
            problems.append(f"{name}: no required requestBody")
        for schema in schemas:
            reference = schema.get("$ref", "")
            if (
                not reference.startswith("#/components/schemas/")
                or reference.rsplit("/", 1)[1] not in schema_names
            ):
                problems.append(f"{name}: requestBody schema {schema} refs no component schema")
    assert checked
    assert not problems, "\n".join(problems)


def test_the_cognito_authorizer_trusts_the_stack_user_pool(cfn):
    apis = of_type(cfn, "AWS::ApiGateway::RestApi")
    assert apis
    for api in apis.values():
        scheme = props(api)["Body"]["components"]["securitySchemes"]["CognitoAuthorizer"]
        authorizer = scheme["x-amazon-apigateway-authorizer"]
        assert authorizer["type"] == "cognito_user_pools"
        assert authorizer["providerARNs"] == [get_att("UserPool")]


@pytest.mark.parametrize(
    ("response_type", "status"),
    [("BAD_REQUEST_BODY", "400"), ("UNAUTHORIZED", "401"), ("ACCESS_DENIED", "403")],
)
def test_api_gateway_refusals_answer_problem_json(cfn, response_type, status):
    apis = of_type(cfn, "AWS::ApiGateway::RestApi")
    assert apis
    for api in apis.values():
        response = props(api)["Body"]["x-amazon-apigateway-gateway-responses"][response_type]
        assert response["statusCode"] == status
        assert (
            response["responseParameters"]["gatewayresponse.header.Content-Type"]
            == "'application/problem+json'"
        )
        assert '"status":' + status in response["responseTemplates"]["application/json"]


def test_every_api_stage_traces_logs_access_and_throttles_without_logging_bodies(cfn):
    stages = of_type(cfn, "AWS::ApiGateway::Stage")
    assert stages
    for lid, stage in stages.items():
        stage_props = props(stage)
        assert stage_props.get("TracingEnabled") is True, lid
        assert stage_props.get("AccessLogSetting", {}).get("DestinationArn") in (
            get_att("ApiAccessLogGroup"),
            get_att("PartnerApiAccessLogGroup"),
        ), lid
        settings = stage_props.get("MethodSettings", [])
        assert [s for s in settings if s.get("DataTraceEnabled") is not False] == [], lid
        every_method = [s for s in settings if s.get("ResourcePath") == "/*" and s.get("HttpMethod") == "*"]
        assert len(every_method) == 1, f"{lid}: no MethodSettings entry for every resource and method"
        assert every_method[0].get("ThrottlingRateLimit", 0) > 0, lid
        assert every_method[0].get("ThrottlingBurstLimit", 0) > 0, lid


# =====================================================================================================
# 11. EventBridge
# =====================================================================================================
def is_stack_key(value: Any) -> bool:
    return value in (STACK_KEY_REF, STACK_KEY_ARN)


def test_every_event_bus_is_encrypted_with_the_stack_key_and_dead_letters_undeliverable_events(cfn):
    buses = of_type(cfn, "AWS::Events::EventBus")
    assert buses
    queues = of_type(cfn, QUEUE)
    for lid, bus in buses.items():
        assert is_stack_key(props(bus).get("KmsKeyIdentifier")), lid
        assert att_target(props(bus).get("DeadLetterConfig", {}).get("Arn")) in queues, lid


def test_every_event_archive_is_encrypted_with_the_stack_key_and_has_a_pattern(cfn):
    archives = of_type(cfn, "AWS::Events::Archive")
    assert archives
    buses = of_type(cfn, "AWS::Events::EventBus")
    for lid, archive in archives.items():
        assert is_stack_key(props(archive).get("KmsKeyIdentifier")), lid
        assert props(archive).get("EventPattern"), lid
        assert att_target(props(archive).get("SourceArn")) in buses, lid


def test_every_rule_target_retries_and_dead_letters_to_a_stack_queue(cfn):
    rules = of_type(cfn, "AWS::Events::Rule")
    assert rules
    queues = of_type(cfn, QUEUE)
    problems = []
    for lid, rule in rules.items():
        for target in props(rule).get("Targets", []):
            where = f"{lid} target {target.get('Id')}"
            retry = target.get("RetryPolicy", {})
            if not {"MaximumRetryAttempts", "MaximumEventAgeInSeconds"} <= set(retry):
                problems.append(f"{where}: RetryPolicy {retry}")
            if att_target(target.get("DeadLetterConfig", {}).get("Arn")) not in queues:
                problems.append(f"{where}: DeadLetterConfig {target.get('DeadLetterConfig')}")
    assert not problems, "\n".join(problems)


def log_group_of(arn: Any, log_groups: dict[str, Any]) -> str | None:
    """The log group an ARN names: GetAtt X.Arn, or an Fn::Sub building the ARN from ${X} or ${X.Arn}."""
    if att_target(arn) in log_groups:
        return att_target(arn)
    match = re.fullmatch(
        r"(?:arn:\$\{AWS::Partition\}:logs:\$\{AWS::Region\}:\$\{AWS::AccountId\}:log-group:\$\{(\w+)\}(?::\*)?"
        r"|\$\{(\w+)\.Arn\})",
        sub_string(arn) or "",
    )
    found = match and (match[1] or match[2])
    return found if found in log_groups else None


def test_only_the_audit_rule_may_write_to_the_audit_log_group(cfn):
    audit_log_group = "AuditLogGroup"
    log_groups = of_type(cfn, LOG_GROUP)
    auditing_rules = [
        lid
        for lid, rule in of_type(cfn, "AWS::Events::Rule").items()
        if any(
            log_group_of(target.get("Arn"), log_groups) == audit_log_group
            for target in props(rule)["Targets"]
        )
    ]
    assert len(auditing_rules) == 1, f"rules targeting {audit_log_group}: {auditing_rules}"
    (audit_rule,) = auditing_rules
    # The policy document is an Fn::Sub of JSON; its ${...} references stay unresolved, inside strings.
    documents = [
        json.loads(sub_string(props(policy)["PolicyDocument"]) or "{}")
        for policy in of_type(cfn, "AWS::Logs::ResourcePolicy").values()
    ]
    grants = [
        statement
        for document in documents
        for statement in statements(document)
        if statement.get("Effect") == "Allow"
        and any(
            log_group_of(resource, log_groups) == audit_log_group
            for resource in as_list(statement["Resource"])
        )
    ]
    assert grants, f"no logs resource policy lets anyone write to {audit_log_group}"
    for grant in grants:
        assert set(grant["Principal"]) == {"Service"}, grant.get("Sid")
        services = set(service_principals(grant))
        assert "events.amazonaws.com" in services, grant.get("Sid")
        assert services <= {"events.amazonaws.com", "delivery.logs.amazonaws.com"}, grant.get("Sid")
        assert set(actions(grant)) <= {"logs:CreateLogStream", "logs:PutLogEvents"}, grant.get("Sid")
        source = condition(grant, "ArnEquals", "aws:SourceArn") or condition(
            grant, "ArnLike", "aws:SourceArn"
        )
        assert source == f"${{{audit_rule}.Arn}}", f"{grant.get('Sid')}: aws:SourceArn is {source!r}"


# =====================================================================================================
# 12. Alarms
# =====================================================================================================
def test_every_dead_letter_queue_alarms_on_its_first_message(cfn):
    dlqs = dead_letter_queues(cfn)
    assert dlqs
    silent = [
        lid
        for lid in sorted(dlqs)
        if not any(
            alarm.get("Threshold") == 0 and alarm.get("ComparisonOperator") == "GreaterThanThreshold"
            for alarm in alarms_on(
                cfn, "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", get_att(lid, "QueueName")
            )
        )
    ]
    assert silent == []


def test_every_source_queue_alarms_on_the_age_of_its_oldest_message(cfn):
    sources = source_queues(cfn)
    assert sources
    silent = [
        lid
        for lid in sorted(sources)
        if not any(
            alarm.get("ComparisonOperator", "").startswith("GreaterThan")
            for alarm in alarms_on(
                cfn, "AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", get_att(lid, "QueueName")
            )
        )
    ]
    assert silent == []


def test_every_function_alarms_on_errors(cfn):
    functions = of_type(cfn, FUNCTION)
    assert functions
    silent = [
        lid
        for lid in sorted(functions)
        if not any(
            alarm.get("ComparisonOperator", "").startswith("GreaterThan")
            for alarm in alarms_on(cfn, "AWS/Lambda", "Errors", "FunctionName", ref(lid))
        )
    ]
    assert silent == []


def test_every_api_stage_alarms_on_server_errors(cfn):
    stages = of_type(cfn, "AWS::ApiGateway::Stage")
    assert stages
    silent = []
    for lid, stage in stages.items():
        api_name = props(cfn["Resources"][ref_target(props(stage)["RestApiId"])])["Name"]
        if not any(
            {"Name": "Stage", "Value": props(stage)["StageName"]} in alarm["Dimensions"]
            for alarm in alarms_on(cfn, "AWS/ApiGateway", "5XXError", "ApiName", api_name)
        ):
            silent.append(lid)
    assert silent == []


def test_every_alarm_notifies_the_alarm_topic(cfn):
    alarms = of_type(cfn, ALARM)
    assert alarms
    targets = {lid: props(alarm).get("AlarmActions") for lid, alarm in alarms.items()}
    assert {lid: actions_ for lid, actions_ in targets.items() if actions_ != [ref(ALARM_TOPIC)]} == {}


def test_the_alarm_topic_is_encrypted_and_admits_only_this_accounts_cloudwatch(cfn):
    assert props(cfn["Resources"][ALARM_TOPIC]).get("KmsMasterKeyId") == STACK_KEY_REF
    allows = [
        s for s in policy_statements(cfn, TOPIC_POLICY, "Topics", ALARM_TOPIC) if s.get("Effect") == "Allow"
    ]
    assert allows
    for statement in allows:
        assert service_principals(statement) == ["cloudwatch.amazonaws.com"], statement.get("Sid")
        assert condition(statement, "StringEquals", "aws:SourceAccount") == ref("AWS::AccountId"), (
            statement.get("Sid")
        )
    assert any(covers(statement, "sns:Publish") for statement in allows)


# =====================================================================================================
# 13. Powertools: layer, pin and venv agree
# =====================================================================================================
def powertools_pins(requirements: list[str]) -> set[str]:
    pins = set()
    for line in requirements:
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) == "aws-lambda-powertools":
            specifiers = list(requirement.specifier)
            assert [s.operator for s in specifiers] == ["=="], f"{line!r} is not pinned with =="
            pins.add(specifiers[0].version)
    return pins


def test_the_powertools_layer_ships_the_release_that_pyproject_pins_and_the_venv_runs(sam):
    function_globals = sam["Globals"]["Function"]
    python = function_globals["Runtime"].replace(".", "")
    (architecture,) = function_globals["Architectures"]
    # The public layer unless PowertoolsLayerArn names another: Fn::If [condition, public, override].
    layer_arns = [
        sub_string(layer.get("Fn::If", [None, layer])[1]) or "" for layer in function_globals["Layers"]
    ]
    powertools = [arn for arn in layer_arns if "AWSLambdaPowertoolsPython" in arn]
    assert len(powertools) == 1, f"one Powertools layer expected in Globals: {layer_arns}"
    match = re.fullmatch(
        rf"arn:\$\{{AWS::Partition\}}:lambda:\$\{{AWS::Region\}}:{POWERTOOLS_LAYER_ACCOUNT}:layer:"
        rf"AWSLambdaPowertoolsPythonV3-{python}-{architecture}:(?P<version>\d+)",
        powertools[0],
    )
    assert match, f"{powertools[0]} is not Powertools' public V3 layer for {python} on {architecture}"
    layer_version = int(match["version"])

    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    runtime_pins = powertools_pins(project["dependencies"])
    dev_pins = powertools_pins(project["optional-dependencies"]["dev"])
    assert len(runtime_pins) == 1
    assert dev_pins == runtime_pins
    (pinned,) = runtime_pins
    assert pinned == INSTALLED_POWERTOOLS_VERSION
    assert pinned in POWERTOOLS_LAYER_VERSIONS, (
        f"add the public layer version of Powertools {pinned} to the table"
    )
    assert POWERTOOLS_LAYER_VERSIONS[pinned] == layer_version


# =====================================================================================================
# 14. What the functions ship
# =====================================================================================================
def requirement_files() -> list[Path]:
    return [
        *sorted(PROJECT_ROOT.glob("functions/*/requirements.txt")),
        PROJECT_ROOT / "src" / "requirements.txt",
    ]


def test_function_and_layer_requirements_install_nothing():
    files = requirement_files()
    assert len(files) > 1
    assert all(path.is_file() for path in files)
    installing = {
        str(path.relative_to(PROJECT_ROOT)): lines
        for path in files
        if (
            lines := [
                ln.strip()
                for ln in path.read_text().splitlines()
                if ln.strip() and not ln.strip().startswith("#")
            ]
        )
    }
    assert installing == {}, "the runtime, the Powertools layer and DomainLayer provide everything"


def test_no_code_directory_ships_boto3_or_botocore(sam):
    directories = {
        *code_locations(sam).values(),
        *(p for p in (PROJECT_ROOT / "functions").iterdir() if p.is_dir()),
    }
    assert any(d.parent.name == "functions" for d in directories)
    vendored = sorted(
        str(path.relative_to(PROJECT_ROOT))
        for directory in directories
        for path in directory.rglob("*")
        if re.fullmatch(r"(boto3|botocore)([-_.].*)?", path.name, flags=re.IGNORECASE)
    )
    assert vendored == [], "boto3 comes with the Lambda runtime; a vendored copy shadows it"


# =====================================================================================================
# 15. The API's models are the domain models' (tests/template/test_contract.py holds the contract)
# =====================================================================================================
def test_the_api_models_are_generated_from_the_domain_models(sam):
    assert sam["Resources"]["CarebusApi"]["Properties"]["Models"] == gateway_models()


# =====================================================================================================
# 16. cfn-lint over the translated template
# =====================================================================================================
def test_cfn_lint_finds_nothing_in_the_translated_template(cfn, tmp_path):
    # cfn-lint skips some checks on a SAM template (W3037 on policies), and some only fire on
    # translated output (E3505, queue visibility vs function timeout): lint what CloudFormation gets.
    translated = tmp_path / "translated.json"
    translated.write_text(json.dumps(cfn, indent=1))
    findings = lint_file(translated, config=ManualArgs(append_rules=["cfn_lint_serverless.rules"]))
    assert not findings, "\n".join(
        f"{m.rule.id} {'/'.join(map(str, m.path))}: {m.message[:160]}" for m in findings
    )
