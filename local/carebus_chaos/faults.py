"""Faults injected into AWS calls as a handler sees them, after the SDK's own retries.

Three kinds, each something a Lambda function really meets:
- THROTTLED: the service refused the call and the SDK's retries ran out; nothing took effect.
- REPLY_LOST: the call took effect, then the connection dropped before the reply (a read timeout).
- RETRIED: the call took effect, its reply was lost, and the SDK sent it again; the handler gets the second
  attempt's outcome (for a conditional write, its condition failure; for a task token, TaskTimedOut).

Only calls made while a function's handler runs are eligible (carebus_local.functions.CURRENT_FUNCTION), so
the emulator's own calls and the workflow engine's are never faulted.
"""

import random
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError, ReadTimeoutError

from carebus_local.functions import CURRENT_FUNCTION

# What each service answers when it throttles (all of them are in botocore's list of throttling codes).
_THROTTLE_CODES = {"dynamodb": "ProvisionedThroughputExceededException", "sns": "Throttling"}


class Fault(StrEnum):
    THROTTLED = "throttled"
    REPLY_LOST = "reply-lost"
    RETRIED = "retried"


@dataclass(frozen=True, slots=True)
class Call:
    """One AWS call a handler makes."""

    function: str
    service: str
    operation: str
    params: dict[str, Any]


type Chooser = Callable[[Call], Fault | None]


def throttling_error(service: str, operation: str) -> ClientError:
    code = _THROTTLE_CODES.get(service, "ThrottlingException")
    return ClientError(
        {
            "Error": {"Code": code, "Message": "Rate exceeded (injected)"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        operation,
    )


class FaultInjector:
    """While active, every handler call goes through choose(call); what it returns happens to the call."""

    def __init__(self, choose: Chooser) -> None:
        self.choose = choose
        self.injected: Counter[tuple[str, str, Fault]] = Counter()
        self.calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def _record(self, call: Call, fault: Fault | None) -> None:
        with self._lock:
            self.calls[(call.function, call.operation)] += 1
            if fault is not None:
                self.injected[(call.function, call.operation, fault)] += 1

    @contextmanager
    def active(self) -> Iterator["FaultInjector"]:
        original = BaseClient._make_api_call
        injector = self

        def faulty(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
            function = CURRENT_FUNCTION.get()
            if function is None:
                return original(client, operation, params)
            call = Call(function, client.meta.service_model.service_name, operation, params)
            fault = injector.choose(call)
            injector._record(call, fault)
            if fault is Fault.THROTTLED:
                raise throttling_error(call.service, operation)
            answer = original(client, operation, params)
            if fault is Fault.REPLY_LOST:
                raise ReadTimeoutError(endpoint_url=client.meta.endpoint_url)
            if fault is Fault.RETRIED:
                return original(client, operation, params)
            return answer

        BaseClient._make_api_call = faulty  # type: ignore[method-assign]
        try:
            yield self
        finally:
            BaseClient._make_api_call = original  # type: ignore[method-assign]

    def total(self, fault: Fault | None = None) -> int:
        return sum(count for (_, _, kind), count in self.injected.items() if fault in (None, kind))


def once(
    operation: str,
    fault: Fault,
    *,
    function: str | None = None,
    times: int = 1,
    when: Callable[[Call], bool] | None = None,
) -> Chooser:
    """Fault the first `times` calls of an operation (of one function, if named, and only calls for which
    when(call) holds, if given), then none."""
    left = [times]
    lock = threading.Lock()

    def choose(call: Call) -> Fault | None:
        if call.operation != operation or function not in (None, call.function):
            return None
        if when is not None and not when(call):
            return None
        with lock:
            if left[0] <= 0:
                return None
            left[0] -= 1
        return fault

    return choose


def first_of(*choosers: Chooser) -> Chooser:
    """The first fault any of the choosers picks for a call."""

    def choose(call: Call) -> Fault | None:
        return next((fault for chooser in choosers if (fault := chooser(call)) is not None), None)

    return choose


def at_rate(rate: float, seed: int, faults: Collection[Fault] = tuple(Fault)) -> Chooser:
    """Fault each call with probability rate, picking the kind at random; seeded, so a run can be repeated
    (the order calls arrive in still depends on thread scheduling)."""
    generator = random.Random(seed)  # noqa: S311 - sampling faults, not security
    kinds = sorted(faults)
    lock = threading.Lock()

    def choose(_: Call) -> Fault | None:
        with lock:
            if generator.random() >= rate:
                return None
            return generator.choice(kinds)

    return choose
