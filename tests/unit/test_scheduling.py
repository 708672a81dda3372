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
    window_has_passed,
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


# ----- a window that is already over -----------------------------------------------------------------
def test_a_window_whose_last_day_was_yesterday_has_passed() -> None:
    assert window_has_passed(MONDAY - timedelta(days=1), now=utc(MONDAY, 0, 0))


def test_a_window_whose_last_day_is_today_has_not_passed_even_after_closing_time() -> None:
    # Today's slots are gone at 23:59, but the window is not over: that is a full window, not a past one.
    assert not window_has_passed(MONDAY, now=datetime(2025, 3, 17, 23, 59, tzinfo=UTC))


def test_a_window_has_passed_by_the_practices_calendar_not_by_utc() -> None:
    # 01:00 UTC on Tuesday is still Monday evening in New York: a window ending on Monday is not over there.
    tuesday_early_utc = utc(MONDAY + timedelta(days=1), 1)
    assert window_has_passed(MONDAY, now=tuesday_early_utc)
    assert not window_has_passed(MONDAY, now=tuesday_early_utc, hours=BusinessHours(time_zone=NEW_YORK))


def test_a_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        window_has_passed(MONDAY, now=datetime(2025, 3, 17, 9))


ZONES = st.sampled_from([UTC, NEW_YORK, ZoneInfo("Pacific/Auckland"), timezone(timedelta(hours=-3))])
NOW = st.datetimes(datetime(2024, 1, 1), datetime(2026, 12, 31), timezones=st.just(UTC))


@given(
    earliest=st.dates(date(2024, 1, 1), date(2026, 12, 31)),
    length=st.integers(0, 20),
    now=NOW,
    zone=ZONES,
)
def test_a_window_that_has_passed_offers_no_slot(
    earliest: date, length: int, now: datetime, zone: ZoneInfo | timezone
) -> None:
    hours = BusinessHours(time_zone=zone)
    latest = earliest + timedelta(days=length)
    if window_has_passed(latest, now=now, hours=hours):
        assert candidate_slots(earliest, latest, not_before=now, hours=hours) == []


@given(
    latest=st.dates(date(2024, 1, 1), date(2026, 12, 31)),
    now=NOW,
    later=st.timedeltas(timedelta(0), timedelta(days=3650)),
)
def test_once_a_window_has_passed_it_stays_passed(latest: date, now: datetime, later: timedelta) -> None:
    if window_has_passed(latest, now=now):
        assert window_has_passed(latest, now=now + later)


@given(latest=st.dates(date(2024, 1, 1), date(2026, 12, 31)), moment=st.times(), zone=ZONES)
def test_a_window_is_open_all_through_its_last_local_day_and_over_all_through_the_next(
    latest: date, moment: time, zone: ZoneInfo | timezone
) -> None:
    hours = BusinessHours(time_zone=zone)
    on_the_last_day = datetime.combine(latest, moment, tzinfo=zone)
    on_the_day_after = datetime.combine(latest + timedelta(days=1), moment, tzinfo=zone)
    assert not window_has_passed(latest, now=on_the_last_day.astimezone(UTC), hours=hours)
    assert window_has_passed(latest, now=on_the_day_after.astimezone(UTC), hours=hours)


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
