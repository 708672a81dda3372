"""Field rules shared by every request model (the encounter's and the approval decision's), kept apart from
the encounter models so that a function that validates only decisions does not build those at cold start."""

from typing import Literal

from pydantic import AfterValidator, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from carebus.text import FREE_TEXT_PATTERN, printable_free_text

type DeaSchedule = Literal["II", "III", "IV", "V"]

# The free-text rule as metadata, for fields that put length constraints first: constraints written after
# a validator are checked generically and lose their string error codes.
FREE_TEXT_METADATA = (
    Field(json_schema_extra={"pattern": FREE_TEXT_PATTERN}),
    AfterValidator(printable_free_text),
)


def field_error(model: str, field: str | tuple[str, ...], code: str, message: str) -> ValidationError:
    """A validation error located at one JSON field, for rules that span fields (model validators).

    Built by hand: errors a model validator raises would have no location, and errors on an absent
    field are located by Python name, not by JSON alias.
    """
    loc = (field,) if isinstance(field, str) else field
    return ValidationError.from_exception_data(
        model, [InitErrorDetails(type=PydanticCustomError(code, message), loc=loc, input=None)]
    )
