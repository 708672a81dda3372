"""A stack's event bus: the domain events that reached it (as its audit log kept them) and replays of its
archive back onto it."""

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from carebus_client.api import json_or_none
from carebus_client.errors import CarebusError, UsageError
from carebus_client.stacks import Stack, aws_errors

# What DescribeReplay answers once a replay is over, and which of those is success.
REPLAY_COMPLETED = "COMPLETED"
_REPLAY_ENDED = frozenset({REPLAY_COMPLETED, "CANCELLED", "FAILED"})
# EventBridge's limit on a replay's name.
_REPLAY_NAME_LENGTH = 64


@dataclass(frozen=True)
class BusEvent:
    """One delivery of a domain event to the audit log: a replayed event is delivered again, with the
    name of its replay."""

    time: str  # the event's own time, as EventBridge wrote it (ISO 8601, UTC, to the second)
    detail_type: str
    source: str
    detail: dict[str, Any]
    replay_name: str | None
    logged_at: datetime


def audit_events(
    stack: Stack, since: datetime, until: datetime | None = None, detail_types: Sequence[str] = ()
) -> list[BusEvent]:
    """The events the audit rule copied to the stack's audit log group from since (to until), in the
    order of their time; only those of the given detail types, if any are given."""
    request: dict[str, Any] = {
        "logGroupName": stack.output("AuditLogGroupName"),
        "startTime": _milliseconds(since),
    }
    if until is not None:
        request["endTime"] = _milliseconds(until)
    if len(detail_types) == 1:
        # A term narrows the search on the service's side; the exact match is made here.
        request["filterPattern"] = f'"{detail_types[0]}"'
    found = []
    with aws_errors(stack.target):
        for page in stack.client("logs").get_paginator("filter_log_events").paginate(**request):
            for log_event in page["events"]:
                event = _bus_event(log_event)
                if event is not None and (not detail_types or event.detail_type in detail_types):
                    found.append(event)
    return sorted(found, key=lambda event: (event.time, event.logged_at))


def _bus_event(log_event: dict[str, Any]) -> BusEvent | None:
    event = json_or_none(str(log_event.get("message", "")).encode())
    if not isinstance(event, dict) or "detail-type" not in event:
        return None  # not an event EventBridge wrote
    detail = event.get("detail")
    # moto writes the log event's timestamp with a fraction of a millisecond.
    logged_at = datetime.fromtimestamp(int(log_event.get("timestamp", 0)) / 1000, UTC)
    return BusEvent(
        str(event.get("time", "")),
        str(event["detail-type"]),
        str(event.get("source", "")),
        detail if isinstance(detail, dict) else {},
        event.get("replay-name"),
        logged_at,
    )


# ----- replaying the archive -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Replay:
    name: str
    archive: str
    bus: str
    since: datetime
    until: datetime
    started_state: str  # what StartReplay answered (STARTING)


def start_replay(stack: Stack, since: datetime, until: datetime, archive_name: str | None = None) -> Replay:
    """StartReplay of the bus's archive onto the bus, for the events from since to until.

    The archive is the one whose source is the stack's bus (EventBusName output): its name is not an output,
    and an archive holds only one bus's events.
    """
    if since >= until:
        raise UsageError(
            f"nothing to replay: {since:%Y-%m-%dT%H:%M:%SZ} is not before {until:%Y-%m-%dT%H:%M:%SZ}"
        )
    events = stack.client("events")
    bus_name = stack.output("EventBusName")
    with aws_errors(stack.target):
        bus_arn = events.describe_event_bus(Name=bus_name)["Arn"]
        archive = _archive_of(stack, bus_name, bus_arn, archive_name)
        archive_arn = events.describe_archive(ArchiveName=archive)["ArchiveArn"]
        name = _replay_name(stack.name)
        started = events.start_replay(
            ReplayName=name,
            EventSourceArn=archive_arn,
            EventStartTime=since,
            EventEndTime=until,
            Destination={"Arn": bus_arn},
        )
    return Replay(name, archive, bus_name, since, until, started["State"])


def wait_for_replay(
    stack: Stack, replay: Replay, timeout_seconds: float, on_state: Callable[[str], None], interval: float = 1
) -> None:
    """DescribeReplay until the replay is over, telling on_state each state it is seen in (the one
    StartReplay answered first); raises unless it COMPLETED within the timeout."""
    deadline = time.monotonic() + timeout_seconds
    on_state(replay.started_state)
    seen = replay.started_state
    while True:
        with aws_errors(stack.target):
            described = stack.client("events").describe_replay(ReplayName=replay.name)
        state = described["State"]
        if state != seen:
            on_state(state)
            seen = state
        if state == REPLAY_COMPLETED:
            return
        if state in _REPLAY_ENDED:
            reason = described.get("StateReason", "no reason given")
            raise CarebusError(f"replay {replay.name} ended {state}: {reason}")
        if time.monotonic() > deadline:
            raise CarebusError(
                f"replay {replay.name} is still {state} after {timeout_seconds:.0f} s; it goes on: "
                f"aws events describe-replay --replay-name {replay.name}"
            )
        time.sleep(interval)


def _archive_of(stack: Stack, bus_name: str, bus_arn: str, wanted: str | None) -> str:
    archives = sorted(
        archive["ArchiveName"]
        for archive in stack.client("events").list_archives(EventSourceArn=bus_arn).get("Archives", [])
    )
    if wanted is not None:
        if wanted not in archives:
            raise UsageError(f"{bus_name} has no archive {wanted!r} (it has {', '.join(archives) or 'none'})")
        return wanted
    if not archives:
        raise CarebusError(f"nothing to replay: the bus {bus_name} of stack {stack.name} has no archive")
    if len(archives) > 1:
        raise UsageError(
            f"{bus_name} has {len(archives)} archives ({', '.join(archives)}): pick one with --archive"
        )
    return archives[0]


def _replay_name(stack_name: str) -> str:
    """Readable and unique: carebus-local-replay-20261201T193107Z-4f2a."""
    suffix = f"-replay-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:4]}"
    return stack_name[: _REPLAY_NAME_LENGTH - len(suffix)] + suffix


def _milliseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
