"""A mix of encounters through the real handlers on moto, and what each AWS bill line is counted in: every
handler call (carebus_bench.calls.counted_calls, with the request and answer it was billed by), what the
event source mappings' pollers ask of SQS, what the approval workflow did (its execution histories), the
bytes the handlers log and the metrics they emit. The arithmetic is carebus_bench.cost_model's."""

import io
import json
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from carebus_bench.calls import EVENTS_DIR, INTAKE_FUNCTION, counted_calls, intake_event, offline_stack
from carebus_bench.cost_model import (
    EVENTS_CHUNK,
    SECONDS_PER_MONTH,
    SNS_CHUNK,
    SQS_CHUNK,
    Mix,
    batch_fill,
    chunks,
    item_size,
    read_units,
    write_units,
)
from carebus_client.metrics import emf_samples

if TYPE_CHECKING:
    from carebus_local.stack import OfflineStack

APPROVALS_FUNCTION: Final = "ApprovalsFunction"
APPROVAL_TOKEN_QUEUE: Final = "ApprovalTokenQueue"  # noqa: S105 - a logical id
WORKFLOW: Final = "PrescriptionApprovalStateMachine"
API_FUNCTIONS: Final = ("IntakeFunction", "EncounterQueryFunction", APPROVALS_FUNCTION)
# What EventBridge adds around an entry's detail (version, id, account, time, region, resources): the
# bytes an archived or logged event has beyond the entry's own fields.
EVENT_ENVELOPE_BYTES: Final = len(
    json.dumps(
        {
            "version": "0",
            "id": "00000000-0000-0000-0000-000000000000",
            "detail-type": "",
            "source": "",
            "account": "123456789012",
            "time": "2026-11-02T12:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {},
        }
    )
)


def encounter_bodies(sample_body: Mapping[str, Any], mix: Mix, count: int) -> list[dict[str, Any]]:
    """count encounters made from the intake sample, round(share x count) of each kind: with procedures,
    with a follow-up, with prescriptions (the uncontrolled one; the controlled ones also the sample's
    schedule II prescription)."""
    wanted = {name: round(share * count) for name, share in vars(mix).items()}
    uncontrolled = [rx for rx in sample_body["prescriptions"] if rx["deaSchedule"] is None]
    bodies = []
    for number in range(count):
        body = json.loads(json.dumps(sample_body))
        if number >= wanted["procedures"]:
            body["procedures"] = []
        if number >= wanted["follow_ups"]:
            body.pop("followUp")
        if number >= wanted["prescriptions"]:
            body["prescriptions"] = []
        elif number >= wanted["controlled"]:
            body["prescriptions"] = uncontrolled
        bodies.append(body)
    return bodies


@dataclass
class BillingMeters:
    """What the counted calls are billed by, added up."""

    table_keys: Mapping[str, list[str]]
    totals: Counter[str] = field(default_factory=Counter)
    callers: set[tuple[str, str]] = field(default_factory=set)  # (resource, caller): a KMS data key each
    # DynamoDB writes and reads whose size is the stored item's, known only at the end: (table, key, kind)
    pending: list[tuple[str, tuple[str, ...], str]] = field(default_factory=list)

    def observe(self, caller: str, service: str, operation: str, params: dict[str, Any], answer: Any) -> None:
        if service == "dynamodb":
            self._dynamodb(caller, operation, params, answer)
        elif service == "sns" and operation == "Publish":
            self.totals["sns_publish_chunks"] += chunks(len(params["Message"].encode()), SNS_CHUNK)
            self.callers.add((params["TopicArn"], caller))
        elif service == "sqs":
            self.totals["sqs_request_chunks"] += chunks(
                len(params.get("MessageBody", "").encode()), SQS_CHUNK
            )
            self.callers.add((params["QueueUrl"], caller))
        elif service == "events" and operation == "PutEvents":
            for entry in params["Entries"]:
                self.event_entry(entry)

    def event_entry(self, entry: Mapping[str, Any]) -> None:
        size = sum(len(str(entry.get(name, "")).encode()) for name in ("Source", "DetailType", "Detail"))
        self.totals["event_chunks"] += chunks(size, EVENTS_CHUNK)
        self.totals["event_bytes"] += size + EVENT_ENVELOPE_BYTES

    def key_of(self, table: str, item: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(json.dumps(item[name], sort_keys=True) for name in self.table_keys[table])

    def _dynamodb(self, caller: str, operation: str, params: dict[str, Any], answer: Any) -> None:
        if operation == "BatchGetItem":
            for table, request in params["RequestItems"].items():
                consistent = request.get("ConsistentRead", False)
                for item in answer.get("Responses", {}).get(table, []):
                    self.totals["dynamodb_read_units"] += read_units(item_size(item), consistent)
                self.callers.add((table, caller))
        elif operation == "TransactWriteItems":
            for action in params["TransactItems"]:
                ((_action, request),) = action.items()
                self._write(caller, request["TableName"], request.get("Item"), request.get("Key"), True)
        elif operation in ("PutItem", "UpdateItem", "DeleteItem"):
            self._write(caller, params["TableName"], params.get("Item"), params.get("Key"), False)
        elif operation in ("GetItem", "Query"):
            items = [answer["Item"]] if "Item" in answer else answer.get("Items", [])
            consistent = params.get("ConsistentRead", False)
            size = sum(item_size(item) for item in items)
            self.totals["dynamodb_read_units"] += read_units(size, consistent)
            self.callers.add((params["TableName"], caller))
        else:
            raise ValueError(f"no billing rule for dynamodb.{operation}")

    def _write(self, caller: str, table: str, item: Any, key: Any, transactional: bool) -> None:
        self.callers.add((table, caller))
        if item is not None:
            self.totals["dynamodb_write_units"] += write_units(item_size(item), transactional)
        else:
            self.pending.append((table, self.key_of(table, key), "transaction" if transactional else "write"))

    def settle(self, stored: Mapping[str, Mapping[tuple[str, ...], Mapping[str, Any]]]) -> None:
        """Bill the writes by key at the size of the item as stored at the end (a deleted one at 1 KB)."""
        for table, key, kind in self.pending:
            item = stored[table].get(key)
            size = item_size(item) if item else 0
            self.totals["dynamodb_write_units"] += write_units(size, kind == "transaction")
        self.pending.clear()


class CountedInvoker:
    """A function as the pollers and the driver invoke it, counting invocations and the bytes it logs."""

    def __init__(self, function: Any, logs: io.StringIO, per_function: Counter[str]) -> None:
        self.function, self.logs, self.per_function = function, logs, per_function

    def invoke(self, event: dict[str, Any]) -> Any:
        from carebus_local.functions import environment

        before = self.logs.tell()
        try:
            # In the function's environment, as on Lambda: Powertools reads some of it at each call.
            with environment(self.function.environment):
                return self.function.invoke(event)
        finally:
            name = self.function.spec.logical_id
            self.per_function[f"{name}.invocations"] += 1
            self.per_function[f"{name}.log_bytes"] += self.logs.tell() - before


def _emitted_metrics(log_text: str) -> list[str]:
    """Each distinct metric (namespace, name, dimension values) in the handlers' embedded-metric lines."""
    keys = {sample.key for sample in emf_samples(log_text.splitlines())}
    return sorted(
        f"{key.namespace}/{key.name}[{','.join(f'{name}={value}' for name, value in key.dimensions)}]"
        for key in keys
    )


def _template_facts(stack: "OfflineStack") -> dict[str, int]:
    """What the stack, as created, holds of what costs a fixed amount (a resource whose condition is false
    costs nothing)."""
    resources = [stack.cfn["Resources"][logical_id] for logical_id in stack.resources]
    alarms = [
        resource["Properties"] for resource in resources if resource["Type"] == "AWS::CloudWatch::Alarm"
    ]
    return {
        # A metric-math alarm is billed per metric it reads.
        "alarm_metrics": sum(
            sum(1 for query in alarm["Metrics"] if "MetricStat" in query) if "Metrics" in alarm else 1
            for alarm in alarms
        ),
        "dashboards": sum(1 for resource in resources if resource["Type"] == "AWS::CloudWatch::Dashboard"),
        "kms_keys": sum(1 for resource in resources if resource["Type"] == "AWS::KMS::Key"),
        "event_source_mappings": sum(
            1 for resource in resources if resource["Type"] == "AWS::Lambda::EventSourceMapping"
        ),
    }


def _stored_items(dynamodb: Any, tables: list[str]) -> tuple[dict[str, list[str]], dict[str, dict[Any, Any]]]:
    """Each table's key attributes, and every item as stored now, by key."""
    keys: dict[str, list[str]] = {}
    stored: dict[str, dict[Any, Any]] = {}
    for table in tables:
        schema = dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
        keys[table] = [key["AttributeName"] for key in schema]
        pages = dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
        stored[table] = {
            tuple(json.dumps(item[name], sort_keys=True) for name in keys[table]): item
            for page in pages
            for item in page["Items"]
        }
    return keys, stored


def _as_call(details: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """A workflow task as the API call it makes: ("sqs", "SendMessage", request) for sqs sendMessage
    .waitForTaskToken, ("dynamodb", "TransactWriteItems", ...) for aws-sdk:dynamodb:transactWriteItems."""
    service = details["resourceType"].rpartition(":")[2]
    action = details["resource"].split(".")[0]
    request = json.loads(details["parameters"])
    # The workflow hands JSON bodies over as objects; the API call carries them as text.
    for name in ("Message", "MessageBody"):
        if isinstance(request.get(name), dict):
            request[name] = json.dumps(request[name])
    for entry in request.get("Entries", []):
        if isinstance(entry.get("Detail"), dict):
            entry["Detail"] = json.dumps(entry["Detail"])
    return service, action[0].upper() + action[1:], request


def _workflow_history(stepfunctions: Any, meters: BillingMeters, state_machine_arn: str) -> None:
    """Each execution's state transitions, and its service integrations billed as the calls they are."""
    from carebus_client.waiting import wait_until

    for execution in stepfunctions.list_executions(stateMachineArn=state_machine_arn)["executions"]:
        arn = execution["executionArn"]

        def ended(arn: str = arn) -> str | None:
            status = stepfunctions.describe_execution(executionArn=arn)["status"]
            return None if status == "RUNNING" else status

        status = wait_until(ended, 30, "the approval workflow to end")
        if status != "SUCCEEDED":
            raise RuntimeError(f"an approval execution ended {status}")
        events = stepfunctions.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        meters.totals["executions"] += 1
        meters.totals["state_transitions"] += sum(
            1 for event in events if "stateEnteredEventDetails" in event
        )
        scheduled: tuple[str, str, dict[str, Any]] | None = None
        for event in events:
            if event["type"] == "TaskScheduled":
                scheduled = _as_call(event["taskScheduledEventDetails"])
            elif event["type"] in ("TaskSucceeded", "TaskSubmitted") and scheduled is not None:
                details = event.get("taskSucceededEventDetails") or event["taskSubmittedEventDetails"]
                service, operation, request = scheduled
                meters.observe(WORKFLOW, service, operation, request, json.loads(details.get("output", "{}")))
                if service == "sns":
                    meters.totals["approval_notices"] += 1
                scheduled = None


def _deliver(poller: Any, meters: BillingMeters, fed_by_topic: bool) -> None:
    """Every message on the mapping's queue to its function, a batch at a time, as Lambda's poller does:
    one ReceiveMessage and one DeleteMessageBatch per batch (its empty receives are modelled, not run)."""
    while result := poller.poll_once(fill_batch=False, retry_after_seconds=0):
        if not result.received:
            return
        if result.failed or result.error:
            raise RuntimeError(f"{poller.mapping.function_logical_id} failed records: {result}")
        meters.totals["sqs_request_chunks"] += 2
        meters.callers.add((poller.queue_url, "lambda-poller"))
        if fed_by_topic:
            # SNS's SendMessage of each delivery is a request on the queue, and a data key of SNS's.
            meters.totals["sns_sqs_deliveries"] += len(result.received)
            meters.totals["sqs_request_chunks"] += len(result.received)
            meters.callers.add((poller.queue_url, "sns"))


def measure_mix(mix: Mix, encounters: int, volume: float) -> dict[str, Any]:
    """`encounters` encounters of the mix through intake, the fan-out and every consumer (in batches as
    full as `volume` encounters a month fill them), each approval started, its token stored and approved by
    a pharmacist through the approvals function; what the bill is counted in (cost_model prices it)."""
    import boto3

    from carebus_client.waiting import wait_until
    from carebus_local.delivery import RuleTargetDelivery
    from carebus_local.pollers import QueuePoller

    with offline_stack() as (stack, functions, sample):
        logs = sys.stdout
        dynamodb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
        stepfunctions = boto3.client("stepfunctions")
        tables = [stack.ref(logical_id) for logical_id in stack.created("AWS::DynamoDB::Table")]
        keys, _ = _stored_items(dynamodb, tables)
        meters = BillingMeters(keys)
        per_function: Counter[str] = Counter()
        invokers = {
            name: CountedInvoker(function, logs, per_function) for name, function in functions.items()
        }
        bodies = encounter_bodies(json.loads(sample["body"]), mix, encounters)
        token_queue = stack.attribute(APPROVAL_TOKEN_QUEUE, "Arn")
        with counted_calls(meters.observe) as counts:
            for body in bodies:
                answer = invokers[INTAKE_FUNCTION].invoke(intake_event(sample, body))
                if answer["statusCode"] != 202:
                    raise RuntimeError(f"intake refused a mix encounter: {answer}")

            fills: dict[str, int] = {}

            def poller(mapping: Any) -> Any:
                waiting = sqs.get_queue_attributes(
                    QueueUrl=stack.ref(_queue_logical_id(stack, mapping.queue_arn)),
                    AttributeNames=["ApproximateNumberOfMessages"],
                )["Attributes"]["ApproximateNumberOfMessages"]
                per_second = volume * int(waiting) / encounters / SECONDS_PER_MONTH
                fill = batch_fill(per_second, mapping.batching_window_seconds, mapping.batch_size)
                fills[mapping.function_logical_id] = fill
                batch = replace(mapping, batch_size=fill)
                return QueuePoller(sqs, batch, invokers[mapping.function_logical_id], stack.region)

            for mapping in stack.event_source_mappings:
                if mapping.queue_arn != token_queue:
                    _deliver(poller(mapping), meters, fed_by_topic=True)
            started = RuleTargetDelivery(stack.rule_targets, sqs, stepfunctions).deliver_pending()
            token_url = stack.ref(APPROVAL_TOKEN_QUEUE)

            def tokens_waiting() -> bool:
                attributes = sqs.get_queue_attributes(
                    QueueUrl=token_url, AttributeNames=["ApproximateNumberOfMessages"]
                )["Attributes"]
                return int(attributes["ApproximateNumberOfMessages"]) >= started

            wait_until(tokens_waiting, 30, "every approval's task token")
            for mapping in stack.event_source_mappings:
                if mapping.queue_arn == token_queue:
                    _deliver(poller(mapping), meters, fed_by_topic=False)
            approve = (EVENTS_DIR / "approvals" / "approve.json").read_text()
            sample_approval = json.loads(approve)["pathParameters"]["approvalId"]
            approvals = dynamodb.scan(TableName=stack.ref("ApprovalsTable"), ConsistentRead=True)["Items"]
            for approval in approvals:
                event = json.loads(approve.replace(sample_approval, approval["approvalId"]["S"]))
                answer = invokers[APPROVALS_FUNCTION].invoke(event)
                if answer["statusCode"] != 200:
                    raise RuntimeError(f"the pharmacist's approval was refused: {answer}")
            _workflow_history(stepfunctions, meters, stack.outputs["PrescriptionApprovalStateMachineArn"])
        _, stored = _stored_items(dynamodb, tables)
        meters.settle(stored)
        emitted = logs.getvalue()
    return _measurement(stack, mix, encounters, fills, meters, counts, per_function, emitted)


def _logical_ids(stack: Any) -> dict[str, str]:
    """Each resource's logical id by its name, ARN and URL, so the figures name no stack."""
    named = {}
    for logical_id, resource in stack.resources.items():
        for value in (resource.ref, *resource.attributes.values()):
            if isinstance(value, str):
                named[value] = logical_id
    return named


def _queue_logical_id(stack: Any, queue_arn: str) -> str:
    (logical_id,) = [
        name for name, resource in stack.resources.items() if resource.attributes.get("Arn") == queue_arn
    ]
    return logical_id


def _measurement(
    stack: Any,
    mix: Mix,
    encounters: int,
    fills: Mapping[str, int],
    meters: BillingMeters,
    counts: Mapping[str, Counter[str]],
    per_function: Counter[str],
    emitted: str,
) -> dict[str, Any]:
    functions = {
        name: {
            "invocations": per_function[f"{name}.invocations"],
            "aws_calls": sum(counts.get(name, Counter()).values()),
            "memory_mb": spec.memory_size,
            "log_bytes": per_function[f"{name}.log_bytes"],
            "calls": dict(sorted(counts.get(name, Counter()).items())),
        }
        for name, spec in sorted(stack.functions.items())
        if per_function[f"{name}.invocations"]
    }
    consumers = sorted({mapping.function_logical_id for mapping in stack.event_source_mappings})
    totals = Counter(meters.totals)
    totals["api_requests"] = sum(functions.get(name, {}).get("invocations", 0) for name in API_FUNCTIONS)
    totals["invocations"] = sum(row["invocations"] for row in functions.values())
    totals["function_log_bytes"] = sum(row["log_bytes"] for row in functions.values())
    # The audit rule writes every carebus event to the audit log group as the event itself.
    totals["audit_log_bytes"] = totals["event_bytes"]
    for name in consumers:
        totals[f"invocations:{name}"] = functions.get(name, {}).get("invocations", 0)
    callers = set(meters.callers)
    callers.add((WORKFLOW, "stepfunctions"))
    callers.add(("CarebusBus", "events"))
    callers |= {
        (logical_id, "logs")
        for logical_id, resource in stack.created("AWS::Logs::LogGroup").items()
        if "KmsKeyId" in resource["Properties"]
    }
    named = _logical_ids(stack)
    return {
        "encounters": encounters,
        "mix": vars(mix),
        "batch_fill": dict(sorted(fills.items())),
        "totals": dict(sorted(totals.items())),
        "functions": functions,
        "metrics": _emitted_metrics(emitted),
        "kms_callers": sorted(f"{named.get(resource, resource)} <- {caller}" for resource, caller in callers),
        "trace_entry_points": ["api_requests", *(f"invocations:{name}" for name in consumers), "executions"],
        "template": _template_facts(stack),
    }
