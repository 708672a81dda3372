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
