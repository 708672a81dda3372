"""The people of a chaos run, as well-behaved clients of the public API: physicians who retry a submission
with its Idempotency-Key until it is answered, pharmacists who decide approvals and send a decision again
after a 503. What each of them was answered is kept: the ledger holds the stack to it."""

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from carebus_client.api import ApiClient
from carebus_client.errors import ApiProblemError, StackUnreachableError

# Answers after which the same request is sent again: the API documents them as safe to retry.
_RETRYABLE_STATUSES: Final = frozenset({429, 500, 502, 503, 504})


@dataclass
class Answer:
    """The last answer to one request, and how many attempts it took."""

    status: int | None = None  # None: never answered (the connection failed every time)
    body: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0


def _in_progress(problem: ApiProblemError) -> bool:
    return problem.status == 409 and "still in progress" in str(problem.problem.get("detail", ""))


def _not_ready(problem: ApiProblemError) -> bool:
    return problem.status == 409 and "not ready" in str(problem.problem.get("detail", ""))


def call_until_answered(
    call: Callable[[], Any],
    *,
    deadline: float,
    again: Callable[[ApiProblemError], bool],
    generator: random.Random,
) -> Answer:
    """call() until it answers something that is not worth sending again, or the deadline passes."""
    answer = Answer()
    pause = 0.1
    while True:
        answer.attempts += 1
        try:
            answer.status, answer.body = 200, call() or {}
            return answer
        except ApiProblemError as problem:
            answer.status, answer.body = problem.status, problem.problem
            if not again(problem):
                return answer
        except StackUnreachableError:
            answer.status, answer.body = None, {}
        if time.monotonic() + pause > deadline:
            return answer
        time.sleep(pause * (0.5 + generator.random()))
        pause = min(pause * 2, 2.0)


class Physician:
    """Submits encounters, each under its own key, and sends a submission again until it is answered."""

    def __init__(self, api: ApiClient, seed: int) -> None:
        self.api = api
        self.generator = random.Random(seed)  # noqa: S311 - jitter, not security
        self.lock = threading.Lock()

    def submit(self, body: dict[str, Any], key: str, deadline: float) -> Answer:
        def again(problem: ApiProblemError) -> bool:
            return problem.status in _RETRYABLE_STATUSES or _in_progress(problem)

        with self.lock:
            generator = random.Random(self.generator.random())  # noqa: S311 - jitter, not security
        answer = call_until_answered(
            lambda: self.api.submit_encounter(body, key), deadline=deadline, again=again, generator=generator
        )
        if answer.status == 200:
            answer.status = 202  # ApiClient returns the body of a 2xx; intake answers 202
        return answer


@dataclass
class Decision:
    """One pharmacist's decision on one approval, and what they were answered."""

    pharmacist: str
    decision: str
    reason: str | None
    answer: Answer = field(default_factory=Answer)


class Pharmacist:
    """Decides approvals; a 503 or a not-yet-decidable approval is tried again."""

    def __init__(self, subject: str, api: ApiClient, seed: int) -> None:
        self.subject = subject
        self.api = api
        self.seed = seed

    def decide(self, approval_id: str, decision: Decision, deadline: float) -> None:
        def again(problem: ApiProblemError) -> bool:
            # 404: the workflow has not recorded the approval yet.
            return problem.status in _RETRYABLE_STATUSES or problem.status == 404 or _not_ready(problem)

        decision.answer = call_until_answered(
            lambda: self.api.decide(approval_id, decision.decision, decision.reason),
            deadline=deadline,
            again=again,
            generator=random.Random(f"{self.seed}-{approval_id}"),  # noqa: S311 - jitter, not security
        )

    def read(self, approval_id: str) -> dict[str, Any] | None:
        try:
            return self.api.approval(approval_id)
        except (ApiProblemError, StackUnreachableError):
            return None
