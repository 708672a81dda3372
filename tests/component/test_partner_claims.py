"""The partner API's function on moto: claims by id and since a time, a page at a time, without PHI."""

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
from jsonschema import Draft202012Validator

from carebus_chaos.faults import Fault, FaultInjector, once
from carebus_testing import SAMPLE_ENCOUNTER_ID, body_of, load_event
from carebus_tooling.partner_openapi import partner_openapi_document

LIST = "partner_claims/list_claims.json"
READ = "partner_claims/read_claim.json"
# The samples' request time, and when billing wrote the sample's claim in these tests.
SAMPLE_NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PATIENT_VALUES = ("Alex Sample", "1980-04-12", "XZ9876543210", "MRN-000123")


@pytest.fixture
def partner(function, monkeypatch):
    partner = function("PartnerClaimsFunction")
    monkeypatch.setattr(partner.module, "current_time", lambda: SAMPLE_NOW)
    return partner


@pytest.fixture
def billed(function, driver, monkeypatch):
    """Bill encounters: billed(n) submits n encounters (the sample's body) and bills each, a second apart
    from an hour before the samples' time; the encounter ids, in submission order."""
    clock = (SAMPLE_NOW - timedelta(hours=1) + timedelta(seconds=n) for n in itertools.count())
    monkeypatch.setattr(function("BillingFunction").module, "current_time", lambda: next(clock))
    intake = function("IntakeFunction")

    def bill(count: int) -> list[str]:
        ids = []
        for number in range(count):
            event = load_event("intake/submit_encounter.json")
            if number:
                event["headers"]["Idempotency-Key"] = f"partner-test-{number}"
                event["multiValueHeaders"]["Idempotency-Key"] = [f"partner-test-{number}"]
            ids.append(json.loads(intake.invoke(event)["body"])["encounterId"])
            assert driver.deliver("BillingQueue").failed == []
        return ids

    return bill


def published(schema_name: str) -> Draft202012Validator:
    """The answer's schema in docs/partner-openapi.yaml."""
    components = partner_openapi_document()["components"]
    return Draft202012Validator({"$ref": f"#/components/schemas/{schema_name}", "components": components})


def listing(**query: str) -> dict:
    event = load_event(LIST)
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {name: [value] for name, value in query.items()}
    return event


def reading(claim_id: str) -> dict:
    event = load_event(READ)
    event["pathParameters"] = {"claimId": claim_id}
    event["path"] = f"/claims/{claim_id}"
    return event


def test_the_sample_read_answers_the_claim_with_its_lines_and_no_patient_data(partner, billed):
    billed(1)
    response = partner.invoke(load_event(READ))

    assert response["statusCode"] == 200, response
    claim = body_of(response)
    assert claim["claimId"] == f"clm-{SAMPLE_ENCOUNTER_ID}"
    assert claim["encounterId"] == SAMPLE_ENCOUNTER_ID
    assert claim["totalCents"] == sum(line["amountCents"] for line in claim["lines"]) > 0
    assert (claim["status"], claim["currency"]) == ("SUBMITTED", "USD")
    assert claim["submittedAt"] == "2026-11-22T11:00:00.000000Z"
    published("PartnerClaim").validate(claim)
    for value in PATIENT_VALUES:
        assert value not in response["body"]


def test_the_sample_listing_finds_the_claim_since_the_morning(partner, billed):
    billed(1)
    response = partner.invoke(load_event(LIST))

    assert response["statusCode"] == 200, response
    page = body_of(response)
    assert [claim["claimId"] for claim in page["claims"]] == [f"clm-{SAMPLE_ENCOUNTER_ID}"]
    assert page["nextPageToken"] is None
    published("ClaimsPage").validate(page)
    for value in PATIENT_VALUES:
        assert value not in response["body"]


def test_pages_walk_every_claim_since_once_oldest_first(partner, billed):
    submitted = billed(5)
    seen, token, pages = [], None, 0
    while True:
        query = {"since": "2026-11-21T00:00:00Z", "limit": "2", **({"pageToken": token} if token else {})}
        page = body_of(partner.invoke(listing(**query)))
        pages += 1
        seen += [claim["encounterId"] for claim in page["claims"]]
        token = page["nextPageToken"]
        if token is None:
            break
        assert pages < 10

    assert seen == submitted
    assert pages == 3


def test_since_after_a_claim_leaves_it_out(partner, billed):
    first, second = billed(2)
    page = body_of(partner.invoke(listing(since="2026-11-22T11:00:00.500Z")))

    assert [claim["encounterId"] for claim in page["claims"]] == [second]
    assert first != second


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({}, "since"),
        ({"since": "2026-11-22T00:00:00"}, "since"),
        ({"since": "2026-11-23T00:00:00Z"}, "since"),
        ({"since": "2026-10-01T00:00:00Z"}, "since"),
        ({"since": "2026-11-22T00:00:00Z", "limit": "1000"}, "limit"),
        ({"since": "2026-11-22T00:00:00Z", "pageToken": "bm90LWEtdG9rZW4"}, "pageToken"),
        ({"since": "2026-11-22T00:00:00Z", "status": "SUBMITTED"}, "status"),
    ],
    ids=["no since", "no offset", "future", "too old", "limit", "forged token", "unknown parameter"],
)
def test_a_bad_query_is_400_naming_the_field(partner, query, field):
    response = partner.invoke(listing(**query))

    assert response["statusCode"] == 400
    assert response["multiValueHeaders"]["Content-Type"] == ["application/problem+json"]
    assert field in {error["field"] for error in body_of(response)["errors"]}
    published("Problem").validate(body_of(response))


def test_an_unknown_claim_is_404(partner, billed):
    billed(1)
    response = partner.invoke(reading("clm-0d9b1c36-5f0f-4e7e-9d56-7f8d8a0d2c11"))

    assert response["statusCode"] == 404
    assert response["multiValueHeaders"]["Content-Type"] == ["application/problem+json"]


@pytest.mark.parametrize(
    "claim_id", ["x" * 3000, f"apt-{SAMPLE_ENCOUNTER_ID}", f"clm-{SAMPLE_ENCOUNTER_ID.upper()}"]
)
def test_a_claim_id_that_cannot_exist_is_404_before_any_aws_call(partner, claim_id):
    with FaultInjector(lambda call: None).active() as calls:
        response = partner.invoke(reading(claim_id))

    assert response["statusCode"] == 404
    assert sum(calls.calls.values()) == 0
    assert claim_id not in response["body"]


def test_a_throttled_read_answers_the_documented_503_problem(partner, billed):
    billed(1)
    with FaultInjector(once("GetItem", Fault.THROTTLED)).active() as faults:
        response = partner.invoke(load_event(READ))

    assert faults.total() == 1
    assert response["statusCode"] == 503
    assert response["multiValueHeaders"]["Retry-After"] == ["2"]
    assert partner.invoke(load_event(READ))["statusCode"] == 200


def test_a_throttled_listing_answers_the_documented_503_problem(partner, billed):
    billed(1)
    with FaultInjector(once("Query", Fault.THROTTLED)).active() as faults:
        response = partner.invoke(load_event(LIST))

    assert faults.total() == 1
    assert response["statusCode"] == 503
