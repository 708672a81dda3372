"""PrescriptionsFunction on moto: uncontrolled ones released, controlled ones wait for a pharmacist."""

import json
from typing import Any

from carebus_testing import load_event, redelivered, sample_body, submit_sample


def by_drug(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {record["rxnormCode"]: record for record in records}


def prescription_events(driver: Any) -> list[dict[str, Any]]:
    return [event for event in driver.bus_events() if event["source"] == "carebus.prescriptions"]


def details(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """What the events state, in a stable order: detail type and detail."""
    return sorted((event["detail-type"], json.dumps(event["detail"], sort_keys=True)) for event in events)


def test_the_sample_releases_the_uncontrolled_and_holds_the_controlled_for_approval(function, driver):
    encounter_id = submit_sample(function)
    driver.capture_bus()
    sample = sample_body()
    (uncontrolled,) = [rx for rx in sample["prescriptions"] if rx["deaSchedule"] is None]
    (controlled,) = [rx for rx in sample["prescriptions"] if rx["deaSchedule"] == "II"]

    response = function("PrescriptionsFunction").invoke(load_event("prescriptions/encounter_reference.json"))

    assert response == {"batchItemFailures": []}
    records = driver.items("PrescriptionsTable")
    assert len(records) == 2
    stored = by_drug(records)
    released, pending = stored[uncontrolled["rxnormCode"]], stored[controlled["rxnormCode"]]
    assert released["status"] == "RELEASED"
    assert pending["status"] == "PENDING_APPROVAL"
    assert pending["deaSchedule"] == "II"
    assert "deaSchedule" not in released
    for record, prescribed in ((released, uncontrolled), (pending, controlled)):
        assert record["encounterId"] == encounter_id
        assert record["prescriberNpi"] == sample["practitionerNpi"]
        assert (record["drug"], record["quantity"], record["refills"]) == (
            prescribed["drug"],
            prescribed["quantity"],
            prescribed["refills"],
        )

    events = {event["detail-type"]: event for event in prescription_events(driver)}
    assert set(events) == {"PrescriptionReleased", "PrescriptionApprovalRequested"}
    assert events["PrescriptionReleased"]["detail"] == {
        "schemaVersion": 1,
        "eventId": f"PrescriptionReleased/{released['prescriptionId']}",
        "encounterId": encounter_id,
        "prescriptionId": released["prescriptionId"],
    }
    assert events["PrescriptionApprovalRequested"]["detail"] == {
        "schemaVersion": 1,
        "eventId": f"PrescriptionApprovalRequested/{pending['prescriptionId']}",
        "encounterId": encounter_id,
        "prescriptionId": pending["prescriptionId"],
        "deaSchedule": "II",
    }


def test_a_duplicate_delivery_changes_nothing_and_repeats_the_same_announcements(function, driver):
    submit_sample(function)
    driver.capture_bus()
    prescriptions = function("PrescriptionsFunction")
    first = load_event("prescriptions/encounter_reference.json")
    prescriptions.invoke(first)
    before = driver.items("PrescriptionsTable")
    announced = details(prescription_events(driver))
    assert len(announced) == 2

    response = prescriptions.invoke(redelivered(first))

    assert response == {"batchItemFailures": []}
    assert driver.items("PrescriptionsTable") == before
    # Each delivery announces what the records hold: consumers of the bus dedupe on the eventId.
    assert details(prescription_events(driver)) == announced


def test_a_redelivery_after_the_idempotency_record_expired_changes_nothing_but_announces_again(
    function, driver
):
    submit_sample(function)
    driver.capture_bus()
    prescriptions = function("PrescriptionsFunction")
    first = load_event("prescriptions/encounter_reference.json")
    prescriptions.invoke(first)
    before = driver.items("PrescriptionsTable")
    announced = details(prescription_events(driver))
    assert len(announced) == 2
    idempotency = driver.table("IdempotencyTable")
    for record in driver.items("IdempotencyTable"):
        idempotency.delete_item(Key={"id": record["id"]})

    response = prescriptions.invoke(redelivered(first))

    assert response == {"batchItemFailures": []}
    assert driver.items("PrescriptionsTable") == before
    assert details(prescription_events(driver)) == announced


def test_an_event_put_events_refuses_fails_the_record_and_the_redelivery_announces_every_prescription(
    function, driver, monkeypatch
):
    submit_sample(function)
    driver.capture_bus()
    bus_client = function("PrescriptionsFunction").module.events
    real_put_events = bus_client.put_events
    calls: list[list[str]] = []

    def second_entry_refused_once(**request: Any) -> dict[str, Any]:
        calls.append([entry["DetailType"] for entry in request["Entries"]])
        if len(calls) > 1:
            return real_put_events(**request)
        taken = real_put_events(Entries=request["Entries"][:1])["Entries"]
        refused = [{"ErrorCode": "ThrottlingException", "ErrorMessage": "injected"}]
        return {"FailedEntryCount": 1, "Entries": taken + refused * (len(request["Entries"]) - 1)}

    monkeypatch.setattr(bus_client, "put_events", second_entry_refused_once)

    first = driver.deliver("PrescriptionsQueue")

    assert first.received
    assert first.failed == first.received
    stored = driver.items("PrescriptionsTable")
    assert len(stored) == 2
    (accepted,) = prescription_events(driver)
    assert accepted["detail-type"] == calls[0][0]

    second = driver.deliver("PrescriptionsQueue")

    assert second.failed == []
    assert driver.depth("PrescriptionsQueue") == 0
    assert driver.items("PrescriptionsTable") == stored
    # One PutEvents per invocation carries both prescriptions' events; the redelivery puts both again.
    assert calls == [calls[0], calls[0]]
    assert sorted(calls[0]) == ["PrescriptionApprovalRequested", "PrescriptionReleased"]
    assert sorted(event["detail-type"] for event in prescription_events(driver)) == sorted(calls[0])
