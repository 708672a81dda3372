"""Putting domain events on the bus, with partial failures turned into an error to retry."""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from itertools import batched
from typing import Any

from carebus.adapters.dynamo import Table
from carebus.errors import CarebusError
from carebus.events import DomainEvent

_PUT_EVENTS_LIMIT = 10


class EventPublishError(CarebusError):
    """EventBridge did not accept every event; the caller fails so the work is retried."""


def put_events(client: Any, bus_name: str, events: Sequence[DomainEvent]) -> None:
    for chunk in batched(events, _PUT_EVENTS_LIMIT, strict=False):
        answer = client.put_events(Entries=[event.to_entry(bus_name) for event in chunk])
        if answer.get("FailedEntryCount", 0):
            codes = sorted({entry["ErrorCode"] for entry in answer["Entries"] if "ErrorCode" in entry})
            raise EventPublishError(f"{answer['FailedEntryCount']} event(s) not accepted: {', '.join(codes)}")


def announce_once(
    client: Any,
    bus_name: str,
    events: Sequence[DomainEvent],
    table: Table,
    record: Mapping[str, Any],
    key: Mapping[str, Any],
) -> bool:
    """Put a record's events unless the record says they were put; mark it after. False if already done.

    A crash between the put and the mark repeats the events on retry: consumers of the bus dedupe on
    the ids in the detail. What can never happen is a record whose events were lost.
    """
    if record.get("announcedAt"):
        return False
    put_events(client, bus_name, events)
    table.set_attributes(key, {"announcedAt": datetime.now(UTC).isoformat()})
    return True
