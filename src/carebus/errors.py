"""Typed domain errors; their messages never carry PHI, so they are safe to log and return."""

from collections.abc import Mapping
from typing import Any


class CarebusError(Exception):
    """Base class of every error the domain raises on purpose."""


class NotFoundError(CarebusError):
    """The addressed resource does not exist (or the caller may not know that it does)."""


class ConflictError(CarebusError):
    """The request clashes with the current state, such as a slot that is already booked.

    current, when given, is the resource's state as the caller may see it (it goes into the answer).
    """

    def __init__(self, message: str, current: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.current = dict(current) if current is not None else None


class ForbiddenError(CarebusError):
    """The caller is authenticated but lacks the role the operation needs."""


class MalformedMessageError(CarebusError):
    """A queue message does not follow the message contract; retrying will not fix it."""


class NothingToBillError(CarebusError):
    """A claim was requested for an encounter without billable procedures."""


class BodyNotJsonError(CarebusError):
    """The request body is not one JSON object (broken, not UTF-8, too deeply nested, ambiguous)."""


class PayloadTooLargeError(CarebusError):
    """The request body exceeds the accepted size."""


class UnsupportedMediaTypeError(CarebusError):
    """The request body is not declared as JSON."""


class ServiceUnavailableError(CarebusError):
    """A service carebus depends on failed transiently; sending the same request again is safe."""
