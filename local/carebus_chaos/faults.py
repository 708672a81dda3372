"""Faults injected into the AWS calls of the handlers, each something a Lambda function really meets:
- THROTTLED: the service refused; nothing took effect.
- REPLY_LOST: the call took effect, then the connection dropped before the reply (a read timeout).
- RETRIED: the call took effect, its reply was lost, and the SDK sent it again; the handler gets the second
  attempt's outcome (for a conditional write, its condition failure; for a task token, TaskTimedOut).

At two levels. Level "call" faults what the handler sees of a call, after the SDK's own retries (what a
test names to prove one path). Level "attempt" faults each HTTP attempt under the SDK's retries, as the
network and the services do: the SDK retries a throttle or a lost reply by itself (a lost reply's retry is
RETRIED), and the handler sees a failure only when every attempt failed.

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

from botocore.awsrequest import AWSResponse
from botocore.client import BaseClient
from botocore.endpoint import Endpoint
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
type Level = str  # "call" or "attempt"


class _EmptyBody:
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b""


def _throttled(service: str) -> dict[str, Any]:
    code = _THROTTLE_CODES.get(service, "ThrottlingException")
    return {
        "Error": {"Code": code, "Message": "Rate exceeded (injected)"},
        "ResponseMetadata": {"HTTPStatusCode": 400, "HTTPHeaders": {}},
    }


def throttling_error(service: str, operation: str) -> ClientError:
    return ClientError(_throttled(service), operation)


class FaultInjector:
    """While active, every handler call (or HTTP attempt, at level "attempt") goes through choose(call);
    what it returns happens to it."""

    def __init__(self, choose: Chooser, level: Level = "call") -> None:
        if level not in ("call", "attempt"):
            raise ValueError(f"no fault level {level!r}")
        self.choose = choose
        self.level = level
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
        patched, name, faulty = (
            (BaseClient, "_make_api_call", self._faulty_call())
            if self.level == "call"
            else (Endpoint, "_do_get_response", self._faulty_attempt())
        )
        original = getattr(patched, name)
        setattr(patched, name, faulty(original))
        try:
            yield self
        finally:
            setattr(patched, name, original)

    def _decide(self, call: Call) -> Fault | None:
        fault = self.choose(call)
        self._record(call, fault)
        return fault

    def _faulty_call(self) -> Callable[[Any], Any]:
        def wrap(original: Any) -> Any:
            def faulty(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
                function = CURRENT_FUNCTION.get()
                if function is None:
                    return original(client, operation, params)
                service = client.meta.service_model.service_name
                fault = self._decide(Call(function, service, operation, params))
                if fault is Fault.THROTTLED:
                    raise throttling_error(service, operation)
                answer = original(client, operation, params)
                if fault is Fault.REPLY_LOST:
                    raise ReadTimeoutError(endpoint_url=client.meta.endpoint_url)
                if fault is Fault.RETRIED:
                    return original(client, operation, params)
                return answer

            return faulty

        return wrap

    def _faulty_attempt(self) -> Callable[[Any], Any]:
        def wrap(original: Any) -> Any:
            def faulty(endpoint: Endpoint, request: Any, operation_model: Any, context: Any) -> Any:
                function = CURRENT_FUNCTION.get()
                if function is None:
                    return original(endpoint, request, operation_model, context)
                service = operation_model.service_model.service_name
                fault = self._decide(Call(function, service, operation_model.name, {}))
                if fault is Fault.THROTTLED:
                    refused = AWSResponse(request.url, 400, {}, _EmptyBody())
                    return (refused, _throttled(service)), None
                outcome = original(endpoint, request, operation_model, context)
                if fault in (Fault.REPLY_LOST, Fault.RETRIED):
                    # The SDK decides what comes next, as it would: it retries while attempts remain.
                    return None, ReadTimeoutError(endpoint_url=request.url)
                return outcome

            return faulty

        return wrap

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
