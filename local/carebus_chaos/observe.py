"""Reading an offline stack's state for the ledger, and telling when it has come to rest."""

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from carebus_chaos.ledger import StackState
from carebus_local.stack import OfflineStack

_DESERIALIZER = TypeDeserializer()
_QUEUE = "AWS::SQS::Queue"


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _DESERIALIZER.deserialize(value) for name, value in item.items()}


def scan(client: Any, table: str) -> list[dict[str, Any]]:
    pages = client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    return [_plain(item) for page in pages for item in page["Items"]]


def _logical_id(value: Any) -> str | None:
    """The logical id a Fn::GetAtt [X, Arn] (or Ref X) names."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return value["Fn::GetAtt"][0]
    if isinstance(value, dict) and "Ref" in value:
        return value["Ref"]
    return None


class StackView:
    """The queues of the offline stack by role, read from its template; and what they hold."""

    def __init__(self, stack: OfflineStack, client: Callable[[str], Any]) -> None:
        self.stack = stack
        self.client = client
        resources = stack.cfn["Resources"]
        self.queues = list(stack.created(_QUEUE))
        # A consumed queue's dead-letter queue, as its RedrivePolicy names it.
        self.dead_letter_queue_of = {
            logical_id: _logical_id(
                resources[logical_id]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]
            )
            for logical_id in self.queues
            if "RedrivePolicy" in resources[logical_id].get("Properties", {})
        }
        arns = {stack.attribute(logical_id, "Arn"): logical_id for logical_id in self.queues}
        # Each consumed queue and the function its mapping feeds.
        self.consumer_of = {arns[m.queue_arn]: m.function_logical_id for m in stack.event_source_mappings}
        # The queues the encounter topic fans out to carry encounter references; the others, task tokens.
        topic = stack.outputs["EncounterTopicArn"]
        self.reference_queues = sorted(
            _logical_id(resource["Properties"]["Endpoint"])
            for logical_id, resource in resources.items()
            if resource["Type"] == "AWS::SNS::Subscription"
            and stack.ref(_logical_id(resource["Properties"]["TopicArn"]) or "") == topic
        )
        self.token_queues = sorted(set(self.consumer_of) - set(self.reference_queues))
        self.dead_letter_queues = [queue for queue in self.queues if queue not in self.dead_letter_queue_of]

    def url(self, queue: str) -> str:
        return self.stack.ref(queue)

    def depth(self, url: str) -> int:
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        attributes = self.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return sum(int(attributes.get(name, 0)) for name in names)

    def busy_queues(self) -> dict[str, int]:
        """Every queue that must be empty at rest: the consumed ones and the rule-target shadows."""
        depths = {queue: self.depth(self.url(queue)) for queue in self.dead_letter_queue_of}
        for target in self.stack.rule_targets:
            depths[f"rule target {target.rule_name}"] = self.depth(target.shadow_queue_url)
        return depths

    def running_executions(self) -> int:
        stepfunctions = self.client("stepfunctions")
        pages = stepfunctions.get_paginator("list_executions").paginate(
            stateMachineArn=self.stack.outputs["PrescriptionApprovalStateMachineArn"], statusFilter="RUNNING"
        )
        return sum(len(page["executions"]) for page in pages)

    def dead_letters(self) -> dict[str, list[str]]:
        """The bodies on every dead-letter queue (read and left hidden: the run is over)."""
        sqs = self.client("sqs")
        found: dict[str, list[str]] = {}
        for queue in self.dead_letter_queues:
            bodies: list[str] = []
            while batch := sqs.receive_message(
                QueueUrl=self.url(queue), MaxNumberOfMessages=10, VisibilityTimeout=600
            ).get("Messages", []):
                bodies += [message["Body"] for message in batch]
            if bodies:
                found[queue] = bodies
        return found

    def audit_event_ids(self) -> Counter[str]:
        """How often each eventId was delivered to the audit log."""
        pages = (
            self.client("logs")
            .get_paginator("filter_log_events")
            .paginate(logGroupName=self.stack.outputs["AuditLogGroupName"])
        )
        delivered: Counter[str] = Counter()
        for page in pages:
            for log_event in page["events"]:
                detail = json.loads(log_event["message"]).get("detail") or {}
                delivered[str(detail.get("eventId"))] += 1
        return delivered

    def executions(self) -> dict[str, list[dict[str, Any]]]:
        """Each approval workflow execution by prescription: its status and whether it recorded the
        approval (a repeated request ends in AlreadyRequested without recording)."""
        stepfunctions = self.client("stepfunctions")
        by_prescription: dict[str, list[dict[str, Any]]] = defaultdict(list)
        pages = stepfunctions.get_paginator("list_executions").paginate(
            stateMachineArn=self.stack.outputs["PrescriptionApprovalStateMachineArn"]
        )
        for page in pages:
            for execution in page["executions"]:
                arn = execution["executionArn"]
                described = stepfunctions.describe_execution(executionArn=arn)
                events = [
                    event
                    for history in stepfunctions.get_paginator("get_execution_history").paginate(
                        executionArn=arn
                    )
                    for event in history["events"]
                ]
                entered = [
                    event["stateEnteredEventDetails"]["name"]
                    for event in events
                    if "stateEnteredEventDetails" in event
                ]
                by_prescription[json.loads(described["input"])["prescriptionId"]].append(
                    {
                        "status": described["status"],
                        "recorded": "RecordPendingApproval" in entered and "AlreadyRequested" not in entered,
                    }
                )
        return by_prescription

    def state(self) -> StackState:
        dynamodb = self.client("dynamodb")

        def table(logical_id: str) -> list[dict[str, Any]]:
            return scan(dynamodb, self.stack.ref(logical_id))

        appointments = table("AppointmentsTable")
        return StackState(
            encounters={record["encounterId"]: record for record in table("EncountersTable")},
            claims={record["encounterId"]: record for record in table("ClaimsTable")},
            appointments={
                record["encounterId"]: record for record in appointments if record["sk"] == "APPOINTMENT"
            },
            slots=[record for record in appointments if record["sk"].startswith("SLOT#")],
            prescriptions={record["prescriptionId"]: record for record in table("PrescriptionsTable")},
            approvals={record["approvalId"]: record for record in table("ApprovalsTable")},
            audit=self.audit_event_ids(),
            executions=self.executions(),
            depths=self.busy_queues(),
            dead_letters=self.dead_letters(),
        )
