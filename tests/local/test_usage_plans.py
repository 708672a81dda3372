"""The usage plan meter on its own: plans and keys made through the API Gateway API (as the AWS CLI would),
time moved by a fake clock. What the partner API answers with it is tests/local/test_partner_api.py's."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from clocks import FakeClock
from moto import mock_aws

from carebus_local.gateway_responses import INVALID_API_KEY, QUOTA_EXCEEDED, THROTTLED
from carebus_local.usage_plans import MeteringRefusal, UsagePlanMeter, period_start

API, STAGE = "a1b2c3d4e5", "v1"
# A Saturday, late.
SATURDAY_NIGHT = datetime(2027, 3, 6, 23, 59, 30, tzinfo=UTC).timestamp()


@pytest.fixture
def apigateway() -> Iterator[BaseClient]:
    with mock_aws():
        yield boto3.client("apigateway", region_name="us-east-1")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(SATURDAY_NIGHT)


@pytest.fixture
def meter(apigateway: BaseClient, clock: FakeClock) -> UsagePlanMeter:
    return UsagePlanMeter(apigateway, clock=clock, cache_seconds=0)


def key_on_plan(apigateway: BaseClient, **plan: Any) -> str:
    """A new enabled key on a new plan of the stage; the key's value."""
    created = apigateway.create_usage_plan(name="plan", apiStages=[{"apiId": API, "stage": STAGE}], **plan)
    key = apigateway.create_api_key(name="key", enabled=True)
    apigateway.create_usage_plan_key(usagePlanId=created["id"], keyId=key["id"], keyType="API_KEY")
    return key["value"]


def outcome(meter: UsagePlanMeter, key: str | None, resource: str = "/claims", method: str = "GET") -> str:
    try:
        meter.admit(API, STAGE, resource, method, key)
    except MeteringRefusal as refused:
        return refused.error.response_type
    return "admitted"


@pytest.mark.parametrize(
    ("period", "moment", "start"),
    [
        ("DAY", datetime(2027, 3, 6, 23, 59, 59), datetime(2027, 3, 6)),
        ("WEEK", datetime(2027, 3, 6, 23, 59, 59), datetime(2027, 2, 28)),  # Saturday: since Sunday
        ("WEEK", datetime(2027, 3, 7, 0, 0, 0), datetime(2027, 3, 7)),  # Sunday starts a week
        ("MONTH", datetime(2027, 3, 31, 23, 59, 59), datetime(2027, 3, 1)),
        ("MONTH", datetime(2028, 2, 29, 12), datetime(2028, 2, 1)),
    ],
)
def test_quota_periods_are_calendar_periods_in_utc(period, moment, start):
    assert period_start(period, moment.replace(tzinfo=UTC).timestamp()) == start.replace(tzinfo=UTC)


def test_a_plan_without_throttle_or_quota_admits_every_request_of_its_keys(apigateway, meter):
    key = key_on_plan(apigateway)

    assert {outcome(meter, key) for _ in range(50)} == {"admitted"}


def test_no_key_is_invalid_api_key(apigateway, meter):
    key_on_plan(apigateway)

    assert outcome(meter, None) == outcome(meter, "") == INVALID_API_KEY.response_type


def test_the_bucket_refills_at_the_rate_up_to_the_burst(apigateway, meter, clock):
    key = key_on_plan(apigateway, throttle={"rateLimit": 2.0, "burstLimit": 3})

    burst = [outcome(meter, key) for _ in range(4)]
    clock.now += 0.5  # one token at 2 a second
    half_second = [outcome(meter, key) for _ in range(2)]
    clock.now += 60  # a long pause fills the bucket to the burst, no further
    after_pause = [outcome(meter, key) for _ in range(4)]

    assert burst == ["admitted"] * 3 + [THROTTLED.response_type]
    assert half_second == ["admitted", THROTTLED.response_type]
    assert after_pause == ["admitted"] * 3 + [THROTTLED.response_type]


def test_a_method_throttle_in_the_plan_has_a_bucket_of_its_own(apigateway, meter):
    plan = apigateway.create_usage_plan(
        name="plan",
        apiStages=[
            {"apiId": API, "stage": STAGE, "throttle": {"/claims/GET": {"rateLimit": 1.0, "burstLimit": 1}}}
        ],
        throttle={"rateLimit": 1.0, "burstLimit": 2},
    )
    key = apigateway.create_api_key(name="key", enabled=True)
    apigateway.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")

    listed = [outcome(meter, key["value"], "/claims") for _ in range(2)]
    one_claim = [outcome(meter, key["value"], "/claims/{claimId}") for _ in range(3)]

    assert listed == ["admitted", THROTTLED.response_type]
    assert one_claim == ["admitted", "admitted", THROTTLED.response_type]


def test_a_daily_quota_starts_again_at_midnight_utc(apigateway, meter, clock):
    key = key_on_plan(apigateway, quota={"limit": 2, "period": "DAY"})

    saturday = [outcome(meter, key) for _ in range(3)]
    clock.now += 30  # Sunday, 00:00:00 UTC
    sunday = [outcome(meter, key) for _ in range(3)]

    assert saturday == sunday == ["admitted", "admitted", QUOTA_EXCEEDED.response_type]


def test_a_weekly_quota_starts_again_on_sunday(apigateway, meter, clock):
    key = key_on_plan(apigateway, quota={"limit": 1, "period": "WEEK"})

    saturday = [outcome(meter, key) for _ in range(2)]
    clock.now += 30
    sunday = outcome(meter, key)

    assert saturday == ["admitted", QUOTA_EXCEEDED.response_type]
    assert sunday == "admitted"


def test_each_key_has_counters_of_its_own(apigateway, meter):
    plan = apigateway.create_usage_plan(
        name="plan", apiStages=[{"apiId": API, "stage": STAGE}], quota={"limit": 1, "period": "MONTH"}
    )
    values = []
    for name in ("first", "second"):
        key = apigateway.create_api_key(name=name, enabled=True)
        apigateway.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
        values.append(key["value"])

    assert [outcome(meter, value) for value in values * 2] == ["admitted", "admitted"] + [
        QUOTA_EXCEEDED.response_type
    ] * 2


def test_a_plan_covers_only_the_stages_it_names(apigateway, clock):
    key = key_on_plan(apigateway)
    meter = UsagePlanMeter(apigateway, clock=clock, cache_seconds=0)

    def admitted(api: str, stage: str) -> bool:
        try:
            meter.admit(api, stage, "/claims", "GET", key)
        except MeteringRefusal:
            return False
        return True

    assert admitted(API, STAGE)
    assert not admitted(API, "v2")
    assert not admitted("f6g7h8i9j0", STAGE)
