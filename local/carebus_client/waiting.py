"""Waiting for what happens after an answer: the flow behind a 202 is asynchronous."""

import time
from collections.abc import Callable
from typing import Any


def wait_until(
    condition: Callable[[], Any], timeout: float = 10.0, what: str = "the condition", interval: float = 0.05
) -> Any:
    """condition() until it returns something truthy, for at most `timeout` seconds; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(interval)
