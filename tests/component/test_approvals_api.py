"""ApprovalsFunction on moto: pharmacists list, read and decide approvals; who may, and what conflicts."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from carebus.adapters import approval_workflow
from carebus.approvals import ApprovalStatus, approval_view
from carebus_chaos.faults import Fault, FaultInjector, once
from carebus_local.functions import InProcessFunction
from carebus_testing import (
    PHARMACIST_CLAIMS,
    PHARMACIST_SUB,
    PHYSICIAN_SUB,
    SAMPLE_APPROVAL_ID,
    approval_executions,
    as_caller,
    body_of,
    deliver_token,
    listing,
    load_event,
    recorded_approval,
    recorded_calls,
    request_sample_approval,
    submit,
    submit_sample,
    wait_for_execution_end,
    wait_until,
    with_body,
)

LIST = "approvals/list_pending.json"
READ = "approvals/read_approval.json"
APPROVE = "approvals/approve.json"
REJECT = "approvals/reject.json"
ROUTES = [LIST, READ, APPROVE, REJECT]

PHYSICIAN_CLAIMS = {"sub": PHYSICIAN_SUB, "cognito:groups": "physicians"}
# The sample's prescriber, who is also a pharmacist: still may not decide their own prescription.
PRESCRIBING_PHARMACIST = {"sub": PHYSICIAN_SUB, "cognito:groups": ["physicians", "pharmacists"]}
SECOND_PHARMACIST = {"sub": "5e2d8c41-0b7a-4f3e-a1d2-6c9b8e7f0a13", "cognito:groups": "pharmacists"}
HIDDEN = ("taskToken", "executionArn", "prescribedBy")
PATIENT_DEMOGRAPHICS = ("Alex Sample", "1980-04-12", "XZ9876543210", "MRN-000123")
DECISION_FIELDS = ("decision", "decidedBy", "decidedAt", "reason")


@pytest.fixture
def approvals(function) -> InProcessFunction:
    return function("ApprovalsFunction")


@pytest.fixture
def pending(driver, function) -> dict[str, Any]:
    """The sample's controlled prescription waiting for a pharmacist, its token stored."""
    return request_sample_approval(driver, function)


def approval_record(driver, approval_id: str = SAMPLE_APPROVAL_ID) -> dict[str, Any]:
    return driver.table("ApprovalsTable").get_item(Key={"approvalId": approval_id}, ConsistentRead=True)[
        "Item"
    ]


def for_approval(sample: str, approval_id: str) -> dict[str, Any]:
    """A sample approvals event addressed to another approval id."""
    event = load_event(sample)
    event["pathParameters"] = {"approvalId": approval_id}
    event["path"] = event["resource"].replace("{approvalId}", approval_id)
    return event


def decision(body: Any) -> dict[str, Any]:
    """The approve sample with another body, from the sample's pharmacist."""
    return as_caller(with_body(load_event(APPROVE), body), PHARMACIST_CLAIMS)


def assert_still_undecided(driver, token: str) -> None:
    record = approval_record(driver)
    assert record["status"] == "PENDING"
    assert record["taskToken"] == token
    for field in DECISION_FIELDS:
        assert field not in record


def assert_no_secrets(answer: dict[str, Any], token: str) -> None:
    assert token not in answer["body"]
    for hidden in HIDDEN:
        assert f'"{hidden}"' not in answer["body"]


# ----- reading ---------------------------------------------------------------------------------------
def test_the_pending_list_shows_the_sample_approval_without_its_token(approvals, pending):
    response = approvals.invoke(load_event(LIST))

    assert response["statusCode"] == 200
    listed = body_of(response)["approvals"]
    assert [item["approvalId"] for item in listed] == [SAMPLE_APPROVAL_ID]
    (item,) = listed
    assert item["status"] == "PENDING"
    assert (item["drug"], item["deaSchedule"], item["quantity"], item["refills"]) == (
        pending["drug"],
        "II",
        12,
        0,
    )
    assert_no_secrets(response, pending["taskToken"])


def test_the_list_is_pending_by_default_and_oldest_request_first(approvals, pending, function, driver):
    time.sleep(1.1)  # the request time is the event's, to the second
    second_encounter = submit(function)
    driver.deliver("PrescriptionsQueue")
    assert driver.deliver_rule_targets() == 1
    deliver_token(driver)

    response = approvals.invoke(listing(None))

    assert response["statusCode"] == 200
    listed = body_of(response)["approvals"]
    assert [item["approvalId"] for item in listed] == [
        SAMPLE_APPROVAL_ID,
        f"apr-rx-{second_encounter}-2",
    ]
    assert listed[0]["requestedAt"] < listed[1]["requestedAt"]


def test_a_decided_approval_leaves_the_pending_list_for_its_outcomes(approvals, pending, driver):
    assert approvals.invoke(load_event(APPROVE))["statusCode"] == 200
    recorded_approval(driver)

    by_status = {
        status: [item["approvalId"] for item in body_of(approvals.invoke(listing(status)))["approvals"]]
        for status in ApprovalStatus
    }

    assert by_status == {status: [] for status in ApprovalStatus} | {"APPROVED": [SAMPLE_APPROVAL_ID]}


def test_an_unknown_status_filter_is_a_field_error(approvals):
    for status in ("pending", "DECIDED", ""):
        response = approvals.invoke(listing(status))

        assert response["statusCode"] == 400, status
        assert [error["field"] for error in body_of(response)["errors"]] == ["status"], status


def test_reading_the_sample_approval_shows_what_a_pharmacist_needs_to_decide(approvals, pending):
    response = approvals.invoke(load_event(READ))

    assert response["statusCode"] == 200
    shown = body_of(response)
    assert shown == {
        "approvalId": SAMPLE_APPROVAL_ID,
        "status": "PENDING",
        "escalated": False,
        "prescriptionId": pending["prescriptionId"],
        "encounterId": pending["encounterId"],
        "drug": pending["drug"],
        "deaSchedule": "II",
        "quantity": 12,
        "refills": 0,
        "prescriberNpi": pending["prescriberNpi"],
        "requestedAt": pending["requestedAt"],
        "expiresAt": pending["expiresAt"],
    }
    assert_no_secrets(response, pending["taskToken"])
    for value in PATIENT_DEMOGRAPHICS:
        assert value not in response["body"]


@pytest.mark.parametrize(
    ("sample", "operation"),
    [(LIST, "Query"), (READ, "GetItem"), (APPROVE, "GetItem")],
    ids=["list", "read", "decide"],
)
def test_a_throttled_table_answers_the_documented_503_problem(approvals, pending, sample, operation):
    with FaultInjector(once(operation, Fault.THROTTLED)).active() as faults:
        response = approvals.invoke(load_event(sample))

    assert faults.total() == 1
    assert response["statusCode"] == 503
    assert response["multiValueHeaders"]["Content-Type"] == ["application/problem+json"]
    assert response["multiValueHeaders"]["Retry-After"] == ["2"]


def test_an_unknown_approval_is_not_found(approvals, pending):
    for sample in (READ, APPROVE):
        response = approvals.invoke(for_approval(sample, "apr-rx-00000000-0000-0000-0000-000000000000-1"))

        assert response["statusCode"] == 404, sample
        assert body_of(response)["status"] == 404, sample


# ----- deciding --------------------------------------------------------------------------------------
def test_approving_the_sample_answers_the_approval_as_the_workflow_records_it(approvals, pending, driver):
    response = approvals.invoke(load_event(APPROVE))

    assert response["statusCode"] == 200
    answer = body_of(response)
    assert (answer["approvalId"], answer["status"], answer["decision"]) == (
        SAMPLE_APPROVAL_ID,
        "APPROVED",
        "APPROVE",
    )
    assert answer["decidedBy"] == PHARMACIST_SUB
    assert "reason" not in answer
    assert_no_secrets(response, pending["taskToken"])
    record = recorded_approval(driver)
    assert (record["status"], record["decidedBy"], record["decidedAt"]) == (
        "APPROVED",
        PHARMACIST_SUB,
        answer["decidedAt"],
    )
    assert "taskToken" not in record
    assert approval_view(record) == answer


def test_rejecting_the_sample_records_its_reason(approvals, pending, driver):
    reason = json.loads(load_event(REJECT)["body"])["reason"]

    response = approvals.invoke(load_event(REJECT))

    assert response["statusCode"] == 200
    answer = body_of(response)
    assert (answer["status"], answer["decision"], answer["reason"], answer["decidedBy"]) == (
        "REJECTED",
        "REJECT",
        reason,
        PHARMACIST_SUB,
    )
    assert_no_secrets(response, pending["taskToken"])
    record = recorded_approval(driver)
    assert (record["status"], record["reason"]) == ("REJECTED", reason)
    assert "taskToken" not in record
    assert approval_view(record) == answer


def test_the_function_itself_writes_nothing_the_workflow_records_the_decision(approvals, pending, driver):
    with recorded_calls() as calls:
        assert approvals.invoke(load_event(APPROVE))["statusCode"] == 200

    assert [(service, operation) for service, operation, _ in calls] == [
        ("dynamodb", "GetItem"),
        ("stepfunctions", "SendTaskSuccess"),
    ]


def test_a_physician_may_not_use_any_approvals_route(approvals, pending, driver):
    for sample in ROUTES:
        response = approvals.invoke(as_caller(load_event(sample), PHYSICIAN_CLAIMS))

        assert response["statusCode"] == 403, sample
        assert_no_secrets(response, pending["taskToken"])
    assert_still_undecided(driver, pending["taskToken"])


def test_a_caller_in_no_group_may_not_decide(approvals, pending, driver):
    response = approvals.invoke(as_caller(load_event(APPROVE), {"sub": PHARMACIST_SUB}))

    assert response["statusCode"] == 403
    assert_still_undecided(driver, pending["taskToken"])


def test_a_pharmacist_may_not_decide_their_own_prescription(approvals, pending, driver):
    for sample in (APPROVE, REJECT):
        response = approvals.invoke(as_caller(load_event(sample), PRESCRIBING_PHARMACIST))

        assert response["statusCode"] == 403, sample
    assert_still_undecided(driver, pending["taskToken"])
    [execution] = approval_executions(driver.stack)
    assert execution["status"] == "RUNNING"


def test_the_prescribing_pharmacist_may_still_read_the_approval(approvals, pending):
    response = approvals.invoke(as_caller(load_event(READ), PRESCRIBING_PHARMACIST))

    assert response["statusCode"] == 200
    assert_no_secrets(response, pending["taskToken"])


@pytest.mark.parametrize(
    ("first", "second", "current"),
    [(APPROVE, REJECT, "APPROVED"), (REJECT, APPROVE, "REJECTED")],
    ids=["reject-after-approve", "approve-after-reject"],
)
def test_a_decided_approval_conflicts_showing_its_current_state(approvals, pending, first, second, current):
    decided = body_of(approvals.invoke(load_event(first)))

    response = approvals.invoke(as_caller(load_event(second), SECOND_PHARMACIST))

    assert response["statusCode"] == 409
    problem = body_of(response)
    assert problem["current"]["status"] == current
    assert problem["current"]["decidedBy"] == PHARMACIST_SUB
    assert problem["current"]["decidedAt"] == decided["decidedAt"]
    assert_no_secrets(response, pending["taskToken"])


def test_a_decision_before_the_token_is_stored_conflicts(approvals, function, driver):
    submit_sample(function)
    driver.deliver("PrescriptionsQueue")
    assert driver.deliver_rule_targets() == 1
    wait_until(lambda: driver.depth("ApprovalTokenQueue"), what="the token on its queue")

    response = approvals.invoke(load_event(APPROVE))

    assert response["statusCode"] == 409
    assert body_of(response)["current"]["status"] == "PENDING"
    assert "taskToken" not in approval_record(driver)


INVALID_DECISIONS = [
    ({}, ["decision"]),
    ({"reason": "because"}, ["decision"]),
    ({"decision": "MAYBE"}, ["decision"]),
    ({"decision": "approve"}, ["decision"]),
    ({"decision": "APPROVE", "decidedBy": PHARMACIST_SUB}, ["decidedBy"]),
    ({"decision": "REJECT", "reason": "r" * 501}, ["reason"]),
]


def test_an_invalid_decision_is_a_field_error_and_decides_nothing(approvals, pending, driver):
    for body, fields in INVALID_DECISIONS:
        response = approvals.invoke(decision(body))

        assert response["statusCode"] == 400, body
        assert [error["field"] for error in body_of(response)["errors"]] == fields, body
    assert_still_undecided(driver, pending["taskToken"])


def test_a_rejection_without_a_reason_is_refused_and_decides_nothing(approvals, pending, driver):
    for body in (
        {"decision": "REJECT"},
        {"decision": "REJECT", "reason": ""},
        {"decision": "REJECT", "reason": " "},
    ):
        response = approvals.invoke(decision(body))

        assert response["statusCode"] == 400, body
        assert body_of(response)["errors"], body
    assert_still_undecided(driver, pending["taskToken"])


def test_a_body_that_is_not_a_json_object_decides_nothing(approvals, pending, driver):
    for body in ("not json", "[]", '"APPROVE"'):
        response = approvals.invoke(decision(body))

        assert response["statusCode"] == 400, body
        assert [error["field"] for error in body_of(response)["errors"]] == ["body"], body
    assert_still_undecided(driver, pending["taskToken"])


def test_a_rejection_without_a_reason_is_a_field_error_naming_the_reason(approvals):
    response = approvals.invoke(decision({"decision": "REJECT"}))

    assert response["statusCode"] == 400
    assert [error["field"] for error in body_of(response)["errors"]] == ["reason"]


# ----- concurrency and the wait ending meanwhile -----------------------------------------------------


def separate_environments(stack, count: int) -> list[InProcessFunction]:
    """The approvals function imported once per Lambda execution environment: on Lambda concurrent
    requests never share a module (its resolver holds the current event)."""
    environments = []
    for index in range(count):
        environment = InProcessFunction(
            stack.functions["ApprovalsFunction"], stack.function_environment("ApprovalsFunction")
        )
        environment.module_name = f"{environment.module_name}_environment_{index}"
        environments.append(environment)
    return environments


def test_of_concurrent_decisions_exactly_one_wins_and_the_rest_conflict(stack, pending, driver, monkeypatch):
    driver.capture_bus()
    pharmacists = [
        {"sub": f"00000000-0000-4000-8000-{index:012d}", "cognito:groups": "pharmacists"}
        for index in range(6)
    ]
    events = [
        as_caller(load_event(APPROVE if index % 2 else REJECT), claims)
        for index, claims in enumerate(pharmacists)
    ]
    environments = separate_environments(stack, len(events))
    # Every request has read the pending approval and passed its checks before any of them resumes the
    # workflow: the environments share the domain package, so one patch holds them all back.
    everyone_has_checked = threading.Barrier(len(events), timeout=30)
    real_check = approval_workflow.check_decision

    def check_then_wait(record: dict[str, Any], pharmacist: str, request: Any) -> bool:
        already = real_check(record, pharmacist, request)
        everyone_has_checked.wait()
        return already

    monkeypatch.setattr(approval_workflow, "check_decision", check_then_wait)

    with ThreadPoolExecutor(max_workers=len(events)) as pool:
        responses = list(
            pool.map(lambda pair: pair[0].invoke(pair[1]), zip(environments, events, strict=True))
        )

    statuses = sorted(response["statusCode"] for response in responses)
    assert statuses == [200] + [409] * (len(events) - 1)
    (winner,) = [body_of(response) for response in responses if response["statusCode"] == 200]
    for response in responses:
        if response["statusCode"] == 409:
            assert body_of(response)["current"]["decidedBy"] == winner["decidedBy"]
    record = recorded_approval(driver)
    assert (record["status"], record["decidedBy"]) == (winner["status"], winner["decidedBy"])
    [execution] = approval_executions(stack)
    assert wait_for_execution_end(execution["executionArn"])["status"] == "SUCCEEDED"
    outcomes = [
        (event["detail-type"], event["detail"]["decidedBy"])
        for event in driver.bus_events()
        if event["source"] == "carebus.approvals"
    ]
    expected = "PrescriptionApproved" if winner["status"] == "APPROVED" else "PrescriptionRejected"
    assert outcomes == [(expected, winner["decidedBy"])]


def test_a_decision_throttled_before_it_reached_the_workflow_answers_503_and_can_be_sent_again(
    approvals, pending, driver
):
    with FaultInjector(once("SendTaskSuccess", Fault.THROTTLED)).active() as faults:
        failed = approvals.invoke(load_event(APPROVE))

    assert faults.total() == 1
    assert failed["statusCode"] == 503
    assert failed["multiValueHeaders"]["Retry-After"] == ["2"]
    assert_still_undecided(driver, pending["taskToken"])
    retried = approvals.invoke(load_event(APPROVE))

    assert retried["statusCode"] == 200
    [execution] = approval_executions(driver.stack)
    assert wait_for_execution_end(execution["executionArn"])["status"] == "SUCCEEDED"
    (prescription,) = [
        record for record in driver.items("PrescriptionsTable") if record.get("deaSchedule") == "II"
    ]
    assert prescription["status"] == "APPROVED"


class TestWhenTheWaitEndsFirst:
    """Short waits: the workflow escalates and expires within seconds."""

    @pytest.fixture
    def stack_parameters(self) -> dict[str, str]:
        return {"ApprovalTimeoutSeconds": "2", "ApprovalHeartbeatSeconds": "2"}

    def test_a_decision_after_expiry_conflicts_showing_expired(self, approvals, pending, driver):
        [execution] = approval_executions(driver.stack)
        assert wait_for_execution_end(execution["executionArn"])["status"] == "SUCCEEDED"

        response = approvals.invoke(load_event(APPROVE))

        assert response["statusCode"] == 409
        current = body_of(response)["current"]
        assert (current["status"], current["escalated"]) == ("EXPIRED", True)
        for field in DECISION_FIELDS:
            assert field not in current
        assert approval_record(driver)["status"] == "EXPIRED"


# ----- groups as Cognito lists them, not as the REST authorizer flattens them (issue 9) -------------------


def signed_in(driver, sample: str, email: str, *groups: str) -> dict[str, Any]:
    """The sample as API Gateway passes it for a new user of the stack's pool in these groups: the claims
    the (offline) Cognito authorizer verified, and the ID token itself in the Authorization header."""
    from copy import deepcopy

    import boto3
    import requests

    from carebus_local.cognito import CognitoVerifier

    cognito = boto3.client("cognito-idp")
    pool, client = driver.stack.ref("UserPool"), driver.stack.ref("UserPoolClient")
    existing = {group["GroupName"] for group in cognito.list_groups(UserPoolId=pool)["Groups"]}
    password = "Sample-Passw0rd-1234"
    cognito.admin_create_user(UserPoolId=pool, Username=email, MessageAction="SUPPRESS")
    cognito.admin_set_user_password(UserPoolId=pool, Username=email, Password=password, Permanent=True)
    for group in groups:
        if group not in existing:
            cognito.create_group(UserPoolId=pool, GroupName=group)
        cognito.admin_add_user_to_group(UserPoolId=pool, Username=email, GroupName=group)
    token = cognito.initiate_auth(
        ClientId=client,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": email, "PASSWORD": password},
    )["AuthenticationResult"]["IdToken"]
    # moto answers the pool's JWKS endpoint in process, as the offline runtime's moto server does over HTTP.
    verifier = CognitoVerifier(
        cognito,
        f"https://cognito-idp.{driver.stack.region}.amazonaws.com",
        driver.stack.region,
        fetch_jwks=lambda url: requests.get(url, timeout=10).json(),
    )
    event = deepcopy(load_event(sample))
    authorization = f"Bearer {token}"
    event["requestContext"]["authorizer"] = {
        "claims": verifier.verify(authorization, [driver.stack.attribute("UserPool", "Arn")])
    }
    event["headers"]["Authorization"] = authorization
    event["multiValueHeaders"]["Authorization"] = [authorization]
    return event


def test_a_member_of_one_group_named_trainee_comma_pharmacists_is_no_pharmacist(approvals, pending, driver):
    for index, sample in enumerate(ROUTES):
        event = signed_in(driver, sample, f"trainee-{index}@example.org", "trainee,pharmacists")
        # Flattened, the one group reads exactly as two would.
        assert event["requestContext"]["authorizer"]["claims"]["cognito:groups"] == "trainee,pharmacists"

        response = approvals.invoke(event)

        assert response["statusCode"] == 403, sample
        assert_no_secrets(response, pending["taskToken"])
    assert_still_undecided(driver, pending["taskToken"])


def test_a_member_of_both_groups_is_a_pharmacist_by_the_groups_its_token_lists(approvals, pending, driver):
    event = signed_in(driver, LIST, "both@example.org", "physicians", "pharmacists")
    flattened = event["requestContext"]["authorizer"]["claims"]["cognito:groups"]
    assert sorted(flattened.split(",")) == ["pharmacists", "physicians"]

    response = approvals.invoke(event)

    assert response["statusCode"] == 200
    assert [item["approvalId"] for item in body_of(response)["approvals"]] == [SAMPLE_APPROVAL_ID]
    # Without the token the same claims are ambiguous and grant nothing.
    del event["headers"]["Authorization"], event["multiValueHeaders"]["Authorization"]
    assert approvals.invoke(event)["statusCode"] == 403


def at_approval(event: dict[str, Any], approval_id: str) -> dict[str, Any]:
    changed = json.loads(json.dumps(event))
    changed["pathParameters"] = {"approvalId": approval_id}
    changed["path"] = changed["resource"].replace("{approvalId}", approval_id)
    return changed


@pytest.mark.parametrize(
    "approval_id",
    [
        "apr-rx-" + "5f51a656-9daa-559d-8d95-7aa5a75d9b03-2" * 60,
        "apr-rx-5f51a656-9daa-559d-8d95-7aa5a75d9b03-0",
        "apr-rx-5f51a656-9daa-559d-8d95-7aa5a75d9b03",
        "a-7",
        "apr-rx-5f51a656-9daa-559d-8d95-7aa5a75d9b03-2%0A",
    ],
    ids=["over-2-kib", "item-zero", "no-item", "short", "encoded-newline"],
)
@pytest.mark.parametrize("sample", ["approvals/read_approval.json", "approvals/approve.json"])
def test_an_approval_id_that_cannot_exist_is_404_before_any_aws_call(approvals, sample, approval_id):
    with FaultInjector(lambda call: None).active() as calls:
        response = approvals.invoke(at_approval(load_event(sample), approval_id))

    assert response["statusCode"] == 404
    assert sum(calls.calls.values()) == 0
    assert approval_id not in response["body"]
