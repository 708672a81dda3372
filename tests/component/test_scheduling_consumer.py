"""SchedulingFunction on moto: earliest free slot, waitlist, and no double booking under contention."""

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from copy import deepcopy
from datetime import UTC, datetime
from typing import Any

import pytest

from carebus.scheduling import NO_FREE_SLOT, WINDOW_PASSED
from carebus_testing import load_event, sample_body, set_clock, submit


def with_window(earliest: str, latest: str) -> dict[str, Any]:
    payload = sample_body()
    payload["followUp"] = {**payload["followUp"], "earliest": earliest, "latest": latest}
    return payload


def reference(encounter_id: str) -> dict[str, Any]:
    """The scheduling sample event, pointed at another encounter, with a message id of its own."""
    event = deepcopy(load_event("scheduling/encounter_reference.json"))
    record = event["Records"][0]
    record["messageId"] = str(uuid.uuid4())
    record["receiptHandle"] = f"AQEB{uuid.uuid4().hex}"
    record["body"] = json.dumps({"schemaVersion": 1, "encounterId": encounter_id})
    record["messageAttributes"]["encounterId"]["stringValue"] = encounter_id
    return event


@pytest.fixture
def scheduling(function, monkeypatch):
    set_clock(function, monkeypatch)
    return function("SchedulingFunction")


def appointment_of(driver: Any, encounter_id: str) -> dict[str, Any]:
    (appointment,) = [
        item
        for item in driver.items("AppointmentsTable")
        if item.get("encounterId") == encounter_id and item.get("status")
    ]
    return appointment


def appointments(driver: Any) -> list[dict[str, Any]]:
    return [item for item in driver.items("AppointmentsTable") if item.get("status")]


def slots(driver: Any) -> list[dict[str, Any]]:
    """The slot locks: every record that holds a start but is not an appointment."""
    return [item for item in driver.items("AppointmentsTable") if "status" not in item]


def scheduling_events(driver: Any) -> list[dict[str, Any]]:
    return [event for event in driver.bus_events() if event["source"] == "carebus.scheduling"]


def test_the_sample_books_the_earliest_free_slot_and_announces_it(scheduling, function, driver):
    encounter_id = submit(function)
    driver.capture_bus()

    response = scheduling.invoke(reference(encounter_id))

    assert response == {"batchItemFailures": []}
    appointment = appointment_of(driver, encounter_id)
    assert appointment["status"] == "BOOKED"
    assert datetime.fromisoformat(appointment["start"]) == datetime(2026, 11, 16, 9, tzinfo=UTC)
    assert appointment["practitionerNpi"] == sample_body()["practitionerNpi"]
    (slot,) = slots(driver)
    assert slot["encounterId"] == encounter_id
    assert datetime.fromisoformat(slot["start"]) == datetime(2026, 11, 16, 9, tzinfo=UTC)
    (event,) = scheduling_events(driver)
    assert event["detail-type"] == "AppointmentBooked"
    assert event["detail"] == {
        "schemaVersion": 1,
        "eventId": f"AppointmentBooked/{appointment['appointmentId']}",
        "encounterId": encounter_id,
        "appointmentId": appointment["appointmentId"],
        "start": "2026-11-16T09:00:00Z",
    }


def test_the_sample_reference_event_is_scheduled_from_the_queue(scheduling, function, driver):
    """The sample intake's reference reaches the scheduling queue and the mapping books it."""
    function("IntakeFunction").invoke(load_event("intake/submit_encounter.json"))
    encounter_id = json.loads(load_event("scheduling/encounter_reference.json")["Records"][0]["body"])[
        "encounterId"
    ]

    result = driver.deliver("SchedulingQueue")

    assert len(result.received) == 1
    assert result.failed == []
    assert appointment_of(driver, encounter_id)["status"] == "BOOKED"


def test_a_second_encounter_of_the_same_practitioner_gets_the_next_slot(scheduling, function, driver):
    first = submit(function)
    scheduling.invoke(reference(first))
    second = submit(function)
    driver.capture_bus()

    response = scheduling.invoke(reference(second))

    assert response == {"batchItemFailures": []}
    assert datetime.fromisoformat(appointment_of(driver, first)["start"]) == datetime(
        2026, 11, 16, 9, tzinfo=UTC
    )
    assert datetime.fromisoformat(appointment_of(driver, second)["start"]) == datetime(
        2026, 11, 16, 9, 30, tzinfo=UTC
    )
    (event,) = scheduling_events(driver)
    assert event["detail"]["encounterId"] == second
    assert event["detail"]["start"] == "2026-11-16T09:30:00Z"


def test_a_request_whose_window_has_only_taken_slots_is_waitlisted(scheduling, function, driver, monkeypatch):
    # At 16:00 on the window's only day, two slots remain (16:00 and 16:30); two encounters take them.
    set_clock(function, monkeypatch, datetime(2026, 11, 16, 16, tzinfo=UTC))
    one_day = with_window("2026-11-16", "2026-11-16")
    for _ in range(2):
        scheduling.invoke(reference(submit(function, one_day)))
    late = submit(function, one_day)
    driver.capture_bus()

    response = scheduling.invoke(reference(late))

    assert response == {"batchItemFailures": []}
    waitlisted = appointment_of(driver, late)
    assert (waitlisted["status"], waitlisted["reason"]) == ("WAITLISTED", NO_FREE_SLOT)
    assert "start" not in waitlisted
    assert {datetime.fromisoformat(slot["start"]) for slot in slots(driver)} == {
        datetime(2026, 11, 16, 16, tzinfo=UTC),
        datetime(2026, 11, 16, 16, 30, tzinfo=UTC),
    }
    assert all(slot["encounterId"] != late for slot in slots(driver))
    (event,) = scheduling_events(driver)
    assert event["detail-type"] == "AppointmentWaitlisted"
    assert event["detail"] == {
        "schemaVersion": 1,
        "eventId": f"AppointmentWaitlisted/{waitlisted['appointmentId']}",
        "encounterId": late,
        "appointmentId": waitlisted["appointmentId"],
        "reason": waitlisted["reason"],
    }


def test_a_request_whose_window_has_passed_is_waitlisted_as_passed(scheduling, function, driver, monkeypatch):
    # The sample's window ends on Friday 20 November 2026; on the Monday after, it is over.
    set_clock(function, monkeypatch, datetime(2026, 11, 23, 9, tzinfo=UTC))
    encounter_id = submit(function)
    driver.capture_bus()

    response = scheduling.invoke(reference(encounter_id))

    assert response == {"batchItemFailures": []}
    waitlisted = appointment_of(driver, encounter_id)
    assert (waitlisted["status"], waitlisted["reason"]) == ("WAITLISTED", WINDOW_PASSED)
    assert slots(driver) == []
    (event,) = scheduling_events(driver)
    assert event["detail-type"] == "AppointmentWaitlisted"
    assert event["detail"]["reason"] == WINDOW_PASSED


def test_a_window_ending_today_after_closing_time_is_full_not_passed(
    scheduling, function, driver, monkeypatch
):
    set_clock(function, monkeypatch, datetime(2026, 11, 20, 17, 30, tzinfo=UTC))
    encounter_id = submit(function)

    scheduling.invoke(reference(encounter_id))

    assert appointment_of(driver, encounter_id)["reason"] == NO_FREE_SLOT


def test_a_stale_view_of_the_bookings_loses_the_slot_to_the_transaction_and_takes_the_next(
    scheduling, function, driver, monkeypatch
):
    first = submit(function)
    scheduling.invoke(reference(first))
    second = submit(function)
    queried: list[tuple[Any, ...]] = []

    def nothing_booked_yet(*args: Any) -> list[datetime]:
        # What a consumer sees when it queried before another one took the 09:00 slot.
        queried.append(args)
        return []

    monkeypatch.setattr(scheduling.module, "booked_starts", nothing_booked_yet)
    driver.capture_bus()

    response = scheduling.invoke(reference(second))

    assert queried, "the stale view was never consulted"
    assert response == {"batchItemFailures": []}
    assert datetime.fromisoformat(appointment_of(driver, second)["start"]) == datetime(
        2026, 11, 16, 9, 30, tzinfo=UTC
    )
    owners = {datetime.fromisoformat(slot["start"]): slot["encounterId"] for slot in slots(driver)}
    assert owners == {
        datetime(2026, 11, 16, 9, tzinfo=UTC): first,
        datetime(2026, 11, 16, 9, 30, tzinfo=UTC): second,
    }
    assert datetime.fromisoformat(appointment_of(driver, first)["start"]) == datetime(
        2026, 11, 16, 9, tzinfo=UTC
    )
    (event,) = scheduling_events(driver)
    assert event["detail"]["start"] == "2026-11-16T09:30:00Z"


def test_concurrent_consumers_never_book_a_slot_twice(scheduling, function, driver, monkeypatch):
    # From 14:00 on the window's only day six slots are left, for eight encounters of one practitioner.
    set_clock(function, monkeypatch, datetime(2026, 11, 16, 14, tzinfo=UTC))
    one_day = with_window("2026-11-16", "2026-11-16")
    encounters = [submit(function, one_day) for _ in range(8)]
    free = [datetime(2026, 11, 16, hour, minute, tzinfo=UTC) for hour in (14, 15, 16) for minute in (0, 30)]
    driver.capture_bus()

    # Every consumer reads the bookings before any of them books: the worst interleaving, every time.
    everyone_has_looked = threading.Barrier(len(encounters), timeout=30)
    real_booked_starts = scheduling.module.booked_starts

    def booked_starts_then_wait(*args: Any) -> list[datetime]:
        seen = real_booked_starts(*args)
        everyone_has_looked.wait()
        return seen

    monkeypatch.setattr(scheduling.module, "booked_starts", booked_starts_then_wait)

    with ThreadPoolExecutor(max_workers=len(encounters)) as pool:
        responses = list(
            pool.map(lambda encounter_id: scheduling.invoke(reference(encounter_id)), encounters)
        )

    assert responses == [{"batchItemFailures": []}] * len(encounters)
    records = appointments(driver)
    assert sorted(record["encounterId"] for record in records) == sorted(encounters)
    booked = [record for record in records if record["status"] == "BOOKED"]
    starts = [datetime.fromisoformat(record["start"]) for record in booked]
    assert sorted(starts) == free  # every free slot used, none twice
    assert sum(record["status"] == "WAITLISTED" for record in records) == len(encounters) - len(free)
    owners = {datetime.fromisoformat(slot["start"]): slot["encounterId"] for slot in slots(driver)}
    assert owners == {datetime.fromisoformat(record["start"]): record["encounterId"] for record in booked}
    events = scheduling_events(driver)
    assert sorted(event["detail"]["encounterId"] for event in events) == sorted(encounters)
    assert sorted(event["detail"]["start"] for event in events if "start" in event["detail"]) == [
        f"{start:%Y-%m-%dT%H:%M:%SZ}" for start in free
    ]


def test_a_duplicate_delivery_books_once_and_repeats_the_same_announcement(scheduling, function, driver):
    encounter_id = submit(function)
    driver.capture_bus()
    first = reference(encounter_id)
    scheduling.invoke(first)
    before = driver.items("AppointmentsTable")

    again = deepcopy(first)
    again["Records"][0]["messageId"] = str(uuid.uuid4())
    response = scheduling.invoke(again)

    assert response == {"batchItemFailures": []}
    assert driver.items("AppointmentsTable") == before
    assert len(slots(driver)) == 1
    # Each delivery announces what the record holds: consumers of the bus dedupe on the eventId.
    first_event, repeat = scheduling_events(driver)
    assert first_event["detail-type"] == repeat["detail-type"] == "AppointmentBooked"
    assert first_event["detail"] == repeat["detail"]


def test_a_redelivery_after_the_idempotency_record_expired_books_once_and_announces_the_booking(
    scheduling, function, driver
):
    encounter_id = submit(function)
    driver.capture_bus()
    scheduling.invoke(reference(encounter_id))
    before = driver.items("AppointmentsTable")
    idempotency = driver.table("IdempotencyTable")
    for record in driver.items("IdempotencyTable"):
        idempotency.delete_item(Key={"id": record["id"]})

    response = scheduling.invoke(reference(encounter_id))

    assert response == {"batchItemFailures": []}
    assert driver.items("AppointmentsTable") == before
    first_event, repeat = scheduling_events(driver)
    assert first_event["detail-type"] == repeat["detail-type"] == "AppointmentBooked"
    assert first_event["detail"] == repeat["detail"]
