"""GET /encounters/{encounterId} on moto: the downstream state, and who may see how much of it."""

import pytest

from carebus_chaos.faults import Fault, FaultInjector, once
from carebus_testing import (
    OTHER_PHYSICIAN_SUB,
    PHARMACIST_CLAIMS,
    SAMPLE_ENCOUNTER_ID,
    as_caller,
    body_of,
    load_event,
    set_clock,
)

READ = "encounter_query/read_encounter.json"


@pytest.fixture
def query(function):
    return function("EncounterQueryFunction")


@pytest.fixture
def processed_sample(function, driver, monkeypatch):
    """The sample encounter submitted and handled by every consumer, its follow-up window ahead."""
    set_clock(function, monkeypatch)
    function("IntakeFunction").invoke(load_event("intake/submit_encounter.json"))
    for queue in ("BillingQueue", "SchedulingQueue", "PrescriptionsQueue"):
        assert driver.deliver(queue).failed == []


def read_as(claims, encounter_id=SAMPLE_ENCOUNTER_ID):
    event = load_event(READ)
    event["pathParameters"] = {"encounterId": encounter_id}
    event["path"] = f"/encounters/{encounter_id}"
    return event if claims is None else as_caller(event, claims)


def test_submitting_physician_sees_claim_appointment_and_prescriptions(query, processed_sample):
    response = query.invoke(load_event(READ))

    assert response["statusCode"] == 200
    state = body_of(response)
    assert state["encounterId"] == SAMPLE_ENCOUNTER_ID
    assert state["status"] == "PUBLISHED"
    assert state["expected"] == {"claim": True, "appointment": True, "prescriptions": 2}
    assert state["claim"]["totalCents"] == 12500 + 2 * 1875
    assert state["appointment"]["status"] == "BOOKED"
    assert state["appointment"]["start"] == "2026-11-16T09:00:00+00:00"
    assert [(rx["prescriptionId"][-2:], rx["status"]) for rx in state["prescriptions"]] == [
        ("-1", "RELEASED"),
        ("-2", "PENDING_APPROVAL"),
    ]


def test_answer_carries_no_patient_demographics(query, processed_sample):
    response = query.invoke(load_event(READ))

    for value in ("Alex Sample", "1980-04-12", "XZ9876543210", "MRN-000123"):
        assert value not in response["body"]


def test_before_the_consumers_ran_the_downstream_parts_are_empty(query, function):
    function("IntakeFunction").invoke(load_event("intake/submit_encounter.json"))

    state = body_of(query.invoke(load_event(READ)))

    assert (state["claim"], state["appointment"], state["prescriptions"]) == (None, None, [])
    assert state["expected"]["claim"] is True


def test_another_physician_gets_404_for_an_encounter_they_did_not_submit(query, processed_sample):
    response = query.invoke(read_as({"sub": OTHER_PHYSICIAN_SUB, "cognito:groups": "physicians"}))

    assert response["statusCode"] == 404
    assert response["multiValueHeaders"]["Content-Type"] == ["application/problem+json"]


def test_pharmacist_sees_only_the_prescriptions(query, processed_sample):
    state = body_of(query.invoke(read_as(PHARMACIST_CLAIMS)))

    assert set(state) == {"encounterId", "prescriptions"}
    assert len(state["prescriptions"]) == 2


def test_user_without_a_carebus_role_is_403(query, processed_sample):
    response = query.invoke(read_as({"sub": OTHER_PHYSICIAN_SUB, "cognito:groups": "billing-clerks"}))

    assert response["statusCode"] == 403


@pytest.mark.parametrize(
    "encounter_id",
    ["0d9b1c36-5f0f-4e7e-9d56-7f8d8a0d2c11", "not-a-uuid", "5F51A656-9DAA-559D-8D95-7AA5A75D9B03"],
)
def test_unknown_or_malformed_ids_are_404(query, processed_sample, encounter_id):
    response = query.invoke(read_as(load_event(READ)["requestContext"]["authorizer"]["claims"], encounter_id))

    assert response["statusCode"] == 404


def test_a_throttled_read_answers_the_documented_503_problem(query, processed_sample):
    with FaultInjector(once("GetItem", Fault.THROTTLED)).active() as faults:
        response = query.invoke(load_event(READ))

    assert faults.total() == 1
    assert response["statusCode"] == 503
    assert response["multiValueHeaders"]["Content-Type"] == ["application/problem+json"]
    assert response["multiValueHeaders"]["Retry-After"] == ["2"]
    assert query.invoke(load_event(READ))["statusCode"] == 200


@pytest.mark.parametrize(
    "encounter_id",
    [
        "x" * 3000,
        "not-a-uuid",
        "5F51A656-9DAA-559D-8D95-7AA5A75D9B03",
        "5f51a656-9daa-559d-8d95-7aa5a75d9b03%0A",
    ],
    ids=["3000-chars", "not-a-uuid", "upper-case", "encoded-newline"],
)
def test_an_id_that_cannot_exist_is_404_before_any_aws_call(query, encounter_id):
    claims = load_event(READ)["requestContext"]["authorizer"]["claims"]

    with FaultInjector(lambda call: None).active() as calls:
        response = query.invoke(read_as(claims, encounter_id))

    assert response["statusCode"] == 404
    assert sum(calls.calls.values()) == 0
    assert encounter_id not in response["body"]
