"""RFC 9457 problem details, built so that no request value (possibly PHI) is ever echoed back."""

from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import ValidationError

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"
PROBLEM_TYPE_BASE: Final = "https://carebus.dev/problems/"

_INVALID_REQUEST_TITLE: Final = "The request is invalid"
# Context keys that describe the schema rather than the input; any other key (error, tag, tz_actual, ...)
# may quote what the client sent, so such messages are replaced by a generic one.
_SCHEMA_CONTEXT_KEYS: Final = frozenset(
    {
        "actual_length",
        "class",
        "class_name",
        "decimal_places",
        "discriminator",
        "expected",
        "expected_plural",
        "expected_schemes",
        "expected_tags",
        "expected_version",
        "field_type",
        "ge",
        "gt",
        "le",
        "lt",
        "max_digits",
        "max_length",
        "min_length",
        "multiple_of",
        "pattern",
        "tz_expected",
        "whole_digits",
    }
)
_GENERIC_MESSAGE: Final = "Invalid value"


def problem(status: int, title: str, detail: str, type_suffix: str, **extra: Any) -> dict[str, Any]:
    """A problem-details body; extra members (such as errors) are appended as given."""
    return {
        "type": PROBLEM_TYPE_BASE + type_suffix,
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }


def _field_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _safe_message(error: Mapping[str, Any]) -> str:
    context = error.get("ctx", {})
    return error["msg"] if context.keys() <= _SCHEMA_CONTEXT_KEYS else _GENERIC_MESSAGE


def validation_problem(*failures: ValidationError) -> dict[str, Any]:
    """A 400 problem listing each failed field (of every failed part of the request, headers and body)
    with a message and the pydantic error type as code."""
    errors = [
        {"field": _field_path(line["loc"]), "message": _safe_message(line), "code": line["type"]}
        for failure in failures
        for line in failure.errors(include_url=False, include_input=False)
    ]
    noun = "field" if len(errors) == 1 else "fields"
    return problem(
        400,
        _INVALID_REQUEST_TITLE,
        f"{len(errors)} {noun} failed validation",
        "validation-error",
        errors=errors,
    )


def body_not_json_problem() -> dict[str, Any]:
    """A 400 problem for a request body that is not a JSON object."""
    return problem(
        400,
        _INVALID_REQUEST_TITLE,
        "The request body is not valid JSON",
        "validation-error",
        errors=[{"field": "body", "message": "Must be a JSON object", "code": "json_invalid"}],
    )
