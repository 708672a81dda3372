"""What the carebus client reports: one-line errors, each with the exit code the CLI gives it."""

from collections.abc import Mapping, Sequence
from enum import IntEnum
from http import HTTPStatus
from typing import Any


class ExitCode(IntEnum):
    """What `carebus` exits with; scripts may rely on these."""

    OK = 0
    REFUSED = 1  # the API refused the request (4xx, 5xx), or a check (the demo's expectations) failed
    USAGE = 2  # the command line or an input file is wrong (argparse exits 2 as well)
    UNREACHABLE = 3  # the stack cannot be reached or found
    UNAUTHENTICATED = 4  # sign-in failed, no valid session, or no valid AWS credentials


class CarebusError(Exception):
    """A failure reported as one line (then details such as field errors) with its exit code."""

    exit_code = ExitCode.REFUSED

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.details = tuple(details)


class UsageError(CarebusError):
    exit_code = ExitCode.USAGE


class StackUnreachableError(CarebusError):
    exit_code = ExitCode.UNREACHABLE


class AuthenticationError(CarebusError):
    exit_code = ExitCode.UNAUTHENTICATED


class ApiProblemError(CarebusError):
    """The API answered with an error; its problem details (RFC 9457) say why, field by field."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        title = problem.get("title") or problem.get("message") or _status_phrase(status)
        detail = problem.get("detail")
        listed = problem.get("errors")
        self.field_errors = (
            [error for error in listed if isinstance(error, dict)] if isinstance(listed, list) else []
        )
        # One line, whatever the answer holds (a gateway's validation string may span several).
        summary = " ".join(f"{status} {title}{f': {detail}' if detail else ''}".split())
        super().__init__(
            summary,
            [
                f"{error.get('field')}: {error.get('message')} ({error.get('code')})"
                for error in self.field_errors
            ],
        )
        self.status = status
        self.problem = dict(problem)

    @property
    def error_fields(self) -> set[str]:
        return {str(error.get("field")) for error in self.field_errors}


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
