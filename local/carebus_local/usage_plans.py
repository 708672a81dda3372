"""API keys and usage plans, offline: which key a request presents, and whether its plan lets it through.

API Gateway checks a key-required method's key after the authorizer: the key must exist, be enabled and
belong to a usage plan of the API stage (else INVALID_API_KEY, 403); then the plan's throttle, a token bucket
per key (THROTTLED, 429); then its quota, requests per key in the current DAY, WEEK or MONTH, UTC
(QUOTA_EXCEEDED, 429). Keys and plans are read from moto, so keys and plans made with the AWS CLI count;
the counters live here, in memory.

Not emulated: the stage's own method throttling (MethodSettings), account-level throttling, a quota's
offset, and usage records (GetUsage).
"""

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from botocore.client import BaseClient

from carebus_local.gateway_responses import INVALID_API_KEY, QUOTA_EXCEEDED, THROTTLED, GatewayError

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

# How long a read of the keys and plans is reused: a key made or disabled takes effect within this.
DEFAULT_CACHE_SECONDS: Final = 1.0


class MeteringRefusal(Exception):
    """API Gateway refuses the request before the integration: the gateway error it answers with."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class ApiKeyUse:
    """The key a request was let through with, as the proxy event's requestContext.identity names it."""

    key_id: str
    value: str


@dataclass(frozen=True)
class _Throttle:
    rate: float  # requests a second, the bucket's refill
    burst: int  # the bucket's size

    @classmethod
    def of(cls, settings: Mapping[str, Any] | None) -> "_Throttle | None":
        if not settings or "rateLimit" not in settings:
            return None
        return cls(float(settings["rateLimit"]), int(settings.get("burstLimit", 0)))


@dataclass(frozen=True)
class _Quota:
    limit: int
    period: str  # DAY, WEEK or MONTH


@dataclass(frozen=True)
class _Plan:
    """One usage plan as far as one API stage is concerned."""

    plan_id: str
    throttle: _Throttle | None
    method_throttles: Mapping[str, _Throttle]  # by "{resourcePath}/{httpMethod}", as API Gateway keys them
    quota: _Quota | None
    key_ids: frozenset[str]


@dataclass(frozen=True)
class _Key:
    key_id: str
    value: str
    enabled: bool


@dataclass(frozen=True)
class _Snapshot:
    keys_by_value: Mapping[str, _Key]
    plans_by_stage: Mapping[tuple[str, str], tuple[_Plan, ...]]
    read_at: float


@dataclass
class _Bucket:
    tokens: float
    updated: float

    def take(self, now: float, throttle: _Throttle) -> bool:
        """One token if the bucket has one, after refilling it for the time since the last request."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(throttle.burst), self.tokens + elapsed * throttle.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class _Count:
    period_start: datetime
    requests: int = 0


def period_start(period: str, now: float) -> datetime:
    """Where the quota period that holds `now` began, in UTC. Weeks begin on Sunday, as the API reference
    described a quota's offset 0."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "DAY":
        return day
    if period == "WEEK":
        return day - timedelta(days=(day.weekday() + 1) % 7)
    if period == "MONTH":
        return day.replace(day=1)
    raise ValueError(f"a usage plan quota period is DAY, WEEK or MONTH, not {period!r}")


@dataclass
class UsagePlanMeter:
    """Admits or refuses key-required requests as API Gateway's usage plans do. Thread-safe."""

    apigateway: BaseClient
    clock: Clock = time.time
    cache_seconds: float = DEFAULT_CACHE_SECONDS
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _snapshot: _Snapshot | None = field(default=None, init=False, repr=False)
    _buckets: dict[tuple[str, str, str], _Bucket] = field(default_factory=dict, init=False, repr=False)
    _counts: dict[tuple[str, str], _Count] = field(default_factory=dict, init=False, repr=False)

    def admit(self, api_id: str, stage: str, resource: str, method: str, presented: str | None) -> ApiKeyUse:
        """The key the request is let through with; MeteringRefusal with API Gateway's answer otherwise."""
        with self._lock:
            now = self.clock()
            snapshot = self._current(now)
            key = snapshot.keys_by_value.get(presented or "")
            if key is None or not key.enabled:
                raise MeteringRefusal(INVALID_API_KEY)
            plans = [
                plan
                for plan in snapshot.plans_by_stage.get((api_id, stage), ())
                if key.key_id in plan.key_ids
            ]
            if not plans:
                raise MeteringRefusal(INVALID_API_KEY)
            if len(plans) > 1:
                # API Gateway refuses to add a key to a second plan of the same stage; moto does not.
                logger.warning(
                    "API key %s is in %d usage plans of %s/%s", key.key_id, len(plans), api_id, stage
                )
            [plan, *_] = plans
            self._throttle(plan, key, f"{resource}/{method}", now)
            self._count(plan, key, now)
            return ApiKeyUse(key.key_id, key.value)

    def _throttle(self, plan: _Plan, key: _Key, method_key: str, now: float) -> None:
        throttle = plan.method_throttles.get(method_key)
        bucket_name = method_key if throttle is not None else "*"
        throttle = throttle or plan.throttle
        if throttle is None:
            return
        bucket = self._buckets.setdefault(
            (plan.plan_id, key.key_id, bucket_name), _Bucket(float(throttle.burst), now)
        )
        if not bucket.take(now, throttle):
            raise MeteringRefusal(THROTTLED)

    def _count(self, plan: _Plan, key: _Key, now: float) -> None:
        if plan.quota is None:
            return
        start = period_start(plan.quota.period, now)
        count = self._counts.get((plan.plan_id, key.key_id))
        if count is None or count.period_start != start:
            count = self._counts[(plan.plan_id, key.key_id)] = _Count(start)
        if count.requests >= plan.quota.limit:
            raise MeteringRefusal(QUOTA_EXCEEDED)
        count.requests += 1

    def _current(self, now: float) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is None or not 0 <= now - snapshot.read_at < self.cache_seconds:
            snapshot = self._snapshot = self._read(now)
        return snapshot

    def _read(self, now: float) -> _Snapshot:
        """Every key and plan of the account and region, as moto holds them."""
        keys = {
            item["value"]: _Key(item["id"], item["value"], bool(item.get("enabled")))
            for page in self.apigateway.get_paginator("get_api_keys").paginate(includeValues=True)
            for item in page["items"]
        }
        plans_by_stage: dict[tuple[str, str], list[_Plan]] = {}
        for page in self.apigateway.get_paginator("get_usage_plans").paginate():
            for item in page["items"]:
                key_ids = frozenset(
                    plan_key["id"]
                    for plan_key_page in self.apigateway.get_paginator("get_usage_plan_keys").paginate(
                        usagePlanId=item["id"]
                    )
                    for plan_key in plan_key_page["items"]
                )
                quota = item.get("quota")
                for stage in item.get("apiStages", []):
                    method_throttles = {
                        method: throttle
                        for method, settings in (stage.get("throttle") or {}).items()
                        if (throttle := _Throttle.of(settings)) is not None
                    }
                    plan = _Plan(
                        item["id"],
                        _Throttle.of(item.get("throttle")),
                        method_throttles,
                        _Quota(int(quota["limit"]), quota["period"]) if quota else None,
                        key_ids,
                    )
                    plans_by_stage.setdefault((stage["apiId"], stage["stage"]), []).append(plan)
        ordered = {
            stage: tuple(sorted(plans, key=lambda plan: plan.plan_id))
            for stage, plans in plans_by_stage.items()
        }
        return _Snapshot(keys, ordered, now)
