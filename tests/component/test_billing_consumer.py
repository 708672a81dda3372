"""BillingFunction on moto: one claim per encounter whatever the delivery does, announced at least once, and
every repeat of the announcement the same fact (one eventId)."""

import json
from typing import Any

from carebus_testing import load_event, redelivered, sample_body, submit_sample

PHI_FIELDS = ("name", "birthDate", "insuranceMemberId")


def claim_events(driver: Any) -> list[dict[str, Any]]:
    return [event for event in driver.bus_events() if event["detail-type"] == "ClaimSubmitted"]


def test_the_sample_reference_bills_one_claim_and_announces_it_without_phi(function, driver):
    encounter_id = submit_sample(function)
    driver.capture_bus()

    response = function("BillingFunction").invoke(load_event("billing/encounter_reference.json"))

    assert response == {"batchItemFailures": []}
    procedures = sample_body()["procedures"]
    (claim,) = driver.items("ClaimsTable")
    assert claim["encounterId"] == encounter_id
    assert [
        (
            line["lineNumber"],
            line["system"],
            line["code"],
            line["units"],
            line["chargeCents"],
            line["amountCents"],
        )
        for line in claim["lines"]
    ] == [
        (number, p["system"], p["code"], p["units"], p["chargeCents"], p["units"] * p["chargeCents"])
        for number, p in enumerate(procedures, start=1)
    ]
    assert claim["totalCents"] == sum(p["units"] * p["chargeCents"] for p in procedures) == 16250
    assert claim["diagnosisCodes"] == [d["code"] for d in sample_body()["diagnoses"]]

    events = driver.bus_events()
    assert [(event["source"], event["detail-type"]) for event in events] == [
        ("carebus.billing", "ClaimSubmitted")
    ]
    assert events[0]["detail"] == {
        "schemaVersion": 1,
        "eventId": f"ClaimSubmitted/{claim['claimId']}",
        "encounterId": encounter_id,
        "claimId": claim["claimId"],
        "lineCount": len(procedures),
        "totalCents": claim["totalCents"],
    }
    text = json.dumps(events[0])
    patient = sample_body()["patient"]
    for field in PHI_FIELDS:
        assert patient[field] not in text, field


def the_same_fact(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The one detail every repeat of an announcement carries."""
    assert events
    assert all(event["detail"] == events[0]["detail"] for event in events)
    return events[0]["detail"]


def test_a_duplicate_delivery_with_a_new_message_id_bills_once_and_repeats_the_same_announcement(
    function, driver
):
    submit_sample(function)
    driver.capture_bus()
    billing = function("BillingFunction")
    first = load_event("billing/encounter_reference.json")
    billing.invoke(first)
    (claim,) = driver.items("ClaimsTable")

    response = billing.invoke(redelivered(first))

    assert response == {"batchItemFailures": []}
    assert driver.items("ClaimsTable") == [claim]
    # Each delivery announces what its record holds: consumers of the bus dedupe on the eventId.
    events = claim_events(driver)
    assert len(events) == 2
    assert the_same_fact(events)["eventId"] == f"ClaimSubmitted/{claim['claimId']}"


def test_a_redelivery_after_the_idempotency_record_expired_still_bills_once_and_announces_the_same_fact(
    function, driver
):
    submit_sample(function)
    driver.capture_bus()
    billing = function("BillingFunction")
    first = load_event("billing/encounter_reference.json")
    billing.invoke(first)
    (claim,) = driver.items("ClaimsTable")
    idempotency = driver.table("IdempotencyTable")
    for record in driver.items("IdempotencyTable"):
        idempotency.delete_item(Key={"id": record["id"]})

    response = billing.invoke(redelivered(first))

    assert response == {"batchItemFailures": []}
    assert driver.items("ClaimsTable") == [claim]
    assert the_same_fact(claim_events(driver))["eventId"] == f"ClaimSubmitted/{claim['claimId']}"


def test_a_failed_put_events_is_retried_until_the_claim_is_announced_exactly_once(
    function, driver, monkeypatch
):
    submit_sample(function)
    driver.capture_bus()
    bus_client = function("BillingFunction").module.events
    real_put_events = bus_client.put_events
    calls: list[int] = []

    def put_events_failing_once(**request: Any) -> dict[str, Any]:
        calls.append(len(request["Entries"]))
        if len(calls) == 1:
            return {
                "FailedEntryCount": len(request["Entries"]),
                "Entries": [
                    {"ErrorCode": "InternalFailure", "ErrorMessage": "injected"} for _ in request["Entries"]
                ],
            }
        return real_put_events(**request)

    monkeypatch.setattr(bus_client, "put_events", put_events_failing_once)

    first = driver.deliver("BillingQueue")

    assert first.received
    assert first.failed == first.received
    (claim,) = driver.items("ClaimsTable")
    assert claim_events(driver) == []

    second = driver.deliver("BillingQueue")

    assert second.received == first.received
    assert second.failed == []
    assert driver.depth("BillingQueue") == 0
    assert driver.items("ClaimsTable") == [claim]
    assert len(claim_events(driver)) == 1
    assert len(calls) == 2
