"""API destinations called as EventBridge calls them (user guide: API destinations; retry policy and
dead-letter queues), and what EventBridge does after each request.

- the destination's HttpMethod and InvocationEndpoint (the target's HttpParameters: path values fill the
  endpoint's `*`s, header and query parameters are added); the body is the target's input; EventBridge's
  own headers (User-Agent Amazon/EventBridge/ApiDestinations, Content-Type application/json;
  charset=utf-8, ...); the connection's authorization read from the connection's Secrets Manager secret,
  where EventBridge keeps it (API key or basic). TLS is verified against the system's trust store plus
  the CA file given (the offline clearinghouse's); nothing turns verification off.
- a 5 s timeout per request; no more than InvocationRateLimitPerSecond requests a second per destination
  (a request waits for its slot, as EventBridge holds back events over the rate).
- 2xx is delivered. 401, 407, 409, 429, 5xx, timeouts and connection errors are retried; any other status
  is not, and the event goes to the dead-letter queue at once, as does an event no request could be made
  for (its connection, secret or destination gone, or not emulated). A Retry-After longer than the
  backoff wins (an assumption: AWS documents no use of it).
- retries are bounded by the target's RetryPolicy (MaximumRetryAttempts, MaximumEventAgeInSeconds; 185 and
  86,400 when absent).
- backoff is in lab time: base * 2^(retry - 1) whole seconds, capped (Backoff: 1 s up to 30 s unless the
  runtime is told otherwise), Retry-After capped likewise; no jitter, so a run repeats exactly. EventBridge
  adds jitter and spreads 185 retries over a day.
- when the retries are exhausted or the failure is not retryable, the original event (not the target's
  input) goes to the DeadLetterConfig queue with RULE_ARN, TARGET_ARN, ERROR_CODE, ERROR_MESSAGE,
  RETRY_ATTEMPTS and, when a retry limit ended it, EXHAUSTED_RETRY_CONDITION. ERROR_CODE is THROTTLING
  (429), TIMEOUT, or SDK_CLIENT_ERROR (any other failure); AWS documents neither the mapping nor the
  messages, so these are assumptions.
Not emulated: OAuth connections, a connection's InvocationHttpParameters, gzip-encoded answers (the answer
is read and dropped), the EventBridge metrics (Invocations, FailedInvocations, InvocationsSentToDlq).
"""

import base64
import email.utils
import json
import math
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException, HTTPSConnection
from pathlib import Path
from typing import Any, Final

from carebus_local.stack import RuleTargetSpec

API_DESTINATION_ARN_PART: Final = ":api-destination/"
# API destinations' documented client execution timeout.
API_DESTINATION_TIMEOUT_SECONDS: Final = 5.0
RETRYABLE_STATUSES: Final = frozenset({401, 407, 409, 429})
DEFAULT_MAXIMUM_RETRY_ATTEMPTS: Final = 185
DEFAULT_MAXIMUM_EVENT_AGE_SECONDS: Final = 86_400
# SQS's longest DelaySeconds.
_MAX_DELAY_SECONDS: Final = 900
# The answer is read (so that the connection closes cleanly) up to what EventBridge's Range header asks.
_MAX_ANSWER_BYTES: Final = 1_048_576
_ERROR_PREFIX: Final = "Unable to invoke ApiDestination endpoint: "
EVENTBRIDGE_HEADERS: Final = {
    "User-Agent": "Amazon/EventBridge/ApiDestinations",
    "Content-Type": "application/json; charset=utf-8",
    "Range": "bytes=0-1048575",
    "Accept-Encoding": "gzip,deflate",
    "Connection": "close",
}


# ----- decisions --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Invocation:
    """What one request to an API destination came to."""

    status: int | None
    error_code: str = ""
    error_message: str = ""
    retry_after_seconds: float | None = None
    # False when no request could be made at all (the connection, its secret or the destination is gone,
    # or is one the emulation cannot call): no retry can change that.
    could_call: bool = True

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """Timeouts and connection errors (no status), and the statuses EventBridge documents as retried."""
        if not self.could_call:
            return False
        return self.status is None or self.status in RETRYABLE_STATUSES or 500 <= self.status <= 599


def not_callable(error: Exception) -> Invocation:
    """A destination no request could be made to: the event goes to the dead-letter queue at once."""
    return Invocation(None, "SDK_CLIENT_ERROR", f"{_ERROR_PREFIX}{error}", could_call=False)


def http_failure(status: int, retry_after_seconds: float | None = None) -> Invocation:
    code = "THROTTLING" if status == 429 else "SDK_CLIENT_ERROR"
    message = f"{_ERROR_PREFIX}The endpoint answered HTTP {status}."
    return Invocation(status, code, message, retry_after_seconds)


@dataclass(frozen=True)
class RetryPolicy:
    maximum_retry_attempts: int = DEFAULT_MAXIMUM_RETRY_ATTEMPTS
    maximum_event_age_seconds: int = DEFAULT_MAXIMUM_EVENT_AGE_SECONDS

    @classmethod
    def of(cls, target: dict[str, Any]) -> "RetryPolicy":
        policy = target.get("RetryPolicy", {})
        return cls(
            int(policy.get("MaximumRetryAttempts", DEFAULT_MAXIMUM_RETRY_ATTEMPTS)),
            int(policy.get("MaximumEventAgeInSeconds", DEFAULT_MAXIMUM_EVENT_AGE_SECONDS)),
        )


@dataclass(frozen=True)
class Backoff:
    """Lab-time backoff between retries, in whole seconds (SQS delays are whole seconds)."""

    base_seconds: int = 1
    cap_seconds: int = 30

    def delay(self, retry: int, retry_after_seconds: float | None = None) -> int:
        """Before the retry-th retry (1 for the first): the exponential delay or Retry-After, whichever is
        longer (EventBridge takes the more conservative), no longer than the cap."""
        exponential = self.base_seconds * 2 ** min(retry - 1, 32)
        wanted = max(exponential, math.ceil(retry_after_seconds or 0))
        return min(wanted, self.cap_seconds, _MAX_DELAY_SECONDS)


@dataclass(frozen=True)
class Retry:
    delay_seconds: int


@dataclass(frozen=True)
class DeadLetter:
    # "MaximumRetryAttempts" or "MaximumEventAgeInSeconds" when a retry limit ended it; None when the
    # failure is not retried at all.
    exhausted_retry_condition: str | None


def next_step(
    invocation: Invocation, retries_done: int, age_seconds: float, policy: RetryPolicy, backoff: Backoff
) -> Retry | DeadLetter | None:
    """After one request: None when delivered, else a retry or the dead-letter queue."""
    if invocation.delivered:
        return None
    if not invocation.retryable:
        return DeadLetter(None)
    if retries_done >= policy.maximum_retry_attempts:
        return DeadLetter("MaximumRetryAttempts")
    delay = backoff.delay(retries_done + 1, invocation.retry_after_seconds)
    if age_seconds + delay > policy.maximum_event_age_seconds:
        return DeadLetter("MaximumEventAgeInSeconds")
    return Retry(delay)


def dead_letter_attributes(
    rule_arn: str, target_arn: str, invocation: Invocation, retries_done: int, condition: str | None
) -> dict[str, dict[str, str]]:
    """The message attributes EventBridge puts on an event it sends to a target's dead-letter queue."""
    values = {
        "RULE_ARN": rule_arn,
        "TARGET_ARN": target_arn,
        "ERROR_CODE": invocation.error_code,
        "ERROR_MESSAGE": invocation.error_message,
        "RETRY_ATTEMPTS": str(retries_done),
        **({"EXHAUSTED_RETRY_CONDITION": condition} if condition else {}),
    }
    return {name: {"DataType": "String", "StringValue": value} for name, value in values.items()}


class RateLimiter:
    """No more than `rate` requests a second to one destination: each request takes the next slot, 1/rate
    seconds after the one before, and waits for it. Thread-safe; clock and sleep injectable."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot: dict[str, float] = {}

    def acquire(self, destination: str, rate: int) -> float:
        """Wait for the destination's next slot; how long that was."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot.get(destination, now))
            self._next_slot[destination] = slot + 1 / max(1, rate)
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
        return wait


# ----- requests ---------------------------------------------------------------------------------------
def _retry_after(value: str | None, now: float) -> float | None:
    if value is None:
        return None
    try:
        return float(int(value.strip()))
    except ValueError:
        try:
            return email.utils.parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError):
            return None


def call_endpoint(
    method: str, url: str, body: bytes, headers: dict[str, str], context: ssl.SSLContext, timeout: float
) -> Invocation:
    """One HTTPS request, answered within `timeout` seconds in all (the connection and sending, then the
    answer in what time is left); what it came to (timeouts and connection failures have no status)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"an API destination's endpoint is an HTTPS URL, not {url!r}")
    deadline = time.monotonic() + timeout
    connection = HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=context)
    try:
        connection.request(
            method, urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, "")), body, headers
        )
        if connection.sock is not None:
            connection.sock.settimeout(max(0.001, deadline - time.monotonic()))
        answer = connection.getresponse()
        answer.read(_MAX_ANSWER_BYTES)
    except TimeoutError:
        return Invocation(None, "TIMEOUT", f"{_ERROR_PREFIX}Timeout calling endpoint for API Destination.")
    except (OSError, HTTPException) as error:
        message = f"{_ERROR_PREFIX}API destination endpoint cannot be reached ({type(error).__name__})."
        return Invocation(None, "SDK_CLIENT_ERROR", message)
    finally:
        connection.close()
    if 200 <= answer.status < 300:
        return Invocation(answer.status)
    return http_failure(answer.status, _retry_after(answer.getheader("Retry-After"), time.time()))


def _authorization(kind: str, secret: dict[str, Any]) -> dict[str, str]:
    """The header a connection adds, from the fields its secret keeps (moto's layout: snake_case)."""
    if kind == "API_KEY":
        return {secret["api_key_name"]: secret["api_key_value"]}
    if kind == "BASIC":
        token = base64.b64encode(f"{secret['username']}:{secret['password']}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    raise ValueError(f"{kind} connections are not emulated offline")


def _endpoint(endpoint: str, http_parameters: dict[str, Any]) -> str:
    for value in http_parameters.get("PathParameterValues", []):
        endpoint = endpoint.replace("*", urllib.parse.quote(str(value), safe=""), 1)
    query = http_parameters.get("QueryStringParameters", {})
    if query:
        endpoint += ("&" if "?" in endpoint else "?") + urllib.parse.urlencode(query)
    return endpoint


class ApiDestinations:
    """Calls API destinations as EventBridge does: the destination's endpoint and method, its connection's
    authorization, its rate limit, the documented headers and timeout."""

    def __init__(
        self,
        events: Any,
        secretsmanager: Any,
        *,
        ca_file: Path | None = None,
        backoff: Backoff | None = None,
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.time,
        timeout_seconds: float = API_DESTINATION_TIMEOUT_SECONDS,
        call: Callable[..., Invocation] = call_endpoint,
    ) -> None:
        self.events = events
        self.secretsmanager = secretsmanager
        self.backoff = backoff or Backoff()
        self.limiter = limiter or RateLimiter()
        self.clock = clock
        self.timeout_seconds = timeout_seconds
        self._call = call
        self._context = ssl.create_default_context()
        if ca_file is not None:
            self._context.load_verify_locations(cafile=str(ca_file))
        self._rule_arns: dict[tuple[str, str], str] = {}

    def rule_arn(self, spec: RuleTargetSpec) -> str:
        key = (spec.event_bus_name, spec.rule_name)
        if key not in self._rule_arns:
            self._rule_arns[key] = self.events.describe_rule(
                Name=spec.rule_name, EventBusName=spec.event_bus_name
            )["Arn"]
        return self._rule_arns[key]

    def invoke(self, target: dict[str, Any], payload: str) -> Invocation:
        # Read at every call, as EventBridge reads them: a connection or destination changed since applies.
        name = target["Arn"].split(API_DESTINATION_ARN_PART, 1)[1].split("/", 1)[0]
        destination = self.events.describe_api_destination(Name=name)
        connection_name = destination["ConnectionArn"].split(":connection/", 1)[1].split("/", 1)[0]
        connection = self.events.describe_connection(Name=connection_name)
        secret = json.loads(
            self.secretsmanager.get_secret_value(SecretId=connection["SecretArn"])["SecretString"]
        )
        http_parameters = target.get("HttpParameters", {})
        headers = {
            **EVENTBRIDGE_HEADERS,
            **http_parameters.get("HeaderParameters", {}),
            **_authorization(connection["AuthorizationType"], secret),
        }
        url = _endpoint(destination["InvocationEndpoint"], http_parameters)
        self.limiter.acquire(target["Arn"], int(destination.get("InvocationRateLimitPerSecond") or 300))
        return self._call(
            destination["HttpMethod"], url, payload.encode(), headers, self._context, self.timeout_seconds
        )
