"""Static properties of the approval workflow's definition and of what reads its records."""

import json
from typing import Any

import pytest

from carebus.approvals import REJECTION_ERROR, VISIBLE_FIELDS, WAIT_STATES, approval_id_for
from carebus.events import (
    PRESCRIPTION_APPROVAL_FAILED,
    PRESCRIPTION_APPROVED,
    PRESCRIPTION_EXPIRED,
    PRESCRIPTION_REJECTED,
    SOURCE_APPROVALS,
)
from carebus_local.template import PROJECT_ROOT

DEFINITION = PROJECT_ROOT / "statemachines" / "prescription_approval.asl.json"
FAILURE_PATH = "MarkApprovalFailed"


@pytest.fixture(scope="module")
def states() -> dict[str, Any]:
    return json.loads(DEFINITION.read_text())["States"]


def tasks(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: state for name, state in states.items() if state["Type"] == "Task"}


def announcements(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: state for name, state in tasks(states).items() if state["Resource"].endswith("putEvents")}


def reachable_from(states: dict[str, Any], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        state = states[name]
        todo += [state["Next"]] if "Next" in state else []
        todo += [catcher["Next"] for catcher in state.get("Catch", [])]
    return seen


def test_the_workflow_names_each_approval_as_the_approvals_domain_does(states):
    assert states["Configure"]["Parameters"][
        "approvalId.$"
    ] == "States.Format('{}', $.prescriptionId)".replace("{}", approval_id_for("{}"))


def test_each_stage_waits_for_a_task_token_in_the_state_the_approvals_domain_names(states):
    for stage, name in WAIT_STATES.items():
        state = states[name]
        assert state["Resource"].endswith(".waitForTaskToken"), name
        assert state["Parameters"]["MessageBody"]["stage"] == stage


def test_a_rejection_is_caught_by_the_error_name_the_approvals_function_sends(states):
    for name in WAIT_STATES.values():
        caught = [catcher["ErrorEquals"] for catcher in states[name]["Catch"]]
        assert [REJECTION_ERROR] in caught, name


def test_every_task_but_the_announcements_catches_everything_into_the_failure_path(states):
    for name, state in tasks(states).items():
        if name in announcements(states) or name in reachable_from(states, FAILURE_PATH):
            continue
        final_catcher = state["Catch"][-1]
        assert (final_catcher["ErrorEquals"], final_catcher["Next"]) == (["States.ALL"], FAILURE_PATH), name


def test_the_failure_path_never_loops_and_ends_in_a_failed_execution(states):
    path = reachable_from(states, FAILURE_PATH)

    assert FAILURE_PATH not in {
        target
        for name in path
        for target in [states[name].get("Next"), *(c["Next"] for c in states[name].get("Catch", []))]
        if target
    }
    assert [states[name]["Type"] for name in path if "Next" not in states[name]] == ["Fail"]


def test_the_announcements_retry_but_are_never_caught_so_a_redrive_repeats_only_them(states):
    outcomes = announcements(states)
    for name, state in outcomes.items():
        if name in reachable_from(states, FAILURE_PATH):
            continue
        assert state["Retry"], name
        assert "Catch" not in state, name
        assert state.get("End") is True, name


def test_every_announcement_carries_the_event_id_of_its_fact(states):
    announced = {}
    for state in announcements(states).values():
        (entry,) = state["Parameters"]["Entries"]
        assert entry["Source"] == SOURCE_APPROVALS
        announced[entry["DetailType"]] = entry["Detail"]["eventId.$"]
    assert announced == {
        detail_type: f"States.Format('{detail_type}/{{}}', $.approvalId)"
        for detail_type in (
            PRESCRIPTION_EXPIRED,
            PRESCRIPTION_APPROVED,
            PRESCRIPTION_REJECTED,
            PRESCRIPTION_APPROVAL_FAILED,
        )
    }


def test_a_decision_is_recorded_on_approval_and_prescription_in_one_retry_safe_transaction(states):
    for name in ("RecordApproval", "RecordRejection"):
        state = states[name]
        assert state["Resource"] == "arn:aws:states:::aws-sdk:dynamodb:transactWriteItems", name
        updates = [item["Update"] for item in state["Parameters"]["TransactItems"]]
        assert [update["TableName"] for update in updates] == [
            "${ApprovalsTableName}",
            "${PrescriptionsTableName}",
        ]
        for update in updates:
            # The same decision again passes (a retry after a lost reply); any other fails.
            assert update["ConditionExpression"] == "#status = :pending OR #decisionId = :id", name
            assert update["ExpressionAttributeValues"][":id"] == {"S.$": "$.decision.decisionId"}, name


def test_the_rejection_is_read_from_the_callbacks_cause_not_from_a_record(states):
    assert states["ReadRejection"]["Type"] == "Pass"
    assert states["ReadRejection"]["Parameters"]["decision.$"] == "States.StringToJson($.rejection.Cause)"


def test_the_pending_list_index_projects_exactly_what_a_pharmacist_may_see(cfn):
    (index,) = cfn["Resources"]["ApprovalsTable"]["Properties"]["GlobalSecondaryIndexes"]
    keys = {element["AttributeName"] for element in index["KeySchema"]}
    table_keys = {
        element["AttributeName"] for element in cfn["Resources"]["ApprovalsTable"]["Properties"]["KeySchema"]
    }

    assert index["Projection"]["ProjectionType"] == "INCLUDE"
    assert set(index["Projection"]["NonKeyAttributes"]) == set(VISIBLE_FIELDS) - keys - table_keys


def test_the_approvals_function_may_read_the_history_of_the_approval_executions_only(cfn):
    role = cfn["Resources"]["ApprovalsFunctionRole"]["Properties"]
    statements = [
        statement for policy in role["Policies"] for statement in policy["PolicyDocument"]["Statement"]
    ]
    (history,) = [
        statement for statement in statements if "states:GetExecutionHistory" in str(statement["Action"])
    ]

    assert history["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:"
        "${PrescriptionApprovalStateMachine.Name}:*"
    }
    assert not [
        statement
        for statement in statements
        if "dynamodb:UpdateItem" in str(statement["Action"]) or "dynamodb:PutItem" in str(statement["Action"])
    ]


def test_the_audit_trail_ships_a_query_that_counts_facts_by_event_id(cfn):
    (query,) = [
        resource["Properties"]
        for resource in cfn["Resources"].values()
        if resource["Type"] == "AWS::Logs::QueryDefinition"
    ]

    assert query["LogGroupNames"] == [{"Ref": "AuditLogGroup"}]
    stages = [stage.strip() for stage in query["QueryString"].split("|")]
    assert "stats count(*) as deliveries by detailType, eventId" in stages
    assert "stats count(*) as events, sum(deliveries) as deliveries by detailType" in stages


# What an announcement may carry: ids, who and when, never free text (a rejection's reason may name the
# patient; it stays in the encrypted approval and prescription records).
ANNOUNCED_FIELDS = {
    "schemaVersion",
    "eventId",
    "encounterId",
    "prescriptionId",
    "approvalId",
    "decidedBy",
    "decidedAt",
}


def test_every_announcement_of_the_workflow_carries_ids_and_times_only(states):
    details = {
        name: {key.removesuffix(".$") for entry in state["Parameters"]["Entries"] for key in entry["Detail"]}
        for name, state in announcements(states).items()
    }
    assert len(details) == 4
    assert {name: sorted(fields - ANNOUNCED_FIELDS) for name, fields in details.items()} == {
        name: [] for name in details
    }
