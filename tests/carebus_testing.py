"""Driving a moto stack in tests: call the API, deliver queues to their functions, read the bus."""

import functools
import io
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from copy import deepcopy
from datetime import UTC, datetime
from fnmatch import fnmatch
from typing import Any

import boto3
from botocore.client import BaseClient
from jsonschema import Draft4Validator

from carebus_client.waiting import wait_until
from carebus_local.creators_catalog import published_schemas
from carebus_local.delivery import RuleTargetDelivery
from carebus_local.functions import InProcessFunction
from carebus_local.pollers import PollResult, QueuePoller
from carebus_local.stack import OfflineStack
from carebus_local.template import PROJECT_ROOT

EVENTS_DIR = PROJECT_ROOT / "events"
PHYSICIAN_SUB = "0c5f3b1e-7d0a-4a8e-9c1f-2b7d4e6a8f10"  # the physician of the sample events
OTHER_PHYSICIAN_SUB = "9a1e4c55-2b7f-4f0e-8a63-5d2c1b0e9f77"
PHARMACIST_SUB = "3d7b9e21-6c4a-4b8f-9e05-7a1c2d3e4f50"
PHARMACIST_CLAIMS = {"sub": PHARMACIST_SUB, "cognito:groups": "pharmacists"}
CAPTURE_RULE = "test-capture-every-carebus-event"


@functools.cache
def aws(service: str) -> BaseClient:
    """The tests' one client of a service, made once for the session: made after moto is imported
    (conftest imports it first), it is answered by whichever test's mock_aws is active when it calls."""
    return boto3.client(service)


@functools.cache
def dynamodb_resource() -> Any:
    return boto3.resource("dynamodb")


def load_event(relative_path: str) -> dict[str, Any]:
    """A sample event from events/, exactly as `sam local invoke -e` would read it."""
    return json.loads((EVENTS_DIR / relative_path).read_text())


def as_caller(event: dict[str, Any], claims: dict[str, Any] | None) -> dict[str, Any]:
    """The same API event as another signed-in user (None: no authorizer claims at all)."""
    changed = deepcopy(event)
    if claims is None:
        changed["requestContext"].pop("authorizer", None)
    else:
        changed["requestContext"]["authorizer"] = {"claims": claims}
    return changed


def with_body(event: dict[str, Any], body: Any, **headers: str) -> dict[str, Any]:
    """The same API event with another JSON body (or raw string) and extra headers."""
    changed = deepcopy(event)
    changed["body"] = body if isinstance(body, str) else json.dumps(body)
    changed["headers"].update(headers)
    changed["multiValueHeaders"].update({name: [value] for name, value in headers.items()})
    return changed


def without_header(event: dict[str, Any], name: str) -> dict[str, Any]:
    changed = deepcopy(event)
    for headers in (changed["headers"], changed["multiValueHeaders"]):
        for key in [key for key in headers if key.lower() == name.lower()]:
            del headers[key]
    return changed


def body_of(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


class StackDriver:
    """What a test does to a stack: invoke functions, run the event source mappings, read results."""

    def __init__(self, stack: OfflineStack, function: Callable[[str], InProcessFunction]) -> None:
        self.stack = stack
        self.function = function
        self.sqs = aws("sqs")
        self.dynamodb = dynamodb_resource()
        self.events = aws("events")
        self._capture_url: str | None = None

    # ----- queues -----------------------------------------------------------------------------------
    def queue_url(self, logical_id: str) -> str:
        return self.stack.ref(logical_id)

    def poller_for(self, queue_logical_id: str) -> QueuePoller:
        arn = self.stack.attribute(queue_logical_id, "Arn")
        mapping = next(m for m in self.stack.event_source_mappings if m.queue_arn == arn)
        return QueuePoller(self.sqs, mapping, self.function(mapping.function_logical_id), self.stack.region)

    def deliver(self, queue_logical_id: str) -> PollResult:
        """One batch from the queue to its function, without waiting for the batching window to fill;
        failures become visible again at once."""
        return self.poller_for(queue_logical_id).poll_once(retry_after_seconds=0, fill_batch=False)

    def deliver_rule_targets(self) -> int:
        """Start the state machines (and so on) whose rules matched events put so far."""
        return RuleTargetDelivery(self.stack.rule_targets, self.sqs, aws("stepfunctions")).deliver_pending()

    def drain(self, rounds: int = 10) -> None:
        """Run every event source mapping and rule target until nothing is left to hand out (failures
        retry at once)."""
        for _ in range(rounds):
            delivered = [
                QueuePoller(self.sqs, mapping, self.function(mapping.function_logical_id), self.stack.region)
                .poll_once(retry_after_seconds=0, fill_batch=False)
                .received
                for mapping in self.stack.event_source_mappings
            ]
            if not any(delivered) and not self.deliver_rule_targets():
                return
        raise AssertionError(f"queues still busy after {rounds} rounds")

    def messages(self, queue_logical_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """Read (and leave) what is on a queue."""
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url(queue_logical_id),
            MaxNumberOfMessages=limit,
            MessageAttributeNames=["All"],
            VisibilityTimeout=0,
        )
        return answer.get("Messages", [])

    def depth(self, queue_logical_id: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url(queue_logical_id),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def send_raw(self, queue_logical_id: str, body: str) -> str:
        return self.sqs.send_message(QueueUrl=self.queue_url(queue_logical_id), MessageBody=body)["MessageId"]

    # ----- records ----------------------------------------------------------------------------------
    def table(self, logical_id: str) -> Any:
        return self.dynamodb.Table(self.stack.ref(logical_id))

    def items(self, logical_id: str) -> list[dict[str, Any]]:
        return self.table(logical_id).scan(ConsistentRead=True)["Items"]

    # ----- the bus ----------------------------------------------------------------------------------
    def capture_bus(self) -> None:
        """A test-only rule that copies every carebus event on the bus to a queue we can read."""
        url = self.sqs.create_queue(QueueName=f"capture-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        bus = self.stack.outputs["EventBusName"]
        self.events.put_rule(
            Name=CAPTURE_RULE, EventBusName=bus, EventPattern=json.dumps({"source": [{"prefix": "carebus."}]})
        )
        self.events.put_targets(Rule=CAPTURE_RULE, EventBusName=bus, Targets=[{"Id": "capture", "Arn": arn}])
        self._capture_url = url

    def bus_events(self) -> list[dict[str, Any]]:
        """Every event captured since capture_bus(), oldest first, drained; each one checked against the
        schema the stack publishes for it (its event catalog), so every test that reads the bus holds what
        the code emits to the published contract."""
        if self._capture_url is None:
            raise RuntimeError("call capture_bus() before the events are put")
        schemas = published_schemas(self.stack)
        events: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=self._capture_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not batch:
                return events
            for message in batch:
                event = json.loads(message["Body"])
                name = f"{event['source']}@{event['detail-type']}"
                if name not in schemas:
                    raise AssertionError(f"the stack publishes no schema for the event {name} on its bus")
                Draft4Validator(schemas[name], format_checker=Draft4Validator.FORMAT_CHECKER).validate(event)
                events.append(event)
                self.sqs.delete_message(QueueUrl=self._capture_url, ReceiptHandle=message["ReceiptHandle"])


@contextmanager
def json_logs(function: InProcessFunction) -> Iterator[list[dict[str, Any]]]:
    """Every JSON line the function's Powertools logger writes inside the block (filled on exit)."""
    handler = function.module.logger.registered_handler
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        handler.setStream(previous)
        lines.extend(json.loads(line) for line in buffer.getvalue().splitlines() if line.strip())


# ----- what a function calls, against what its role allows (moto does not enforce IAM) ----------------
_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


@contextmanager
def recorded_calls() -> Iterator[list[tuple[str, str, dict[str, Any]]]]:
    """Every AWS API call this thread makes inside the block: (service, operation, parameters). Calls of
    other threads (moto's Step Functions engine runs a resumed workflow in one) are not the caller's."""
    calls: list[tuple[str, str, dict[str, Any]]] = []
    original = BaseClient._make_api_call
    caller = threading.get_ident()

    def recording(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if threading.get_ident() == caller:
            calls.append((client.meta.service_model.service_name, operation, deepcopy(params)))
        return original(client, operation, params)

    BaseClient._make_api_call = recording  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        BaseClient._make_api_call = original  # type: ignore[method-assign]


def _arn_named(stack: OfflineStack, name: str) -> str:
    [arn] = [
        resource.attributes["Arn"]
        for resource in stack.resources.values()
        if resource.ref == name and "Arn" in resource.attributes
    ]
    return arn


def _required_permissions(
    stack: OfflineStack, service: str, operation: str, params: dict[str, Any]
) -> list[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs an API call needs; unknown calls need '*' (and fail)."""
    if service == "dynamodb" and operation == "TransactWriteItems":
        return [
            (f"dynamodb:{_TRANSACT_ACTIONS[kind]}", _arn_named(stack, request["TableName"]))
            for item in params["TransactItems"]
            for kind, request in item.items()
        ]
    if service == "dynamodb" and operation in ("BatchGetItem", "BatchWriteItem"):
        return [(f"dynamodb:{operation}", _arn_named(stack, table)) for table in params["RequestItems"]]
    if service == "dynamodb":
        # A read of an index needs the index's ARN: a grant on the table alone does not cover it.
        index = f"/index/{params['IndexName']}" if "IndexName" in params else ""
        return [(f"dynamodb:{operation}", _arn_named(stack, params["TableName"]) + index)]
    if service == "events" and operation == "PutEvents":
        return [("events:PutEvents", _arn_named(stack, entry["EventBusName"])) for entry in params["Entries"]]
    if service == "sns" and operation == "Publish":
        return [("sns:Publish", params["TopicArn"])]
    if service == "stepfunctions" and operation.startswith("SendTask"):
        # The token names no ARN; the only workflow whose tokens carebus handles is the approval one.
        return [(f"states:{operation}", stack.outputs["PrescriptionApprovalStateMachineArn"])]
    if service == "stepfunctions" and "executionArn" in params:
        return [(f"states:{operation}", params["executionArn"])]
    return [(f"{service}:{operation}", "*")]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _allowed(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    return any(
        statement["Effect"] == "Allow"
        and any(fnmatch(action.lower(), granted.lower()) for granted in _as_list(statement["Action"]))
        and any(fnmatch(resource, granted) for granted in _as_list(statement["Resource"]))
        for statement in statements
    )


def denied_calls(
    stack: OfflineStack, function_logical_id: str, calls: list[tuple[str, str, dict[str, Any]]]
) -> list[tuple[str, str]]:
    """The permissions the calls needed that the function's role (as provisioned) does not grant."""
    role = stack.cfn["Resources"][function_logical_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    iam = aws("iam")
    role_name = stack.ref(role)
    statements = [
        statement
        for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]
        for statement in iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"][
            "Statement"
        ]
    ]
    needed = {
        permission
        for service, operation, params in calls
        for permission in _required_permissions(stack, service, operation, params)
    }
    if not needed:
        raise AssertionError("no AWS calls were recorded")
    return sorted(permission for permission in needed if not _allowed(statements, *permission))


# ----- the sample encounter and variations of it ------------------------------------------------------
SAMPLE_INTAKE = "intake/submit_encounter.json"
SAMPLE_ENCOUNTER_ID = "5f51a656-9daa-559d-8d95-7aa5a75d9b03"  # what the sample's Idempotency-Key yields
SAMPLE_REFERENCES = ("billing", "scheduling", "prescriptions")
# A Friday before the sample's follow-up window (Monday 16 to Friday 20 November 2026).
BEFORE_SAMPLE_WINDOW = datetime(2026, 11, 13, 12, tzinfo=UTC)


def sample_body() -> dict[str, Any]:
    """The encounter the intake sample submits (a fresh copy)."""
    return json.loads(load_event(SAMPLE_INTAKE)["body"])


def submit_sample(function: Callable[[str], InProcessFunction]) -> str:
    """Submit the intake sample; the consumers' sample events all refer to the encounter it creates."""
    response = function("IntakeFunction").invoke(load_event(SAMPLE_INTAKE))
    assert response["statusCode"] == 202, response
    encounter_id = json.loads(response["body"])["encounterId"]
    for consumer in SAMPLE_REFERENCES:
        referenced = json.loads(load_event(f"{consumer}/encounter_reference.json")["Records"][0]["body"])
        assert referenced["encounterId"] == encounter_id
    return encounter_id


def submit(function: Callable[[str], InProcessFunction], payload: dict[str, Any] | None = None) -> str:
    """A new encounter (the sample's body unless given) under a fresh Idempotency-Key; its id."""
    event = with_body(
        load_event(SAMPLE_INTAKE), payload or sample_body(), **{"Idempotency-Key": str(uuid.uuid4())}
    )
    response = function("IntakeFunction").invoke(event)
    assert response["statusCode"] == 202, response
    return json.loads(response["body"])["encounterId"]


def redelivered(event: dict[str, Any]) -> dict[str, Any]:
    """The same messages as SNS's duplicate fan-out delivers them: new SQS message ids and handles."""
    copy = deepcopy(event)
    for record in copy["Records"]:
        record["messageId"] = str(uuid.uuid4())
        record["receiptHandle"] = f"AQEB{uuid.uuid4().hex}"
    return copy


def set_clock(
    function: Callable[[str], InProcessFunction], monkeypatch: Any, now: datetime = BEFORE_SAMPLE_WINDOW
) -> None:
    """Scheduling's clock at a fixed moment (by default, before the sample's follow-up window)."""
    monkeypatch.setattr(function("SchedulingFunction").module, "current_time", lambda: now)


# ----- the approval workflow ------------------------------------------------------------------------
SAMPLE_APPROVAL_ID = "apr-rx-5f51a656-9daa-559d-8d95-7aa5a75d9b03-2"  # the sample's controlled prescription


def approval_executions(stack: OfflineStack) -> list[dict[str, Any]]:
    return aws("stepfunctions").list_executions(
        stateMachineArn=stack.outputs["PrescriptionApprovalStateMachineArn"]
    )["executions"]


def execution_status(execution_arn: str) -> str:
    return aws("stepfunctions").describe_execution(executionArn=execution_arn)["status"]


def wait_for_execution_end(execution_arn: str, timeout: float = 15.0) -> dict[str, Any]:
    wait_until(lambda: execution_status(execution_arn) != "RUNNING", timeout, "the execution to end")
    return aws("stepfunctions").describe_execution(executionArn=execution_arn)


def deliver_token(driver: "StackDriver", timeout: float = 10.0) -> None:
    """Wait for the workflow to hand out its task token, then run the token queue's consumer once."""
    wait_until(lambda: driver.depth("ApprovalTokenQueue"), timeout, "a task token on the token queue")
    assert driver.deliver("ApprovalTokenQueue").failed == []


def request_sample_approval(
    driver: "StackDriver", function: Callable[[str], InProcessFunction]
) -> dict[str, Any]:
    """Submit the sample, run the fan-out and the prescriptions consumer, start the approval workflow and
    store its first token: the sample's controlled prescription is then decidable. The approval record."""
    submit_sample(function)
    driver.deliver("PrescriptionsQueue")
    assert driver.deliver_rule_targets() == 1
    deliver_token(driver)
    return driver.table("ApprovalsTable").get_item(
        Key={"approvalId": SAMPLE_APPROVAL_ID}, ConsistentRead=True
    )["Item"]


def listing(status: str | None) -> dict[str, Any]:
    """The approvals list sample asking for another status (None: no query string at all)."""
    event = load_event("approvals/list_pending.json")
    event["queryStringParameters"] = None if status is None else {"status": status}
    event["multiValueQueryStringParameters"] = None if status is None else {"status": [status]}
    return event


def recorded_approval(driver: "StackDriver", approval_id: str = SAMPLE_APPROVAL_ID) -> dict[str, Any]:
    """The approval once the workflow has recorded its outcome (it does so right after a decision)."""

    def final() -> dict[str, Any] | None:
        item = driver.table("ApprovalsTable").get_item(Key={"approvalId": approval_id}, ConsistentRead=True)
        record = item.get("Item")
        return record if record and record["status"] != "PENDING" else None

    return wait_until(final, what=f"the outcome of {approval_id} to be recorded")


def stop_running_executions(stack: OfflineStack) -> None:
    """Stop what the stack's workflows still run and wait until they have stopped, so that no execution
    writes into a later test (the sample's ids are the same in every test)."""
    stepfunctions = aws("stepfunctions")

    def stopped(execution_arn: str) -> bool:
        try:
            stepfunctions.stop_execution(executionArn=execution_arn)
        except AttributeError:  # moto: the execution's worker has not started yet
            return False
        return execution_status(execution_arn) != "RUNNING"

    for machine in stepfunctions.list_state_machines()["stateMachines"]:
        for execution in stepfunctions.list_executions(stateMachineArn=machine["stateMachineArn"])[
            "executions"
        ]:
            if execution["status"] == "RUNNING":
                wait_until(lambda arn=execution["executionArn"]: stopped(arn), timeout=5, what="the stop")
