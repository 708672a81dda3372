"""POST /encounters on moto: validation, storage, fan-out, idempotency and failure answers."""

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from carebus.submission import UNCONFIRMED_EXPIRY_ATTRIBUTE, UNCONFIRMED_RETENTION
from carebus_chaos.faults import Fault, FaultInjector, once
from carebus_testing import (
    PHARMACIST_CLAIMS,
    PHYSICIAN_SUB,
    SAMPLE_ENCOUNTER_ID,
    SAMPLE_INTAKE,
    as_caller,
    body_of,
    json_logs,
    load_event,
    sample_body,
    with_body,
    without_header,
)

SAMPLE = SAMPLE_INTAKE
WORK_QUEUES = ("BillingQueue", "SchedulingQueue", "PrescriptionsQueue")


def phi_values(body: dict[str, Any]) -> list[str]:
    patient = body["patient"]
    return [patient["name"], patient["birthDate"], patient["insuranceMemberId"], patient["id"]]


@pytest.fixture
def intake(function):
    return function("IntakeFunction")


def test_sample_encounter_is_accepted_with_its_location(intake):
    response = intake.invoke(load_event(SAMPLE))

    assert response["statusCode"] == 202
    assert body_of(response) == {
        "encounterId": SAMPLE_ENCOUNTER_ID,
        "status": "ACCEPTED",
        "location": f"/v1/encounters/{SAMPLE_ENCOUNTER_ID}",
    }
    assert response["multiValueHeaders"]["Location"] == [f"/v1/encounters/{SAMPLE_ENCOUNTER_ID}"]


def test_accepted_encounter_is_stored_once_with_its_submitter_and_marked_published(intake, driver):
    intake.invoke(load_event(SAMPLE))

    [record] = driver.items("EncountersTable")
    assert record["encounterId"] == SAMPLE_ENCOUNTER_ID
    assert record["submittedBy"] == PHYSICIAN_SUB
    assert record["publishedAt"]
    assert record["encounter"]["patient"] == sample_body()["patient"]


def test_sample_encounter_reaches_every_queue_as_a_reference_without_phi(intake, driver):
    intake.invoke(load_event(SAMPLE))

    for queue in WORK_QUEUES:
        [message] = driver.messages(queue)
        assert json.loads(message["Body"]) == {"schemaVersion": 1, "encounterId": SAMPLE_ENCOUNTER_ID}
        assert message["MessageAttributes"]["encounterId"]["StringValue"] == SAMPLE_ENCOUNTER_ID
        carried = json.dumps(message)
        for value in phi_values(sample_body()):
            assert value not in carried, f"{queue} message carries PHI"


def test_encounter_without_follow_up_or_prescriptions_goes_to_billing_only(intake, driver):
    body = sample_body()
    del body["followUp"]
    body["prescriptions"] = []

    intake.invoke(with_body(load_event(SAMPLE), body, **{"Idempotency-Key": "billing-only"}))

    assert [driver.depth(queue) for queue in WORK_QUEUES] == [1, 0, 0]


def test_invalid_sample_answers_400_naming_each_bad_field_and_stores_nothing(intake, driver):
    response = intake.invoke(load_event("intake/submit_invalid_encounter.json"))

    assert response["statusCode"] == 400
    assert response["multiValueHeaders"]["Content-Type"] == ["application/problem+json"]
    problem = body_of(response)
    assert problem["status"] == 400
    fields = {error["field"]: error["code"] for error in problem["errors"]}
    assert fields["practitionerNpi"] == "invalid_npi"
    assert fields["encounterDate"] == "date_in_future"
    assert fields["procedures[0].code"] == "invalid_cpt"
    assert driver.items("EncountersTable") == []
    assert [driver.depth(queue) for queue in WORK_QUEUES] == [0, 0, 0]


def test_controlled_prescription_without_dea_number_is_a_field_error(intake):
    body = sample_body()
    del body["prescriberDea"]

    response = intake.invoke(with_body(load_event(SAMPLE), body))

    assert response["statusCode"] == 400
    assert [error["field"] for error in body_of(response)["errors"]] == ["prescriberDea"]


def test_validation_errors_never_echo_submitted_values(intake):
    body = sample_body()
    body["patient"]["birthDate"] = "not-a-date Alex Sample"

    response = intake.invoke(with_body(load_event(SAMPLE), body))

    assert response["statusCode"] == 400
    assert "Alex Sample" not in response["body"]


def test_pharmacist_may_not_submit_encounters(intake, driver):
    response = intake.invoke(as_caller(load_event(SAMPLE), PHARMACIST_CLAIMS))

    assert response["statusCode"] == 403
    assert body_of(response)["type"].endswith("/forbidden")
    assert driver.items("EncountersTable") == []


def test_request_without_verified_identity_is_refused(intake):
    response = intake.invoke(as_caller(load_event(SAMPLE), None))

    assert response["statusCode"] == 403


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/vnd.x+json",
        "application/problem+json",
        "application/json; charset=latin-1",
        "application/jsonx",
        None,
    ],
)
def test_anything_but_json_is_415(intake, driver, content_type):
    event = without_header(load_event(SAMPLE), "Content-Type")
    if content_type:
        event = with_body(event, sample_body(), **{"Content-Type": content_type})

    response = intake.invoke(event)

    assert response["statusCode"] == 415
    assert driver.items("EncountersTable") == []


def test_json_with_charset_is_accepted(intake):
    event = with_body(
        load_event(SAMPLE), sample_body(), **{"Content-Type": "application/json; charset=utf-8"}
    )

    assert intake.invoke(event)["statusCode"] == 202


def test_body_over_64_kib_is_413(intake):
    body = sample_body()
    body["padding"] = "x" * (64 * 1024)

    response = intake.invoke(with_body(load_event(SAMPLE), body))

    assert response["statusCode"] == 413


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        "[]",
        '"a string"',
        "[" * 10_000 + "]" * 10_000,
        '{"a":' * 10_000 + "1" + "}" * 10_000,
        '{"patient": 1, "patient": 2}',
        '{"patient": "\udc00"}',
        "{\udcff}",
    ],
    ids=[
        "broken",
        "array",
        "string",
        "deep-arrays",
        "deep-objects",
        "duplicate-name",
        "lone-surrogate",
        "not-utf-8",
    ],
)
def test_body_that_is_not_a_json_object_is_400_on_the_body(intake, driver, raw):
    response = intake.invoke(with_body(load_event(SAMPLE), raw))

    assert response["statusCode"] == 400
    assert body_of(response)["errors"] == [
        {"field": "body", "message": "Must be a JSON object", "code": "json_invalid"}
    ]
    assert driver.items("EncountersTable") == []


def test_a_body_the_gateway_passed_base64_encoded_is_read_as_its_bytes(intake):
    event = with_body(load_event(SAMPLE), "")
    event["body"] = base64.b64encode(json.dumps(sample_body()).encode()).decode()
    event["isBase64Encoded"] = True

    assert intake.invoke(event)["statusCode"] == 202


@pytest.mark.parametrize(
    ("field", "value"),
    [("units", True), ("units", "7"), ("units", 1.0), ("quantity", 30.0)],
)
def test_nothing_is_coerced_into_an_integer(intake, driver, field, value):
    body = sample_body()
    target = body["procedures"][0] if field == "units" else body["prescriptions"][0]
    target[field] = value

    response = intake.invoke(with_body(load_event(SAMPLE), body))

    assert response["statusCode"] == 400
    assert [error["code"] for error in body_of(response)["errors"]] == ["int_type"]
    assert driver.items("EncountersTable") == []


def test_an_oversized_value_is_never_echoed_back(intake):
    body = sample_body()
    body["patient"]["name"] = "Zelda\u202e" + "Q" * 150

    response = intake.invoke(with_body(load_event(SAMPLE), body))

    assert response["statusCode"] == 400
    assert "QQQQ" not in response["body"]
    assert [(error["field"], error["code"]) for error in body_of(response)["errors"]] == [
        ("patient.name", "text_characters")
    ]


def test_invalid_idempotency_key_is_a_field_error(intake):
    response = intake.invoke(with_body(load_event(SAMPLE), sample_body(), **{"Idempotency-Key": "x" * 256}))

    assert response["statusCode"] == 400
    assert [error["field"] for error in body_of(response)["errors"]] == ["Idempotency-Key"]


def test_same_key_and_body_replays_the_first_answer_and_fans_out_once(intake, driver):
    first = intake.invoke(load_event(SAMPLE))
    second = intake.invoke(load_event(SAMPLE))

    assert second["statusCode"] == 202
    assert body_of(second) == body_of(first)
    assert len(driver.items("EncountersTable")) == 1
    assert [driver.depth(queue) for queue in WORK_QUEUES] == [1, 1, 1]


def test_same_key_with_reformatted_body_counts_as_the_same_body(intake):
    first = intake.invoke(load_event(SAMPLE))
    reformatted = with_body(load_event(SAMPLE), json.dumps(sample_body(), indent=4, sort_keys=True))

    assert body_of(intake.invoke(reformatted)) == body_of(first)


def test_same_key_with_a_different_body_is_409(intake, driver):
    intake.invoke(load_event(SAMPLE))
    body = sample_body()
    body["encounterType"] = "TELEHEALTH"

    response = intake.invoke(with_body(load_event(SAMPLE), body))

    assert response["statusCode"] == 409
    assert len(driver.items("EncountersTable")) == 1


def test_same_key_from_another_physician_is_another_encounter(intake, driver):
    other = {"sub": "9a1e4c55-2b7f-4f0e-8a63-5d2c1b0e9f77", "cognito:groups": "physicians"}

    first = body_of(intake.invoke(load_event(SAMPLE)))
    second = body_of(intake.invoke(as_caller(load_event(SAMPLE), other)))

    assert first["encounterId"] != second["encounterId"]
    assert len(driver.items("EncountersTable")) == 2


def test_a_submission_without_an_idempotency_key_is_a_field_error_and_stores_nothing(intake, driver):
    response = intake.invoke(without_header(load_event(SAMPLE), "Idempotency-Key"))

    assert response["statusCode"] == 400
    assert [(error["field"], error["code"]) for error in body_of(response)["errors"]] == [
        ("Idempotency-Key", "missing")
    ]
    assert driver.items("EncountersTable") == []
    assert [driver.depth(queue) for queue in WORK_QUEUES] == [0, 0, 0]


def on_table(logical_id: str, driver) -> Any:
    """Only calls on this table of the stack."""
    name = driver.stack.ref(logical_id)
    return lambda call: call.params.get("TableName") == name


def test_a_publish_that_failed_answers_503_keeps_the_record_for_a_retry_and_the_retry_fans_out_once(
    intake, driver
):
    with FaultInjector(once("Publish", Fault.THROTTLED)).active() as faults:
        failed = intake.invoke(load_event(SAMPLE))

    assert faults.total() == 1
    assert failed["statusCode"] == 503
    assert failed["multiValueHeaders"]["Retry-After"] == ["2"]
    assert "same Idempotency-Key" in body_of(failed)["detail"]
    [stored] = driver.items("EncountersTable")
    assert "publishedAt" not in stored
    expiry = datetime.fromtimestamp(int(stored[UNCONFIRMED_EXPIRY_ATTRIBUTE]), UTC)
    assert abs(expiry - (datetime.now(UTC) + UNCONFIRMED_RETENTION)) < timedelta(minutes=1)
    assert [driver.depth(queue) for queue in WORK_QUEUES] == [0, 0, 0]

    retried = intake.invoke(load_event(SAMPLE))

    assert retried["statusCode"] == 202
    assert body_of(retried)["encounterId"] == SAMPLE_ENCOUNTER_ID
    [stored] = driver.items("EncountersTable")
    assert stored["publishedAt"]
    assert UNCONFIRMED_EXPIRY_ATTRIBUTE not in stored
    assert [driver.depth(queue) for queue in WORK_QUEUES] == [1, 1, 1]


@pytest.mark.parametrize("fault", list(Fault))
def test_once_sns_took_the_reference_the_answer_is_202_whatever_happens_to_the_bookkeeping(
    intake, driver, fault
):
    mark = once("UpdateItem", fault, when=on_table("EncountersTable", driver))

    with FaultInjector(mark).active() as faults:
        response = intake.invoke(load_event(SAMPLE))

    assert faults.total() == 1
    assert response["statusCode"] == 202
    assert [driver.depth(queue) for queue in WORK_QUEUES] == [1, 1, 1]
    [stored] = driver.items("EncountersTable")
    assert UNCONFIRMED_EXPIRY_ATTRIBUTE not in stored  # a published encounter is never deleted
    replayed = intake.invoke(load_event(SAMPLE))
    assert body_of(replayed) == body_of(response)
    assert [driver.depth(queue) for queue in WORK_QUEUES] == [1, 1, 1]


def test_a_lost_reply_on_the_publish_is_a_503_and_the_retry_repeats_the_fan_out_which_consumers_dedupe(
    intake, driver
):
    with FaultInjector(once("Publish", Fault.REPLY_LOST)).active():
        failed = intake.invoke(load_event(SAMPLE))

    assert failed["statusCode"] == 503
    assert intake.invoke(load_event(SAMPLE))["statusCode"] == 202
    # SNS took the reference twice: each consumer gets it twice, under one encounter id.
    for queue in WORK_QUEUES:
        bodies = {message["Body"] for message in driver.messages(queue)}
        assert driver.depth(queue) == 2
        assert bodies == {
            json.dumps({"schemaVersion": 1, "encounterId": SAMPLE_ENCOUNTER_ID}, separators=(",", ":"))
        }


@pytest.mark.parametrize(
    ("operation", "table"),
    [("PutItem", "EncountersTable"), ("GetItem", "EncountersTable"), ("PutItem", "IdempotencyTable")],
    ids=["storing", "reading-back", "idempotency-record"],
)
def test_a_throttled_table_answers_the_documented_503_and_the_retry_is_accepted_once(
    intake, driver, operation, table
):
    if operation == "GetItem":
        intake.invoke(with_body(load_event(SAMPLE), sample_body()))  # stored, so the retry reads it back
        driver.table("IdempotencyTable").delete_item(Key={"id": driver.items("IdempotencyTable")[0]["id"]})
    throttle = once(operation, Fault.THROTTLED, when=on_table(table, driver))

    with FaultInjector(throttle).active() as faults:
        failed = intake.invoke(load_event(SAMPLE))

    assert faults.total() == 1
    assert failed["statusCode"] == 503
    assert failed["multiValueHeaders"]["Content-Type"] == ["application/problem+json"]
    assert failed["multiValueHeaders"]["Retry-After"] == ["2"]
    assert body_of(failed)["status"] == 503
    assert intake.invoke(load_event(SAMPLE))["statusCode"] == 202
    assert len(driver.items("EncountersTable")) == 1
    assert driver.depth("BillingQueue") == 1


def test_an_aws_refusal_no_retry_can_fix_is_a_500_problem_not_a_dropped_request(intake, monkeypatch):
    def refuse(**_: Any) -> Any:
        raise ClientError(
            {
                "Error": {"Code": "AccessDeniedException", "Message": "no"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            },
            "Publish",
        )

    monkeypatch.setattr(intake.module.intake.sns, "publish", refuse)

    response = intake.invoke(load_event(SAMPLE))

    assert response["statusCode"] == 503  # a publish that failed is always worth a retry: it may succeed
    monkeypatch.setattr(intake.module.intake.encounters.client, "get_item", refuse)
    monkeypatch.setattr(intake.module.intake.encounters.client, "put_item", refuse)

    refused = intake.invoke(load_event(SAMPLE))

    assert refused["statusCode"] == 500
    assert refused["multiValueHeaders"]["Content-Type"] == ["application/problem+json"]
    assert body_of(refused)["type"].endswith("/internal-error")


def test_logs_name_the_encounter_and_carry_no_phi(intake):
    with json_logs(intake) as lines:
        intake.invoke(load_event(SAMPLE))

    accepted = [line for line in lines if line.get("message") == "Encounter accepted"]
    assert accepted
    assert accepted[0]["encounter_id"] == SAMPLE_ENCOUNTER_ID
    printed = json.dumps(lines)
    for value in phi_values(sample_body()):
        assert value not in printed
