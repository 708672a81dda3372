"""The approval workflow on moto's Step Functions engine: request, decide, escalate, expire, and where the
task token may (and may not) go."""

import json
from typing import Any

import boto3
import pytest

from carebus_local.template import PROJECT_ROOT
from carebus_testing import (
    PHARMACIST_SUB,
    PHYSICIAN_SUB,
    SAMPLE_APPROVAL_ID,
    approval_executions,
    body_of,
    deliver_token,
    json_logs,
    load_event,
    request_sample_approval,
    submit_sample,
    wait_for_execution_end,
    wait_until,
)

APPROVE = "approvals/approve.json"
REJECT = "approvals/reject.json"
SHORT_WAITS = {"ApprovalTimeoutSeconds": "2", "ApprovalHeartbeatSeconds": "2"}
EXPIRY_STATES = ["Escalate", "NotifyEscalation", "WaitForEscalatedDecision", "Expire"]


@pytest.fixture
def notifications(stack) -> "TopicReader":
    return TopicReader(stack.outputs["ApprovalsTopicArn"])


class TopicReader:
    """A test queue subscribed (raw delivery) to the approvals topic: what pharmacists would be told."""

    def __init__(self, topic_arn: str) -> None:
        self.sqs = boto3.client("sqs")
        self.url = self.sqs.create_queue(QueueName="test-approvals-topic-reader")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        boto3.client("sns").subscribe(
            TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
        )
        self.received: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        """Every message so far, oldest first (kept, so later calls see them too)."""
        while batch := self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", []):
            for message in batch:
                self.received.append(message)
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return self.received

    def stages(self) -> list[tuple[str, str]]:
        return [
            (json.loads(message["Body"])["stage"], message["MessageAttributes"]["stage"]["StringValue"])
            for message in self.read()
        ]


def the_execution(stack) -> str:
    [execution] = approval_executions(stack)
    return execution["executionArn"]


def history(execution_arn: str) -> list[dict[str, Any]]:
    return boto3.client("stepfunctions").get_execution_history(executionArn=execution_arn, maxResults=1000)[
        "events"
    ]


def states_entered(execution_arn: str) -> list[str]:
    return [
        event["stateEnteredEventDetails"]["name"]
        for event in history(execution_arn)
        if "stateEnteredEventDetails" in event
    ]


def handed_out_tokens(execution_arn: str) -> list[str]:
    """The task tokens the execution handed to the token queue, in order."""
    return [
        json.loads(event["taskScheduledEventDetails"]["parameters"])["MessageBody"]["taskToken"]
        for event in history(execution_arn)
        if event["type"] == "TaskScheduled"
        and event["taskScheduledEventDetails"]["resource"] == "sendMessage.waitForTaskToken"
    ]


def approval_record(driver) -> dict[str, Any]:
    return driver.table("ApprovalsTable").get_item(
        Key={"approvalId": SAMPLE_APPROVAL_ID}, ConsistentRead=True
    )["Item"]


def controlled_prescription(driver) -> dict[str, Any]:
    (record,) = [record for record in driver.items("PrescriptionsTable") if record.get("deaSchedule")]
    return record


def approval_events(driver) -> list[dict[str, Any]]:
    return [event for event in driver.bus_events() if event["source"] == "carebus.approvals"]


def approval_requested(driver) -> dict[str, Any]:
    (event,) = [
        event for event in driver.bus_events() if event["detail-type"] == "PrescriptionApprovalRequested"
    ]
    return event


# ----- the request -----------------------------------------------------------------------------------
def test_a_controlled_prescription_records_a_pending_approval_and_tells_pharmacists(
    function, driver, notifications
):
    driver.capture_bus()

    record = request_sample_approval(driver, function)

    requested = approval_requested(driver)
    prescription = controlled_prescription(driver)
    assert record["approvalId"] == "apr-" + prescription["prescriptionId"] == SAMPLE_APPROVAL_ID
    assert {
        name: record[name] for name in ("drug", "deaSchedule", "quantity", "refills", "prescriberNpi")
    } == {
        name: prescription[name] for name in ("drug", "deaSchedule", "quantity", "refills", "prescriberNpi")
    }
    assert (record["encounterId"], record["prescriptionId"]) == (
        requested["detail"]["encounterId"],
        requested["detail"]["prescriptionId"],
    )
    assert record["requestedAt"] == requested["time"]
    assert (record["status"], record["escalated"]) == ("PENDING", False)
    # Kept (never shown) so that nobody decides a prescription of their own.
    assert record["prescribedBy"] == PHYSICIAN_SUB
    assert record["expiresAt"] > record["tokenStoredAt"]
    assert prescription["status"] == "PENDING_APPROVAL"
    (message,) = notifications.read()
    assert json.loads(message["Body"]) == {"approvalId": SAMPLE_APPROVAL_ID, "stage": "REQUESTED"}
    assert message["MessageAttributes"]["stage"]["StringValue"] == "REQUESTED"


def test_only_the_ids_and_the_request_time_of_the_event_enter_the_workflow(function, driver):
    driver.capture_bus()
    submit_sample(function)
    driver.deliver("PrescriptionsQueue")
    assert driver.deliver_rule_targets() == 1
    requested = approval_requested(driver)

    started = boto3.client("stepfunctions").describe_execution(executionArn=the_execution(driver.stack))

    assert json.loads(started["input"]) == {
        "encounterId": requested["detail"]["encounterId"],
        "prescriptionId": requested["detail"]["prescriptionId"],
        "requestedAt": requested["time"],
    }


def test_a_repeated_request_ends_in_already_requested_without_a_second_approval(
    function, driver, notifications
):
    driver.capture_bus()
    first = request_sample_approval(driver, function)
    requested = approval_requested(driver)
    notifications.read()

    # The same event again, as EventBridge may deliver it twice.
    boto3.client("events").put_events(
        Entries=[
            {
                "EventBusName": driver.stack.outputs["EventBusName"],
                "Source": requested["source"],
                "DetailType": requested["detail-type"],
                "Detail": json.dumps(requested["detail"]),
            }
        ]
    )
    assert driver.deliver_rule_targets() == 1

    executions = wait_until(
        lambda: len(approval_executions(driver.stack)) == 2 and approval_executions(driver.stack)
    )
    (second,) = [execution for execution in executions if execution["executionArn"] != first["executionArn"]]
    assert wait_for_execution_end(second["executionArn"])["status"] == "SUCCEEDED"
    assert "AlreadyRequested" in states_entered(second["executionArn"])
    assert "NotifyPharmacists" not in states_entered(second["executionArn"])
    assert driver.items("ApprovalsTable") == [first]
    assert len(notifications.read()) == 1
    assert driver.depth("ApprovalTokenQueue") == 0
    assert boto3.client("stepfunctions").describe_execution(executionArn=first["executionArn"])["status"] == (
        "RUNNING"
    )


# ----- decisions -------------------------------------------------------------------------------------
def test_an_approval_approves_the_prescription_and_announces_who_and_when(function, driver):
    driver.capture_bus()
    request_sample_approval(driver, function)

    answer = body_of(function("ApprovalsFunction").invoke(load_event(APPROVE)))

    execution = wait_for_execution_end(the_execution(driver.stack))
    assert execution["status"] == "SUCCEEDED"
    assert answer["decidedBy"] == PHARMACIST_SUB
    record = approval_record(driver)
    assert (record["status"], record["decision"], record["decidedBy"], record["decidedAt"]) == (
        "APPROVED",
        "APPROVE",
        PHARMACIST_SUB,
        answer["decidedAt"],
    )
    assert "taskToken" not in record
    prescription = controlled_prescription(driver)
    assert (prescription["status"], prescription["decidedBy"], prescription["decidedAt"]) == (
        "APPROVED",
        PHARMACIST_SUB,
        answer["decidedAt"],
    )
    (event,) = approval_events(driver)
    assert event["detail-type"] == "PrescriptionApproved"
    assert event["detail"] == {
        "schemaVersion": 1,
        "eventId": f"PrescriptionApproved/{SAMPLE_APPROVAL_ID}",
        "encounterId": prescription["encounterId"],
        "prescriptionId": prescription["prescriptionId"],
        "approvalId": SAMPLE_APPROVAL_ID,
        "decidedBy": PHARMACIST_SUB,
        "decidedAt": answer["decidedAt"],
    }
    assert "RecordApproval" in states_entered(execution["executionArn"])


def test_a_rejection_rejects_the_prescription_with_the_reason_and_announces_it(function, driver):
    driver.capture_bus()
    request_sample_approval(driver, function)
    reason = json.loads(load_event(REJECT)["body"])["reason"]

    answer = body_of(function("ApprovalsFunction").invoke(load_event(REJECT)))

    execution = wait_for_execution_end(the_execution(driver.stack))
    assert execution["status"] == "SUCCEEDED"
    record = approval_record(driver)
    assert (record["status"], record["decision"], record["reason"], record["decidedBy"]) == (
        "REJECTED",
        "REJECT",
        reason,
        PHARMACIST_SUB,
    )
    assert "taskToken" not in record
    prescription = controlled_prescription(driver)
    assert (prescription["status"], prescription["rejectionReason"], prescription["decidedBy"]) == (
        "REJECTED",
        reason,
        PHARMACIST_SUB,
    )
    (event,) = approval_events(driver)
    assert event["detail-type"] == "PrescriptionRejected"
    assert event["detail"] == {
        "schemaVersion": 1,
        "eventId": f"PrescriptionRejected/{SAMPLE_APPROVAL_ID}",
        "encounterId": prescription["encounterId"],
        "prescriptionId": prescription["prescriptionId"],
        "approvalId": SAMPLE_APPROVAL_ID,
        "decidedBy": PHARMACIST_SUB,
        "decidedAt": answer["decidedAt"],
    }  # the reason is free text (it may name the patient): it stays in the encrypted records
    assert "RecordApproval" not in states_entered(execution["executionArn"])


def test_the_task_token_never_leaves_carebus(function, driver, notifications):
    driver.capture_bus()
    approvals = function("ApprovalsFunction")
    with json_logs(function("ApprovalTokenFunction")) as token_logs, json_logs(approvals) as api_logs:
        request_sample_approval(driver, function)
        answers = [
            approvals.invoke(load_event("approvals/list_pending.json")),
            approvals.invoke(load_event("approvals/read_approval.json")),
            approvals.invoke(load_event(APPROVE)),
            approvals.invoke(load_event(REJECT)),  # 409, with the approval as it stands
        ]
        execution_arn = the_execution(driver.stack)
        assert wait_for_execution_end(execution_arn)["status"] == "SUCCEEDED"

    (token,) = handed_out_tokens(execution_arn)
    assert [answer["statusCode"] for answer in answers] == [200, 200, 200, 409]
    messages = notifications.read()
    events = driver.bus_events()
    assert messages
    assert events
    assert token_logs
    assert api_logs
    for message in messages:
        assert token not in json.dumps(message)
    for event in events:
        assert token not in json.dumps(event)
    for answer in answers:
        assert token not in json.dumps(answer)
    for line in token_logs + api_logs:
        assert token not in json.dumps(line)
    described = boto3.client("stepfunctions").describe_execution(executionArn=execution_arn)
    assert token not in described["input"] + described["output"]


# ----- the definition --------------------------------------------------------------------------------
def resolve_substitution(stack, value: Any, parameters: dict[str, str]) -> str:
    """A DefinitionSubstitutions value of the template: a Ref to a parameter or to a resource."""
    name = value["Ref"]
    if name in stack.cfn["Parameters"]:
        return str(parameters.get(name, stack.cfn["Parameters"][name].get("Default")))
    return str(stack.ref(name))


class TestTheDefinition:
    @pytest.fixture
    def stack_parameters(self) -> dict[str, str]:
        # Distinct values, so that each wait field shows which parameter it came from.
        return {"ApprovalTimeoutSeconds": "7", "ApprovalHeartbeatSeconds": "5"}

    def test_the_deployed_definition_is_the_asl_file_with_the_template_substitutions(
        self, stack, sam_template, stack_parameters
    ):
        properties = sam_template["Resources"]["PrescriptionApprovalStateMachine"]["Properties"]
        text = (PROJECT_ROOT / properties["DefinitionS3Location"]).read_text()
        for name, value in properties["DefinitionSubstitutions"].items():
            text = text.replace("${" + name + "}", resolve_substitution(stack, value, stack_parameters))

        deployed = boto3.client("stepfunctions").describe_state_machine(
            stateMachineArn=stack.outputs["PrescriptionApprovalStateMachineArn"]
        )["definition"]

        assert "${" not in deployed
        assert json.loads(deployed) == json.loads(text)
        assert stack.outputs["ApprovalTokenQueueUrl"] in deployed
        assert stack.outputs["ApprovalsTopicArn"] in deployed

    def test_the_waits_take_their_seconds_from_the_template_parameters(
        self, function, driver, stack_parameters
    ):
        request_sample_approval(driver, function)

        (scheduled,) = [
            event["taskScheduledEventDetails"]
            for event in history(the_execution(driver.stack))
            if event["type"] == "TaskScheduled"
            and event["taskScheduledEventDetails"]["resource"] == "sendMessage.waitForTaskToken"
        ]

        assert scheduled["timeoutInSeconds"] == int(stack_parameters["ApprovalTimeoutSeconds"])
        assert scheduled["heartbeatInSeconds"] == int(stack_parameters["ApprovalHeartbeatSeconds"])


# ----- unanswered requests ---------------------------------------------------------------------------
class TestUnansweredRequests:
    """Two-second waits: an unanswered request escalates after one wait and expires after the next."""

    @pytest.fixture
    def stack_parameters(self) -> dict[str, str]:
        return dict(SHORT_WAITS)

    def test_an_unanswered_request_escalates_once_then_expires(
        self, function, driver, notifications, heartbeats
    ):
        driver.capture_bus()
        request_sample_approval(driver, function)
        deliver_token(driver)  # the escalated wait's token
        escalated = approval_record(driver)
        execution = wait_for_execution_end(the_execution(driver.stack))

        assert (escalated["status"], escalated["escalated"]) == ("PENDING", True)
        assert escalated["taskToken"]
        assert execution["status"] == "SUCCEEDED"
        entered = states_entered(execution["executionArn"])
        assert [state for state in entered if state in EXPIRY_STATES] == EXPIRY_STATES
        assert entered.count("Escalate") == 1
        assert [event["type"] for event in history(execution["executionArn"])].count("TaskTimedOut") == 2
        # Both tokens were stored and their waits heartbeaten while still open.
        assert heartbeats == ["accepted", "accepted"]
        assert notifications.stages() == [("REQUESTED", "REQUESTED"), ("ESCALATED", "ESCALATED")]
        record = approval_record(driver)
        assert (record["status"], record["escalated"]) == ("EXPIRED", True)
        assert "taskToken" not in record
        prescription = controlled_prescription(driver)
        assert prescription["status"] == "EXPIRED"
        (event,) = approval_events(driver)
        assert event["detail-type"] == "PrescriptionExpired"
        assert event["detail"] == {
            "schemaVersion": 1,
            "eventId": f"PrescriptionExpired/{SAMPLE_APPROVAL_ID}",
            "encounterId": prescription["encounterId"],
            "prescriptionId": prescription["prescriptionId"],
            "approvalId": SAMPLE_APPROVAL_ID,
        }

    def test_a_decision_during_the_escalated_wait_still_approves(self, function, driver, notifications):
        driver.capture_bus()
        request_sample_approval(driver, function)
        deliver_token(driver)  # the escalated wait's token
        assert approval_record(driver)["escalated"] is True

        response = function("ApprovalsFunction").invoke(load_event(APPROVE))

        assert response["statusCode"] == 200
        execution = wait_for_execution_end(the_execution(driver.stack))
        assert execution["status"] == "SUCCEEDED"
        entered = states_entered(execution["executionArn"])
        assert "Escalate" in entered
        assert "ExpireApproval" not in entered
        assert controlled_prescription(driver)["status"] == "APPROVED"
        assert approval_record(driver)["status"] == "APPROVED"
        assert [event["detail-type"] for event in approval_events(driver)] == ["PrescriptionApproved"]
        assert [stage for stage, _ in notifications.stages()] == ["REQUESTED", "ESCALATED"]

    def test_no_token_of_either_wait_reaches_a_notification_an_event_or_a_log(
        self, function, driver, notifications
    ):
        driver.capture_bus()
        with json_logs(function("ApprovalTokenFunction")) as token_logs:
            request_sample_approval(driver, function)
            deliver_token(driver)
            execution_arn = the_execution(driver.stack)
            wait_for_execution_end(execution_arn)

        tokens = handed_out_tokens(execution_arn)
        assert len(tokens) == 2
        assert token_logs
        published = (
            json.dumps(notifications.read()) + json.dumps(driver.bus_events()) + json.dumps(token_logs)
        )
        for token in tokens:
            assert token not in published


def test_only_the_controlled_prescription_starts_an_approval(function, driver):
    submit_sample(function)
    driver.deliver("PrescriptionsQueue")

    assert driver.deliver_rule_targets() == 1

    started = boto3.client("stepfunctions").describe_execution(executionArn=the_execution(driver.stack))
    assert json.loads(started["input"])["prescriptionId"] == controlled_prescription(driver)["prescriptionId"]
