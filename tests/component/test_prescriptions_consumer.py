"""PrescriptionsFunction on moto: uncontrolled ones released, controlled ones wait for a pharmacist."""

from typing import Any

from carebus_testing import load_event, redelivered, sample_body, submit_sample


def by_drug(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {record["rxnormCode"]: record for record in records}


def prescription_events(driver: Any) -> list[dict[str, Any]]:
    return [event for event in driver.bus_events() if event["source"] == "carebus.prescriptions"]


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


def test_a_duplicate_delivery_changes_nothing(function, driver):
    submit_sample(function)
    driver.capture_bus()
    prescriptions = function("PrescriptionsFunction")
    first = load_event("prescriptions/encounter_reference.json")
    prescriptions.invoke(first)
    before = driver.items("PrescriptionsTable")
    assert len(prescription_events(driver)) == 2

    response = prescriptions.invoke(redelivered(first))

    assert response == {"batchItemFailures": []}
    assert driver.items("PrescriptionsTable") == before
    assert prescription_events(driver) == []


def test_a_redelivery_after_the_idempotency_record_expired_changes_nothing(function, driver):
    submit_sample(function)
    driver.capture_bus()
    prescriptions = function("PrescriptionsFunction")
    first = load_event("prescriptions/encounter_reference.json")
    prescriptions.invoke(first)
    before = driver.items("PrescriptionsTable")
    assert len(prescription_events(driver)) == 2
    idempotency = driver.table("IdempotencyTable")
    for record in driver.items("IdempotencyTable"):
        idempotency.delete_item(Key={"id": record["id"]})

    response = prescriptions.invoke(redelivered(first))

    assert response == {"batchItemFailures": []}
    assert driver.items("PrescriptionsTable") == before
    assert prescription_events(driver) == []


def test_a_put_events_failure_midway_announces_each_prescription_exactly_once_after_redelivery(
    function, driver, monkeypatch
):
    submit_sample(function)
    driver.capture_bus()
    bus_client = function("PrescriptionsFunction").module.events
    real_put_events = bus_client.put_events
    calls: list[str] = []

    def second_put_fails_once(**request: Any) -> dict[str, Any]:
        calls.append(request["Entries"][0]["DetailType"])
        if len(calls) == 2:
            return {
                "FailedEntryCount": 1,
                "Entries": [{"ErrorCode": "ThrottlingException", "ErrorMessage": "injected"}],
            }
        return real_put_events(**request)

    monkeypatch.setattr(bus_client, "put_events", second_put_fails_once)

    first = driver.deliver("PrescriptionsQueue")

    assert first.received
    assert first.failed == first.received
    assert sorted(bool(record.get("announcedAt")) for record in driver.items("PrescriptionsTable")) == [
        False,
        True,
    ]
    assert len(prescription_events(driver)) == 1

    second = driver.deliver("PrescriptionsQueue")

    assert second.failed == []
    assert driver.depth("PrescriptionsQueue") == 0
    assert all(record.get("announcedAt") for record in driver.items("PrescriptionsTable"))
    events = prescription_events(driver)
    assert [event["detail-type"] for event in events] == [calls[1]]
    assert len(calls) == 3
