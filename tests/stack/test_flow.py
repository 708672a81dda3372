"""The whole flow on one offline stack: intake, fan-out, consumers, the bus, its audit log and archive."""

import json
import time
from datetime import UTC, datetime

import boto3
import pytest

from carebus_testing import SAMPLE_ENCOUNTER_ID, body_of, load_event, set_clock

PHI = ("Alex Sample", "1980-04-12", "XZ9876543210", "MRN-000123")


@pytest.fixture
def flowed(driver, function, monkeypatch):
    """The sample encounter submitted and every queue drained, as the event source mappings would."""
    set_clock(function, monkeypatch)
    driver.capture_bus()
    accepted = function("IntakeFunction").invoke(load_event("intake/submit_encounter.json"))
    assert accepted["statusCode"] == 202
    driver.drain()
    return driver


def test_one_encounter_yields_a_claim_an_appointment_and_both_prescriptions(flowed, function):
    state = body_of(
        function("EncounterQueryFunction").invoke(load_event("encounter_query/read_encounter.json"))
    )

    assert state["claim"]["status"] == "SUBMITTED"
    assert state["appointment"]["status"] == "BOOKED"
    assert sorted(rx["status"] for rx in state["prescriptions"]) == ["PENDING_APPROVAL", "RELEASED"]
    assert [flowed.depth(queue) for queue in ("BillingQueue", "SchedulingQueue", "PrescriptionsQueue")] == [
        0,
        0,
        0,
    ]


def test_every_consumer_announces_once_on_the_bus_with_ids_only(flowed):
    events = flowed.bus_events()

    assert sorted((event["source"], event["detail-type"]) for event in events) == [
        ("carebus.billing", "ClaimSubmitted"),
        ("carebus.prescriptions", "PrescriptionApprovalRequested"),
        ("carebus.prescriptions", "PrescriptionReleased"),
        ("carebus.scheduling", "AppointmentBooked"),
    ]
    assert {event["detail"]["encounterId"] for event in events} == {SAMPLE_ENCOUNTER_ID}
    for value in PHI:
        assert value not in json.dumps(events)


def test_the_audit_log_keeps_every_event_without_phi(flowed):
    logs = boto3.client("logs")
    group = flowed.stack.outputs["AuditLogGroupName"]

    entries = logs.filter_log_events(logGroupName=group)["events"]

    assert sorted(json.loads(entry["message"])["detail-type"] for entry in entries) == [
        "AppointmentBooked",
        "ClaimSubmitted",
        "PrescriptionApprovalRequested",
        "PrescriptionReleased",
    ]
    for value in PHI:
        assert value not in json.dumps(entries)


def test_archived_events_replay_onto_the_bus(flowed):
    events = boto3.client("events")
    flowed.bus_events()
    bus_arn = flowed.stack.attribute("CarebusBus", "Arn")
    [archive] = events.list_archives(EventSourceArn=bus_arn)["Archives"]

    events.start_replay(
        ReplayName="replay-the-sample",
        EventSourceArn=archive["ArchiveArn"]
        if "ArchiveArn" in archive
        else flowed.stack.attribute("CarebusBusArchive", "Arn"),
        EventStartTime=datetime(2000, 1, 1, tzinfo=UTC),
        EventEndTime=datetime.now(UTC),
        Destination={"Arn": bus_arn},
    )
    deadline = time.monotonic() + 5
    while events.describe_replay(ReplayName="replay-the-sample")["State"] != "COMPLETED":
        assert time.monotonic() < deadline, "the replay did not complete"
        time.sleep(0.05)

    replayed = flowed.bus_events()
    assert len(replayed) == 4
    assert {event["detail"]["encounterId"] for event in replayed} == {SAMPLE_ENCOUNTER_ID}
