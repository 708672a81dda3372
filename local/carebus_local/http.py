"""What the local API answers, and what it refuses to emulate."""

from collections.abc import Sequence
from dataclasses import dataclass

Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class HttpResponse:
    """What the API answers: a status, headers in order (a name may repeat) and the raw body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


class UnsupportedApiFeatureError(Exception):
    """The API definition uses an API Gateway feature that the offline runtime does not reproduce."""


def has_header(headers: Sequence[tuple[str, str]], name: str) -> bool:
    return any(key.lower() == name.lower() for key, _ in headers)


def last_header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    """The last value of a header, its name matched without regard to case."""
    values = [value for key, value in headers if key.lower() == name.lower()]
    return values[-1] if values else None
