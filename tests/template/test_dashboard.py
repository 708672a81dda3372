"""The dashboard points at nothing that does not exist: every AWS metric is a real metric of its service on a
resource the stack declares, every carebus metric is one the code emits (with the same dimensions), every
log query reads a declared log group for lines the code writes; and each consumer path's end-to-end latency
has its p99 alarm.

The body is read back from the offline stack (GetDashboard), so it is checked as CloudFormation resolves it.
"""

import json
import re
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

import pytest

from carebus.approvals import Decision, approval_id_for
from carebus.business_metrics import CONSUMER_LATENCY, OUTCOME_DIMENSION
from carebus.prescribing import prescription_id_for
from carebus_client.waiting import wait_until
from carebus_local.functions import InProcessFunction
from carebus_local.stack import OfflineStack
from carebus_local.template import PROJECT_ROOT
from carebus_testing import aws, json_logs, load_event, set_clock, submit, submit_sample

# The AWS metrics the dashboard may use, with the dimension sets each service publishes them under:
# - AWS/ApiGateway:
#   docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-metrics-and-dimensions.html
#   (ApiName+Stage; ApiName+Method+Resource+Stage with detailed metrics, MethodSettings MetricsEnabled)
# - AWS/SNS: docs.aws.amazon.com/sns/latest/dg/sns-monitoring-using-cloudwatch.html
# - AWS/SQS:
#   docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html
# - AWS/Lambda: docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html and
#   .../monitoring-concurrency.html (ConcurrentExecutions is emitted for every function)
# - AWS/Events: docs.aws.amazon.com/eventbridge/latest/userguide/eb-monitoring.html (a custom bus's rules:
#   EventBusName+RuleName)
# - AWS/States: docs.aws.amazon.com/step-functions/latest/dg/procedure-cw-metrics.html
_API_STAGE = frozenset({"ApiName", "Stage"})
_API_ROUTE = frozenset({"ApiName", "Method", "Resource", "Stage"})
AWS_METRICS: dict[str, dict[str, set[frozenset[str]]]] = {
    "AWS/ApiGateway": {
        name: {_API_STAGE, _API_ROUTE}
        for name in ("Count", "4XXError", "5XXError", "Latency", "IntegrationLatency")
    },
    "AWS/SNS": {
        name: {frozenset({"TopicName"})}
        for name in (
            "NumberOfMessagesPublished",
            "NumberOfNotificationsDelivered",
            "NumberOfNotificationsFailed",
            "NumberOfNotificationsRedrivenToDlq",
        )
    },
    "AWS/SQS": {
        name: {frozenset({"QueueName"})}
        for name in (
            "ApproximateNumberOfMessagesVisible",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateAgeOfOldestMessage",
        )
    },
    "AWS/Lambda": {
        name: {frozenset({"FunctionName"})}
        for name in ("Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions")
    },
    "AWS/Events": {
        name: {frozenset({"EventBusName", "RuleName"})}
        for name in ("MatchedEvents", "Invocations", "FailedInvocations")
    },
    "AWS/States": {
        name: {frozenset({"StateMachineArn"})}
        for name in (
            "ExecutionsStarted",
            "ExecutionsSucceeded",
            "ExecutionsFailed",
            "ExecutionsTimedOut",
            "ExecutionsAborted",
        )
    },
}
CUSTOM_NAMESPACE = "carebus"
# A decision's outcome is the Outcome dimension's whole range.
OUTCOMES = {Decision.model_construct(decision=kind).status.value for kind in ("APPROVE", "REJECT")}
_SOURCE = re.compile(r"SOURCE '([^']+)'")


type Metric = tuple[str, str, dict[str, str]]


def dashboard_body(stack: OfflineStack) -> dict[str, Any]:
    body = aws("cloudwatch").get_dashboard(DashboardName=stack.ref("CarebusDashboard"))["DashboardBody"]
    return json.loads(body)


def widgets_of(body: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [widget["properties"] for widget in body["widgets"] if widget["type"] == kind]


def widget_metrics(properties: dict[str, Any]) -> Iterable[Metric]:
    """The widget's metrics as (namespace, name, dimensions); expressions are checked apart."""
    for line in properties["metrics"]:
        fields = [field for field in line if not isinstance(field, dict)]
        if fields:
            namespace, name, *pairs = fields
            yield namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True))


def _of_type(stack: OfflineStack, resource_type: str) -> list[str]:
    return list(stack.created(resource_type))


def declared_dimension_values(stack: OfflineStack) -> dict[str, set[str]]:
    """Each AWS dimension's values that name something the stack declares."""
    api_names = {
        stack.cfn["Resources"][lid]["Properties"]["Name"]["Fn::Sub"].replace("${AWS::StackName}", stack.name)
        for lid in _of_type(stack, "AWS::ApiGateway::RestApi")
    }
    paths = [api["body"]["paths"] for api in stack.rest_apis.values()]
    return {
        "QueueName": {stack.attribute(lid, "QueueName") for lid in _of_type(stack, "AWS::SQS::Queue")},
        "TopicName": {stack.attribute(lid, "TopicName") for lid in _of_type(stack, "AWS::SNS::Topic")},
        "FunctionName": {stack.ref(lid) for lid in _of_type(stack, "AWS::Lambda::Function")},
        "StateMachineArn": {stack.ref(lid) for lid in _of_type(stack, "AWS::StepFunctions::StateMachine")},
        "EventBusName": {stack.ref(lid) for lid in _of_type(stack, "AWS::Events::EventBus")},
        "RuleName": {
            stack.attribute(lid, "Arn").rsplit("/", 1)[1] for lid in _of_type(stack, "AWS::Events::Rule")
        },
        "ApiName": api_names,
        "Stage": {stage for api in stack.rest_apis.values() for stage in api["stages"]},
        "Resource": {path for api_paths in paths for path in api_paths},
        "Method": {
            method.upper() for api_paths in paths for methods in api_paths.values() for method in methods
        },
    }


def unknown_aws_metrics(body: dict[str, Any], declared: dict[str, set[str]]) -> list[str]:
    """What the body shows of AWS that no service publishes, or that names no resource of the stack."""
    wrong = []
    for properties in widgets_of(body, "metric"):
        for namespace, name, dimensions in widget_metrics(properties):
            if namespace == CUSTOM_NAMESPACE:
                continue
            if frozenset(dimensions) not in AWS_METRICS.get(namespace, {}).get(name, set()):
                wrong.append(
                    f"{properties['title']}: {namespace} {name} {sorted(dimensions)} is no such metric"
                )
            wrong.extend(
                f"{properties['title']}: {namespace} {name} {key}={value} names nothing the stack declares"
                for key, value in dimensions.items()
                if value not in declared[key]
            )
    return wrong


def unemitted_custom_metrics(
    body: dict[str, Any], emitted: set[tuple[str, frozenset[str], str]]
) -> list[str]:
    """What the body shows of carebus's namespace that no function emitted (name, dimensions, service)."""
    wrong = []
    for properties in widgets_of(body, "metric"):
        for namespace, name, dimensions in widget_metrics(properties):
            if namespace != CUSTOM_NAMESPACE:
                continue
            if (name, frozenset(dimensions), dimensions.get("service", "")) not in emitted:
                wrong.append(f"{properties['title']}: {name} {dimensions} is emitted by nothing")
            if OUTCOME_DIMENSION in dimensions and dimensions[OUTCOME_DIMENSION] not in OUTCOMES:
                wrong.append(f"{properties['title']}: {name} has an outcome no decision has")
    return wrong


def undefined_expression_ids(body: dict[str, Any]) -> list[str]:
    wrong = []
    for properties in widgets_of(body, "metric"):
        options = [line[-1] for line in properties["metrics"] if isinstance(line[-1], dict)]
        ids = {option["id"] for option in options if "id" in option and "expression" not in option}
        for option in options:
            if "expression" in option:
                used = set(re.findall(r"\b[a-z][A-Za-z0-9_]*\b", option["expression"]))
                wrong.extend(f"{properties['title']}: {name} is no metric id" for name in sorted(used - ids))
    return wrong


def emf_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for text in output.splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if isinstance(line, dict):
            lines.append(line)
    return lines


def emitted_metrics(lines: list[dict[str, Any]]) -> set[tuple[str, frozenset[str], str]]:
    emitted = set()
    for line in lines:
        for directive in line.get("_aws", {}).get("CloudWatchMetrics", []):
            assert directive["Namespace"] == CUSTOM_NAMESPACE
            for dimension_set in directive["Dimensions"]:
                for metric in directive["Metrics"]:
                    emitted.add((metric["Name"], frozenset(dimension_set), line.get("service", "")))
    return emitted


def renamed(body: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    return json.loads(json.dumps(body).replace(f'"{old}"', f'"{new}"'))


def run_the_flow(
    driver: Any, function: Callable[[str], InProcessFunction], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample through every consumer, booked and approved; a second encounter waitlisted and its
    approval rejected; then one malformed message on each consumer's queue (a batch item failure each)."""
    driver.capture_bus()
    set_clock(function, monkeypatch)
    submit_sample(function)
    for queue in ("BillingQueue", "SchedulingQueue", "PrescriptionsQueue"):
        assert driver.deliver(queue).failed == []
    set_clock(function, monkeypatch, datetime(2026, 11, 21, 12, tzinfo=UTC))  # the window is over
    second = submit(function)
    for queue in ("BillingQueue", "SchedulingQueue", "PrescriptionsQueue"):
        assert driver.deliver(queue).failed == []
    assert driver.deliver_rule_targets() == 2
    wait_until(lambda: driver.depth("ApprovalTokenQueue") == 2, what="both approvals' task tokens")
    assert driver.deliver("ApprovalTokenQueue").failed == []
    rejection = load_event("approvals/reject.json")
    second_approval = approval_id_for(prescription_id_for(second, 2))
    rejection["pathParameters"] = {"approvalId": second_approval}
    rejection["path"] = rejection["resource"].replace("{approvalId}", second_approval)
    for decision in (load_event("approvals/approve.json"), rejection):
        assert function("ApprovalsFunction").invoke(decision)["statusCode"] == 200
    for queue in ("BillingQueue", "SchedulingQueue", "PrescriptionsQueue", "ApprovalTokenQueue"):
        driver.send_raw(queue, "not a message")
        assert len(driver.deliver(queue).failed) == 1


def test_every_aws_metric_on_the_dashboard_is_a_real_metric_of_a_declared_resource(stack):
    body = dashboard_body(stack)
    declared = declared_dimension_values(stack)

    assert unknown_aws_metrics(body, declared) == []
    assert undefined_expression_ids(body) == []
    # The check bites: a metric SQS does not publish, and a queue the stack does not have, are caught.
    assert unknown_aws_metrics(renamed(body, "ApproximateAgeOfOldestMessage", "AgeOfOldestMessage"), declared)
    billing_queue = stack.attribute("BillingQueue", "QueueName")
    assert unknown_aws_metrics(renamed(body, billing_queue, f"{billing_queue}-gone"), declared)


def test_every_carebus_metric_and_log_query_on_the_dashboard_matches_what_the_flow_writes(
    stack, driver, function, monkeypatch, capsys
):
    body = dashboard_body(stack)
    capsys.readouterr()
    with ExitStack() as capturing:
        logs = {
            f"/aws/lambda/{spec.name}": capturing.enter_context(json_logs(function(lid)))
            for lid, spec in stack.functions.items()
        }
        run_the_flow(driver, function, monkeypatch)
    emitted = emitted_metrics(emf_lines(capsys.readouterr().out))

    assert unemitted_custom_metrics(body, emitted) == []
    # The check bites: a widget on a metric nothing emits, or under another service, is caught.
    assert unemitted_custom_metrics(renamed(body, "EncounterToClaimTime", "EncounterToClaimTimes"), emitted)
    assert unemitted_custom_metrics(renamed(body, "approval-tokens", "approval-token"), emitted)

    log_groups = {stack.ref(lid) for lid in _of_type(stack, "AWS::Logs::LogGroup")}
    # What the flow put on the bus, and what the workflow announces on its other paths (expiry, failure).
    definition = (PROJECT_ROOT / "statemachines/prescription_approval.asl.json").read_text()
    detail_types = {event["detail-type"] for event in driver.bus_events()}
    detail_types |= set(re.findall(r'"DetailType": "([A-Za-z]+)"', definition))
    for properties in widgets_of(body, "log"):
        query = properties["query"]
        sources = set(_SOURCE.findall(query))
        assert sources <= log_groups, properties["title"]
        messages = {line.get("message") for source in sources for line in logs.get(source, [])}
        for quoted in re.findall(r"message = '([^']+)'", query):
            assert quoted in messages, f"{properties['title']}: {sorted(sources)} has no line {quoted!r}"
        for detail_type in re.findall(r"'(Prescription[A-Za-z]+)'", query):
            assert detail_type in detail_types, f"{properties['title']}: nothing announces {detail_type}"


def test_each_consumer_path_has_a_p99_alarm_on_its_end_to_end_latency(cfn):
    resources = cfn["Resources"]
    services = {
        resource["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
        for resource in resources.values()
        if resource["Type"] == "AWS::Lambda::Function"
    }
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    for service, metric in CONSUMER_LATENCY.items():
        assert service in services
        watching = [
            alarm
            for alarm in alarms
            if (alarm.get("Namespace"), alarm.get("MetricName")) == (CUSTOM_NAMESPACE, metric)
            and alarm.get("Dimensions") == [{"Name": "service", "Value": service}]
        ]
        assert len(watching) == 1, metric
        assert watching[0]["ExtendedStatistic"] == "p99"
        assert watching[0]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
