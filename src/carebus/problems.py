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


_BODY_NOT_JSON: Final = {"field": "body", "message": "Must be a JSON object", "code": "json_invalid"}


def validation_problem(*failures: ValidationError, body_not_json: bool = False) -> dict[str, Any]:
    """A 400 problem listing each failed field (of every failed part of the request, headers and body)
    with a message and the pydantic error type as code; a body that is not JSON is one more entry."""
    errors = [
        {"field": _field_path(line["loc"]), "message": _safe_message(line), "code": line["type"]}
        for failure in failures
        for line in failure.errors(include_url=False, include_input=False)
    ]
    if body_not_json:
        errors.append(dict(_BODY_NOT_JSON))
    if body_not_json and len(errors) == 1:
        detail = "The request body is not valid JSON"
    else:
        detail = f"{len(errors)} {'field' if len(errors) == 1 else 'fields'} failed validation"
    return problem(400, _INVALID_REQUEST_TITLE, detail, "validation-error", errors=errors)
