"""Appointment slot rules; every datetime going in or out is timezone-aware and every one out is UTC."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Final
from zoneinfo import ZoneInfo

SLOT_LENGTH: Final = timedelta(minutes=30)
_DAY: Final = timedelta(days=1)

# Why a follow-up is waitlisted rather than booked: the AppointmentWaitlisted event's reason, one fixed
# text per cause. A window already over needs someone to agree a new one; a full window may free up.
NO_FREE_SLOT: Final = "no free slot in the follow-up window"
WINDOW_PASSED: Final = "the follow-up window has already passed"


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """When appointments can be booked: local opening times on the given weekdays (Monday is 0)."""

    opens: time = time(9, 0)
    closes: time = time(17, 0)
    weekdays: frozenset[int] = field(default_factory=lambda: frozenset(range(5)))
    time_zone: ZoneInfo | timezone = UTC

    def __post_init__(self) -> None:
        if self.opens >= self.closes:
            raise ValueError("business hours must open before they close")
        if not self.weekdays <= frozenset(range(7)):
            raise ValueError("weekdays are numbered 0 (Monday) to 6 (Sunday)")


def _require_aware(moment: datetime, name: str) -> None:
    if moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def candidate_slots(
    earliest: date,
    latest: date,
    *,
    not_before: datetime,
    hours: BusinessHours = BusinessHours(),
) -> list[datetime]:
    """Every slot start on a business day from earliest to latest that ends by closing time, in UTC."""
    _require_aware(not_before, "not_before")
    slots: list[datetime] = []
    day = earliest
    while day <= latest:
        if day.weekday() in hours.weekdays:
            # Stepping in wall-clock time keeps slots on the half hour locally, even on DST change days.
            start = datetime.combine(day, hours.opens)
            closing = datetime.combine(day, hours.closes)
            while start + SLOT_LENGTH <= closing:
                slot = start.replace(tzinfo=hours.time_zone).astimezone(UTC)
                if slot >= not_before:
                    slots.append(slot)
                start += SLOT_LENGTH
        day += _DAY
    return slots


def window_has_passed(latest: date, *, now: datetime, hours: BusinessHours = BusinessHours()) -> bool:
    """Whether the window's last day is over in the practice's own calendar (where its weekdays are
    counted too): then no slot of the window can be booked, whatever is free."""
    _require_aware(now, "now")
    return latest < now.astimezone(hours.time_zone).date()


def free_slots(candidates: Iterable[datetime], booked: Iterable[datetime]) -> list[datetime]:
    """The candidates that are not booked, in their original order."""
    # Aware datetimes compare and hash by instant, so bookings stored in another offset still match.
    taken = set(booked)
    return [slot for slot in candidates if slot not in taken]


def slot_key(practitioner_npi: str, start: datetime) -> str:
    """A key unique to a practitioner's slot that sorts chronologically for that practitioner."""
    _require_aware(start, "start")
    return f"SLOT#{practitioner_npi}#{start.astimezone(UTC):%Y-%m-%dT%H:%MZ}"


def appointment_id_for(encounter_id: str) -> str:
    """The appointment id of an encounter's follow-up; deterministic so that redelivery stays idempotent."""
    return f"apt-{encounter_id}"
