"""The partner API's contract (v1): what a partner may read of a claim, and pages of claims submitted since.

A partner (a clearinghouse or payer) reads claims by id and by submission time. A claim here carries ids,
codes and amounts only: never who the patient is (the encounters table alone holds that). Claims are
listed through one index partition per UTC submission day, so "since" walks the days from its own to
today; the page token says where the walk stopped, opaque to the partner and checked when it returns.
"""

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Final, Literal, Self

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from carebus.errors import NotFoundError
from carebus.fields import field_error
from carebus.messages import ENCOUNTER_ID_PATTERN

# How far back `since` may reach: a partner polls; a longer history is an export, not a page walk.
LOOKBACK_DAYS: Final = 31
DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 100
CURRENCY: Final = "USD"
CLAIM_ID_PATTERN: Final = f"^clm-{ENCOUNTER_ID_PATTERN.strip('^$')}$"
_CLAIM_ID: Final = re.compile(CLAIM_ID_PATTERN.removesuffix("$") + r"\Z")
# submittedAt is stored fixed-width, so that text order is time order in the index's sort key.
_STAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"


def submission_stamp(moment: datetime) -> dict[str, str]:
    """The attributes that place a claim in the by-submission-day index: its UTC day and its time."""
    utc = moment.astimezone(UTC)
    return {"submittedDay": utc.date().isoformat(), "submittedAt": utc.strftime(_STAMP_FORMAT)}


def encounter_id_of_claim(claim_id: str) -> str:
    """The encounter a claim id names (claims are keyed by encounter); NotFoundError for an id no claim
    can have, before anything is read. The id is never quoted back: it may be anything."""
    if not _CLAIM_ID.fullmatch(claim_id):
        raise NotFoundError("no claim has this id")
    return claim_id.removeprefix("clm-")


class _Answer(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class PartnerClaimLine(_Answer):
    """One billed procedure of a claim."""

    line_number: int = Field(ge=1)
    system: Literal["CPT", "HCPCS"]
    code: str
    units: int = Field(ge=1)
    charge_cents: int = Field(ge=0, description="Per unit, in US cents.")
    amount_cents: int = Field(ge=0, description="Units times the charge, in US cents.")


class PartnerClaim(_Answer):
    """A claim as a partner reads it: ids, codes and amounts; never who the patient is."""

    claim_id: str = Field(pattern=CLAIM_ID_PATTERN)
    encounter_id: str = Field(
        pattern=ENCOUNTER_ID_PATTERN, description="An opaque id, never a record number."
    )
    status: Literal["SUBMITTED"]
    # A claim billed before the by-submission-day index existed has only its createdAt.
    submitted_at: str = Field(
        validation_alias=AliasChoices("submittedAt", "createdAt"),
        json_schema_extra={"format": "date-time"},
        description="When billing wrote the claim (UTC).",
    )
    practitioner_npi: str = Field(pattern=r"^[0-9]{10}$", description="The rendering practitioner's NPI.")
    diagnosis_codes: list[str] = Field(description="ICD-10-CM codes, in the order they justify the lines.")
    lines: list[PartnerClaimLine]
    total_cents: int = Field(ge=0)
    currency: Literal["USD"] = CURRENCY


class ClaimsPage(_Answer):
    """One page of GET /claims, oldest claim first."""

    claims: list[PartnerClaim]
    next_page_token: str | None = Field(
        description="Send it as pageToken (with the same since) for the next page; null ends the walk."
    )


def partner_claim(record: Mapping[str, Any]) -> dict[str, Any]:
    """A stored claim as the partner API answers it: the fields of PartnerClaim, nothing else."""
    return PartnerClaim.model_validate(record).model_dump(by_alias=True)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("give a time zone offset (2026-12-01T00:00:00Z)")
    return moment.astimezone(UTC)


class ClaimsQuery(BaseModel):
    """GET /claims: claims submitted at or after `since`, oldest first, `limit` to a page."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False, extra="forbid", frozen=True)

    since: Annotated[datetime, AfterValidator(_aware)] = Field(
        description=f"An ISO 8601 time with an offset, at most {LOOKBACK_DAYS} days ago, not in the future."
    )
    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE, description="Claims per page.")
    page_token: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="The nextPageToken of the page before, with the same `since`.",
    )

    def check_window(self, now: datetime) -> Self:
        """Refuse a `since` in the future or beyond the lookback, as a field error."""
        if self.since > now:
            raise field_error("ClaimsQuery", "since", "since_in_future", "since must not be in the future")
        if self.since < now - timedelta(days=LOOKBACK_DAYS):
            raise field_error(
                "ClaimsQuery", "since", "since_too_old", f"since must be within the last {LOOKBACK_DAYS} days"
            )
        return self


class PagePosition(BaseModel):
    """Where a walk over the days stopped: the day, and the index key of the last claim returned there."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    since: str
    day: date
    after: dict[str, str] | None = None

    @model_validator(mode="after")
    def _after_is_an_index_key(self) -> Self:
        if self.after is not None and set(self.after) != {"encounterId", "submittedDay", "submittedAt"}:
            raise ValueError("not a position in the claims index")
        return self


def encode_page_token(position: PagePosition) -> str:
    """An opaque token: the position as URL-safe base64 of its JSON."""
    return base64.urlsafe_b64encode(position.model_dump_json().encode()).decode().rstrip("=")


def decode_page_token(token: str, query: ClaimsQuery) -> PagePosition:
    """The position a token stands for; a field error when it is not one this API issued for `since`."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        position = PagePosition.model_validate(json.loads(raw))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise field_error("ClaimsQuery", "pageToken", "page_token", "not a page token of this API") from None
    since = query.since.strftime(_STAMP_FORMAT)
    if position.since != since or not query.since.date() <= position.day:
        raise field_error(
            "ClaimsQuery", "pageToken", "page_token", "the page token was issued for another since"
        )
    return position


def first_position(query: ClaimsQuery) -> PagePosition:
    return PagePosition(since=query.since.strftime(_STAMP_FORMAT), day=query.since.date())


def days_from(position: PagePosition, today: date) -> Iterator[date]:
    """The days a walk still has to read, from the position's own to today."""
    day = position.day
    while day <= today:
        yield day
        day += timedelta(days=1)


def since_stamp(query: ClaimsQuery) -> str:
    """`since` in the stored submittedAt form, for the index's sort-key condition."""
    return query.since.strftime(_STAMP_FORMAT)


# Reads one day's claims submitted at or after `since`: (day, at most this many, after these keys) ->
# (claims in submission order, the keys to read on from, or None when the day has no more).
type DayReader = Callable[[date, int, Mapping[str, Any] | None], tuple[list[dict[str, Any]], Any]]
_INDEX_KEYS: Final = ("encounterId", "submittedDay", "submittedAt")


def claims_page(query: ClaimsQuery, today: date, read_day: DayReader) -> dict[str, Any]:
    """One page of GET /claims: up to `limit` claims, oldest first, walking the days from where the token
    (or `since`) says to today. A full page has a nextPageToken (the next page may be empty); a page
    that is not full ends the walk, and a partner polls on with the last submittedAt as its next since."""
    position = decode_page_token(query.page_token, query) if query.page_token else first_position(query)
    found: list[dict[str, Any]] = []
    start_after: Mapping[str, Any] | None = position.after
    for day in days_from(position, today):
        while len(found) < query.limit:
            records, start_after = read_day(day, query.limit - len(found), start_after)
            found += records
            if start_after is None:
                break
        if len(found) >= query.limit:
            break
        start_after = None
    next_token = None
    if len(found) >= query.limit:
        last = found[query.limit - 1]
        next_token = encode_page_token(
            PagePosition(
                since=position.since,
                day=date.fromisoformat(last["submittedDay"]),
                after={name: last[name] for name in _INDEX_KEYS},
            )
        )
    return ClaimsPage(
        claims=[PartnerClaim.model_validate(record) for record in found[: query.limit]],
        next_page_token=next_token,
    ).model_dump(by_alias=True)
