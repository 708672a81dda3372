from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carebus.scheduling import (
    SLOT_LENGTH,
    BusinessHours,
    appointment_id_for,
    candidate_slots,
    free_slots,
    slot_key,
)

MONDAY = date(2025, 3, 17)
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")


def utc(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def test_a_business_day_has_sixteen_half_hour_slots_from_opening_to_half_an_hour_before_closing() -> None:
    slots = candidate_slots(MONDAY, MONDAY, not_before=LONG_AGO)
    assert len(slots) == 16
    assert (slots[0], slots[-1]) == (utc(MONDAY, 9), utc(MONDAY, 16, 30))


def test_weekends_have_no_slots() -> None:
    saturday, sunday = MONDAY - timedelta(days=2), MONDAY - timedelta(days=1)
    assert candidate_slots(saturday, sunday, not_before=LONG_AGO) == []


def test_slots_span_every_business_day_of_the_window_in_order() -> None:
    slots = candidate_slots(MONDAY, MONDAY + timedelta(days=6), not_before=LONG_AGO)
    assert len(slots) == 5 * 16
    assert slots == sorted(slots)
    assert {slot.date() for slot in slots} == {MONDAY + timedelta(days=offset) for offset in range(5)}


def test_slots_before_not_before_are_dropped_and_one_starting_exactly_then_is_kept() -> None:
    slots = candidate_slots(MONDAY, MONDAY, not_before=utc(MONDAY, 15, 30))
    assert slots == [utc(MONDAY, 15, 30), utc(MONDAY, 16), utc(MONDAY, 16, 30)]


def test_a_slot_that_would_run_past_closing_is_not_offered() -> None:
    hours = BusinessHours(opens=time(9, 0), closes=time(10, 45))
    assert candidate_slots(MONDAY, MONDAY, not_before=LONG_AGO, hours=hours) == [
        utc(MONDAY, 9),
        utc(MONDAY, 9, 30),
        utc(MONDAY, 10),
    ]


def test_window_ending_before_it_starts_has_no_slots() -> None:
    assert candidate_slots(MONDAY, MONDAY - timedelta(days=1), not_before=LONG_AGO) == []


def test_local_business_hours_are_converted_to_utc_across_a_dst_change() -> None:
    # US daylight saving time began on Sunday 9 March 2025.
    hours = BusinessHours(time_zone=NEW_YORK)
    friday, monday = date(2025, 3, 7), date(2025, 3, 10)
    slots = candidate_slots(friday, monday, not_before=LONG_AGO, hours=hours)
    assert [slot for slot in slots if slot.astimezone(NEW_YORK).time() == time(9)] == [
        utc(friday, 14),
        utc(monday, 13),
    ]
    assert all(slot.tzinfo is UTC for slot in slots)


def test_weekdays_are_those_of_the_local_calendar() -> None:
    # 09:00 on Monday in Auckland is still Sunday in UTC.
    hours = BusinessHours(time_zone=ZoneInfo("Pacific/Auckland"))
    first = candidate_slots(MONDAY, MONDAY, not_before=LONG_AGO, hours=hours)[0]
    assert first == datetime(2025, 3, 16, 20, 0, tzinfo=UTC)


def test_naive_not_before_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        candidate_slots(MONDAY, MONDAY, not_before=datetime(2025, 3, 17, 9))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"opens": time(17), "closes": time(9)}, "open before"),
        ({"opens": time(9), "closes": time(9)}, "open before"),
        ({"weekdays": frozenset({7})}, "weekdays"),
    ],
)
def test_inconsistent_business_hours_are_rejected(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BusinessHours(**settings)  # type: ignore[arg-type]


@given(
    earliest=st.dates(date(2024, 1, 1), date(2026, 12, 31)),
    length=st.integers(0, 20),
    not_before=st.datetimes(datetime(2023, 12, 1), datetime(2027, 2, 1), timezones=st.just(UTC)),
    zone=st.sampled_from([UTC, NEW_YORK, ZoneInfo("Asia/Kolkata"), timezone(timedelta(hours=-3))]),
)
def test_every_candidate_is_a_future_utc_slot_inside_local_business_hours(
    earliest: date, length: int, not_before: datetime, zone: ZoneInfo | timezone
) -> None:
    hours = BusinessHours(time_zone=zone)
    latest = earliest + timedelta(days=length)
    slots = candidate_slots(earliest, latest, not_before=not_before, hours=hours)
    assert slots == sorted(set(slots))
    for slot in slots:
        local = slot.astimezone(zone)
        assert slot.tzinfo is UTC
        assert slot >= not_before
        assert earliest <= local.date() <= latest
        assert local.weekday() < 5
        assert hours.opens <= local.time()
        assert (local + SLOT_LENGTH).time() <= hours.closes
        assert local.minute in {0, 30}


def test_free_slots_drop_booked_ones_and_keep_order() -> None:
    candidates = [utc(MONDAY, 9), utc(MONDAY, 9, 30), utc(MONDAY, 10)]
    assert free_slots(candidates, [utc(MONDAY, 9, 30)]) == [utc(MONDAY, 9), utc(MONDAY, 10)]


def test_a_booking_recorded_in_another_offset_still_takes_its_slot() -> None:
    candidates = [utc(MONDAY, 14), utc(MONDAY, 14, 30)]
    booked_in_new_york = datetime(2025, 3, 17, 10, 0, tzinfo=NEW_YORK)
    assert free_slots(candidates, iter([booked_in_new_york])) == [utc(MONDAY, 14, 30)]


def test_slot_key_names_the_practitioner_and_the_utc_start() -> None:
    start = datetime(2025, 3, 17, 10, 30, tzinfo=NEW_YORK)
    assert slot_key("1234567893", start) == "SLOT#1234567893#2025-03-17T14:30Z"


@given(
    st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31), timezones=st.just(UTC)),
    st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31), timezones=st.just(UTC)),
)
def test_slot_keys_of_one_practitioner_sort_chronologically(first: datetime, second: datetime) -> None:
    earlier, later = sorted([first, second])
    assert slot_key("1234567893", earlier) <= slot_key("1234567893", later)


def test_slot_key_rejects_a_naive_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        slot_key("1234567893", datetime(2025, 3, 17, 9))


def test_appointment_id_is_derived_from_the_encounter_id() -> None:
    assert appointment_id_for("enc-1") == "apt-enc-1"
