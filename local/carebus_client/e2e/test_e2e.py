"""The whole flow, against whichever stack the suite was given: what a user and an operator can see."""

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from carebus_client.api import ApiClient
from carebus_client.dead_letters import find_dead_letter_queue, peek, redrive
from carebus_client.e2e.conftest import eventually
from carebus_client.e2e.targets import AUDIT_LOG, MESSAGE_MOVE_TASK, QUICK_RETRIES, REQUEST_MODELS
from carebus_client.errors import ApiProblemError
from carebus_client.samples import full_encounter, invalid_encounter
from carebus_client.stacks import Stack
from carebus_client.trace import trace_encounter

# What a client needs of a stack, found through its outputs.
CLIENT_OUTPUTS = ("ApiUrl", "UserPoolId", "UserPoolClientId", "EventBusName", "EncountersTableName")


def today() -> Any:
    return datetime.now(UTC).date()


def refusal(call: Any) -> ApiProblemError:
    with pytest.raises(ApiProblemError) as refused:
        call()
    return refused.value


@pytest.fixture(scope="module")
def encounter(physician: ApiClient) -> dict[str, Any]:
    """One full encounter (procedures, a follow-up, an uncontrolled and a controlled prescription),
    submitted, and its downstream state once every consumer has handled it."""
    answer = physician.submit_encounter(full_encounter(today()), f"e2e-{uuid.uuid4()}")

    def handled() -> dict[str, Any] | None:
        state = physician.encounter(answer["encounterId"])
        done = state["claim"] and state["appointment"] and len(state["prescriptions"]) == 2
        return state if done else None

    return {"answer": answer, "state": eventually(handled, "claim, appointment and prescriptions")}


def test_the_stack_publishes_what_a_client_needs(stack: Stack):
    assert [name for name in CLIENT_OUTPUTS if not stack.outputs.get(name)] == []


def test_a_request_without_a_token_is_refused_with_401(stack: Stack):
    anonymous = ApiClient(stack.target.api_url or stack.output("ApiUrl"), id_token="")

    with pytest.raises(Exception, match="401"):
        anonymous.approvals()


def test_a_pharmacist_may_not_submit_an_encounter(pharmacist: ApiClient):
    refused = refusal(lambda: pharmacist.submit_encounter(full_encounter(today()), f"e2e-{uuid.uuid4()}"))

    assert refused.status == 403


def test_an_encounter_is_accepted_and_reaches_billing_scheduling_and_prescriptions(encounter: dict[str, Any]):
    answer, state = encounter["answer"], encounter["state"]

    assert answer["status"] == "ACCEPTED"
    assert state["status"] == "PUBLISHED"
    assert state["claim"]["status"] == "SUBMITTED"
    assert state["claim"]["totalCents"] > 0
    assert state["appointment"]["status"] == "BOOKED"
    assert sorted(rx["status"] for rx in state["prescriptions"]) == ["PENDING_APPROVAL", "RELEASED"]


def test_the_same_idempotency_key_answers_the_same_encounter(physician: ApiClient):
    key = f"e2e-{uuid.uuid4()}"
    first = physician.submit_encounter(full_encounter(today()), key)
    again = physician.submit_encounter(full_encounter(today()), key)

    assert again["encounterId"] == first["encounterId"]


def test_a_body_the_domain_refuses_is_a_400_naming_each_field(physician: ApiClient):
    refused = refusal(lambda: physician.submit_encounter(invalid_encounter(today()), f"e2e-{uuid.uuid4()}"))

    assert refused.status == 400
    assert {"practitionerNpi", "encounterDate"} <= refused.error_fields


def test_a_body_the_model_refuses_is_a_400_from_the_gateway(physician: ApiClient, needs):
    needs(REQUEST_MODELS)
    body = full_encounter(today())
    del body["patient"]

    refused = refusal(lambda: physician.submit_encounter(body, f"e2e-{uuid.uuid4()}"))

    assert refused.status == 400
    # The gateway's own answer (the template's BAD_REQUEST_BODY): the body named, nothing sent echoed.
    assert [(error["field"], error["code"]) for error in refused.problem["errors"]] == [
        ("body", "gateway_model")
    ]


def test_a_pharmacist_approves_the_controlled_prescription(
    encounter: dict[str, Any], pharmacist: ApiClient, physician: ApiClient
):
    (controlled,) = [rx for rx in encounter["state"]["prescriptions"] if rx.get("deaSchedule")]
    approval_id = f"apr-{controlled['prescriptionId']}"

    def decided() -> dict[str, Any] | None:
        try:
            return pharmacist.decide(approval_id, "APPROVE")
        except ApiProblemError as problem:
            # Not recorded yet (404), or its token not stored yet (409, still pending): try again.
            if problem.status == 404 or (problem.status == 409 and "not ready" in str(problem)):
                return None
            raise

    approved = eventually(decided, f"{approval_id} to become decidable")
    contradicted = refusal(lambda: pharmacist.decide(approval_id, "REJECT", "changed my mind"))

    assert approved["status"] == "APPROVED"
    assert contradicted.status == 409

    def released() -> bool:
        prescriptions = physician.encounter(encounter["answer"]["encounterId"])["prescriptions"]
        return {rx["prescriptionId"]: rx["status"] for rx in prescriptions}[controlled["prescriptionId"]] == (
            "APPROVED"
        )

    eventually(released, "the prescription to be APPROVED")


def test_the_trace_follows_the_encounter_through_its_records(stack: Stack, encounter: dict[str, Any]):
    steps = trace_encounter(stack, encounter["answer"]["encounterId"]).step_names()

    assert {"claim", "appointment", "prescription"} <= set(steps)


def test_the_bus_announces_every_step_in_the_audit_log(stack: Stack, encounter: dict[str, Any], needs):
    needs(AUDIT_LOG)
    expected = {"event ClaimSubmitted", "event AppointmentBooked", "event PrescriptionApprovalRequested"}

    def audited() -> bool:
        return expected <= set(trace_encounter(stack, encounter["answer"]["encounterId"]).step_names())

    eventually(audited, f"{sorted(expected)} in the audit log")


def test_a_poison_message_reaches_its_dead_letter_queue_and_can_be_redriven(stack: Stack, needs):
    needs(QUICK_RETRIES)
    poison = f"{{not json e2e {uuid.uuid4()}"
    stack.client("sqs").send_message(QueueUrl=stack.output("BillingQueueUrl"), MessageBody=poison)
    dead_letters = find_dead_letter_queue(stack, "billing")

    eventually(lambda: poison in [letter.body for letter in peek(stack, dead_letters, 100)], "the DLQ")

    moved = redrive(stack, dead_letters)
    assert moved.moved >= 1
    eventually(lambda: poison in [letter.body for letter in peek(stack, dead_letters, 100)], "the DLQ again")


def test_a_redrive_on_aws_is_sqs_own_message_move_task(stack: Stack, needs):
    needs(MESSAGE_MOVE_TASK)
    dead_letters = find_dead_letter_queue(stack, "billing")
    arn = stack.client("sqs").get_queue_attributes(QueueUrl=dead_letters.url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]

    redrive(stack, dead_letters)

    assert stack.client("sqs").list_message_move_tasks(SourceArn=arn, MaxResults=1)["Results"]
