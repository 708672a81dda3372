"""The partner API's contract without AWS: claim views, the since window, page tokens and the day walk."""

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from carebus.errors import NotFoundError
from carebus.partner import (
    CURRENCY,
    LOOKBACK_DAYS,
    ClaimsQuery,
    claims_page,
    encounter_id_of_claim,
    partner_claim,
    submission_stamp,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ENCOUNTER_ID = "5f51a656-9daa-559d-8d95-7aa5a75d9b03"


def query(**fields: Any) -> ClaimsQuery:
    return ClaimsQuery.model_validate({"since": "2026-11-20T00:00:00Z", **fields})


def stored_claim(encounter_id: str, moment: datetime) -> dict[str, Any]:
    """A claims-table record as billing writes it."""
    return {
        "claimId": f"clm-{encounter_id}",
        "encounterId": encounter_id,
        "status": "SUBMITTED",
        "createdAt": moment.isoformat(),
        **submission_stamp(moment),
        "practitionerNpi": "1234567893",
        "diagnosisCodes": ["I10"],
        "lines": [
            {
                "lineNumber": 1,
                "system": "CPT",
                "code": "99213",
                "units": 1,
                "chargeCents": 12500,
                "amountCents": 12500,
            }
        ],
        "totalCents": 12500,
    }


def field_errors(error: ValidationError) -> set[tuple[str, ...]]:
    return {tuple(str(part) for part in detail["loc"]) for detail in error.errors()}


def test_the_stamp_is_fixed_width_utc_so_text_order_is_time_order() -> None:
    moments = [
        datetime(2026, 11, 22, 12, 0, tzinfo=UTC),
        datetime(2026, 11, 22, 12, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 11, 22, 7, 30, tzinfo=UTC) + timedelta(hours=5, minutes=30, seconds=1),
    ]
    stamps = [submission_stamp(moment)["submittedAt"] for moment in moments]
    assert stamps == sorted(stamps)
    assert len({len(stamp) for stamp in stamps}) == 1
    assert (
        submission_stamp(datetime(2026, 11, 22, 23, 30, tzinfo=UTC).astimezone())["submittedDay"]
        == "2026-11-22"
    )


def test_a_partner_sees_ids_codes_and_amounts_and_nothing_else_of_the_record() -> None:
    record = {**stored_claim(ENCOUNTER_ID, NOW), "somethingAddedLater": "left out"}
    view = partner_claim(record)
    assert set(view) == {
        "claimId",
        "encounterId",
        "status",
        "submittedAt",
        "practitionerNpi",
        "diagnosisCodes",
        "lines",
        "totalCents",
        "currency",
    }
    assert view["currency"] == CURRENCY


def test_a_claim_billed_before_the_index_existed_answers_its_creation_time() -> None:
    record = stored_claim(ENCOUNTER_ID, NOW)
    del record["submittedAt"], record["submittedDay"]

    assert partner_claim(record)["submittedAt"] == NOW.isoformat()


@pytest.mark.parametrize(
    "claim_id",
    ["", "clm-", "clm-not-a-uuid", f"apt-{ENCOUNTER_ID}", f"clm-{ENCOUNTER_ID}x", f"clm-{ENCOUNTER_ID}\n"],
)
def test_a_claim_id_no_claim_can_have_is_not_found_before_any_read(claim_id: str) -> None:
    with pytest.raises(NotFoundError):
        encounter_id_of_claim(claim_id)


def test_a_claim_id_names_its_encounter() -> None:
    assert encounter_id_of_claim(f"clm-{ENCOUNTER_ID}") == ENCOUNTER_ID


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"since": "2026-11-20T00:00:00"}, "since"),  # no offset
        ({"since": "yesterday"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"pageToken": ""}, "pageToken"),
        ({"cursor": "x"}, "cursor"),
    ],
)
def test_a_bad_query_is_a_field_error(fields: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        query(**fields)
    assert (field,) in field_errors(refused.value)


def test_since_is_required() -> None:
    with pytest.raises(ValidationError) as refused:
        ClaimsQuery.model_validate({})
    assert ("since",) in field_errors(refused.value)


@pytest.mark.parametrize(
    "since",
    [NOW + timedelta(seconds=1), NOW - timedelta(days=LOOKBACK_DAYS, seconds=1)],
    ids=["future", "too old"],
)
def test_since_outside_the_window_is_a_field_error(since: datetime) -> None:
    with pytest.raises(ValidationError) as refused:
        ClaimsQuery(since=since).check_window(NOW)
    assert field_errors(refused.value) == {("since",)}


def test_since_at_the_window_edges_is_accepted() -> None:
    ClaimsQuery(since=NOW).check_window(NOW)
    ClaimsQuery(since=NOW - timedelta(days=LOOKBACK_DAYS)).check_window(NOW)


# ----- the day walk ------------------------------------------------------------------------------------
class IndexStub:
    """The by-submission-day index: claims by day in (submittedAt, encounterId) order, read a page at a
    time after a key, at most `page_cap` to a read (DynamoDB's 1 MB pages cut reads short too)."""

    def __init__(self, stamps: list[datetime], page_cap: int) -> None:
        self.claims = sorted(
            (stored_claim(str(uuid.UUID(int=number)), moment) for number, moment in enumerate(stamps)),
            key=lambda claim: (claim["submittedDay"], claim["submittedAt"], claim["encounterId"]),
        )
        self.page_cap = page_cap
        self.reads = 0

    def read_day(self, since: str) -> Any:
        def read(day: date, limit: int, start_after: Any) -> tuple[list[dict[str, Any]], Any]:
            self.reads += 1
            rows = [
                c for c in self.claims if c["submittedDay"] == day.isoformat() and c["submittedAt"] >= since
            ]
            if start_after is not None:
                after = (start_after["submittedAt"], start_after["encounterId"])
                rows = [c for c in rows if (c["submittedAt"], c["encounterId"]) > after]
            taken = rows[: min(limit, self.page_cap)]
            more = len(rows) > len(taken)
            return [dict(c) for c in taken], (dict(taken[-1]) if more and taken else None)

        return read


def walk(index: IndexStub, first: ClaimsQuery, today: date) -> list[list[str]]:
    since = first.since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    pages, current = [], first
    for _ in range(1000):
        page = claims_page(current, today, index.read_day(since))
        pages.append([claim["encounterId"] for claim in page["claims"]])
        assert len(page["claims"]) <= current.limit
        if page["nextPageToken"] is None:
            assert len(page["claims"]) < current.limit
            return pages
        assert len(page["claims"]) == current.limit
        current = first.model_copy(update={"page_token": page["nextPageToken"]})
    raise AssertionError("the walk did not end")


@settings(max_examples=150, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=6 * 24 * 3600 * 1_000_000), max_size=40),
    since_offset=st.integers(min_value=0, max_value=6 * 24 * 3600),
    limit=st.integers(min_value=1, max_value=7),
    page_cap=st.integers(min_value=1, max_value=5),
)
def test_pages_return_every_claim_since_once_in_submission_order(
    offsets: list[int], since_offset: int, limit: int, page_cap: int
) -> None:
    start = datetime(2026, 11, 16, tzinfo=UTC)
    stamps = [start + timedelta(microseconds=offset) for offset in offsets]
    since = start + timedelta(seconds=since_offset)
    index = IndexStub(stamps, page_cap)

    pages = walk(index, ClaimsQuery(since=since, limit=limit), date(2026, 11, 22))

    expected = [
        c["encounterId"] for c in index.claims if c["submittedAt"] >= submission_stamp(since)["submittedAt"]
    ]
    assert [claim for page in pages for claim in page] == expected


def test_a_token_for_another_since_or_not_issued_here_is_a_field_error() -> None:
    index = IndexStub([NOW - timedelta(hours=hours) for hours in range(5)], page_cap=10)
    first = query(since="2026-11-22T00:00:00Z", limit="2")
    token = claims_page(first, NOW.date(), index.read_day("2026-11-22T00:00:00.000000Z"))["nextPageToken"]
    assert token is not None
    for bad_query in (
        query(since="2026-11-21T00:00:00Z", limit="2", pageToken=token),
        query(since="2026-11-22T00:00:00Z", pageToken="not-a-token"),
        query(since="2026-11-22T00:00:00Z", pageToken=token[:-4]),
    ):
        with pytest.raises(ValidationError) as refused:
            claims_page(bad_query, NOW.date(), index.read_day(""))
        assert field_errors(refused.value) == {("pageToken",)}


def test_a_token_is_opaque_text_safe_in_a_query_string() -> None:
    index = IndexStub([NOW - timedelta(hours=hours) for hours in range(3)], page_cap=10)
    page = claims_page(query(since="2026-11-22T00:00:00Z", limit="1"), NOW.date(), index.read_day(""))
    assert page["nextPageToken"] is not None
    assert set(page["nextPageToken"]) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
