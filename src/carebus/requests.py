"""How a request body becomes a request model: JSON only, every value as sent.

Types are strict (a boolean, a string or 1.0 is not an integer; a date is a "YYYY-MM-DD" string), only the
JSON (camelCase) names are read, and a body that is not one JSON object (broken, not UTF-8, nested past
the parser's limit, with a member name twice) is refused as not JSON, never half-read.
"""

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from carebus.errors import BodyNotJsonError

# Errors about the body as a whole: it is not a JSON object at all.
_NOT_AN_OBJECT = frozenset({"json_invalid", "model_type", "model_attributes_type"})


def _refuse_duplicate_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        # Parsers disagree on which of two values wins: one checked and another stored is how requests
        # are smuggled past a check.
        raise BodyNotJsonError("a member name appears twice in one object")
    return dict(pairs)


def parse_request[Model: BaseModel](
    model: type[Model], body: bytes, context: Mapping[str, Any] | None = None
) -> Model:
    """The model of a JSON body; ValidationError naming failed fields, or BodyNotJsonError."""
    try:
        json.loads(body, object_pairs_hook=_refuse_duplicate_names)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise BodyNotJsonError("the body is not valid JSON") from None
    try:
        return model.model_validate_json(body, strict=True, by_alias=True, by_name=False, context=context)
    except ValidationError as error:
        if any(line["type"] in _NOT_AN_OBJECT and not line["loc"] for line in error.errors()):
            raise BodyNotJsonError("the body is not a JSON object") from None
        raise
