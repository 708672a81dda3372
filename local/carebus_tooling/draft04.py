"""Draft-04 JSON Schema from pydantic's 2020-12 output: what API Gateway models and EventBridge's
JSONSchemaDraft4 schemas take. Every $ref is inlined; a keyword draft-04 cannot say fails by name."""

from collections.abc import Mapping
from typing import Any, Final

DRAFT_04: Final = "http://json-schema.org/draft-04/schema#"

# Draft-04 validation keywords that mean the same in pydantic's 2020-12 output.
_SAME_IN_DRAFT_04: Final = frozenset(
    {
        "type",
        "enum",
        "required",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "minProperties",
        "maxProperties",
        "multipleOf",
    }
)
# Said for people, not checked: left to the published description.
_ANNOTATIONS: Final = frozenset({"title", "description", "default", "examples", "format"})
_SUBSCHEMA_LISTS: Final = frozenset({"anyOf", "allOf", "oneOf"})
_SUBSCHEMA_MAPS: Final = frozenset({"properties", "patternProperties"})


class NoDraft04FormError(ValueError):
    """The domain model says something the gateway's draft-04 models cannot: say it another way."""


def draft_04(schema: Mapping[str, Any], *, annotations: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A pydantic (2020-12) JSON Schema in draft-04, every $ref inlined, annotations left out but those
    named (a published event schema keeps its descriptions and formats; the gateway needs none)."""
    definitions: Mapping[str, Any] = schema.get("$defs", {})

    def convert(node: Mapping[str, Any]) -> dict[str, Any]:
        converted: dict[str, Any] = {}
        for keyword, value in node.items():
            if keyword in annotations:
                converted[keyword] = value
                continue
            if keyword in _ANNOTATIONS or keyword == "$defs":
                continue
            if keyword == "$ref":
                continue
            if keyword in _SAME_IN_DRAFT_04:
                converted[keyword] = value
            elif keyword == "const":
                converted["enum"] = [value]
            elif keyword in _SUBSCHEMA_MAPS:
                converted[keyword] = {name: convert(child) for name, child in value.items()}
            elif keyword in _SUBSCHEMA_LISTS:
                converted[keyword] = [convert(child) for child in value]
            elif keyword in ("items", "not") or (
                keyword == "additionalProperties" and isinstance(value, dict)
            ):
                converted[keyword] = convert(value)
            elif keyword == "additionalProperties":
                converted[keyword] = value
            elif keyword in ("exclusiveMinimum", "exclusiveMaximum"):
                bound = "minimum" if keyword == "exclusiveMinimum" else "maximum"
                converted[bound], converted[keyword] = value, True
            else:
                raise NoDraft04FormError(f"no draft-04 form for the keyword {keyword!r}")
        if "$ref" in node:
            target = convert(definitions[node["$ref"].removeprefix("#/$defs/")])
            # In 2020-12 a $ref's siblings apply too; in draft-04 they would be ignored.
            if converted.keys() & target.keys():
                return {"allOf": [target, converted]}
            return target | converted
        return converted

    return convert(schema)
