"""API Gateway's own answers, offline: the template's gateway responses and its body-model refusals."""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError

from carebus_local.http import HttpResponse, UnsupportedApiFeatureError, has_header


@dataclass(frozen=True)
class GatewayError:
    """One of API Gateway's own answers: its response type, default status and message."""

    response_type: str
    status: int
    message: str
    error_type: str  # what API Gateway puts in x-amzn-ErrorType
    validation_error: str = ""


MISSING_AUTHENTICATION_TOKEN: Final = GatewayError(
    "MISSING_AUTHENTICATION_TOKEN", 403, "Missing Authentication Token", "MissingAuthenticationTokenException"
)
# A function that raised or answered something other than a proxy response; no dedicated type exists.
INTEGRATION_FAILED: Final = GatewayError(
    "DEFAULT_5XX", 502, "Internal server error", "InternalServerErrorException"
)
# What API Gateway answers for a response type the API does not customize.
_DEFAULT_TEMPLATE: Final = '{"message":$context.error.messageString}'
# A $context reference, maybe inside $util.escapeJavaScript(...), maybe followed by .replaceAll("a","b") calls
# (AWS's documented way to turn the \' that escapeJavaScript writes back into a JSON-safe ').
_VTL_REFERENCE: Final = re.compile(
    r"(?P<escape>\$util\.escapeJavaScript\()?(?P<name>\$context(?:\.\w+(?!\())+)(?(escape)\))"
    r'(?P<calls>(?:\.replaceAll\("[^"]*",\s*"[^"]*"\))*)'
)
_REPLACE_ALL: Final = re.compile(r'\.replaceAll\("([^"]*)",\s*"([^"]*)"\)')
_HEADER_PARAMETER: Final = "gatewayresponse.header."


def unauthorized(message: str) -> GatewayError:
    return GatewayError("UNAUTHORIZED", 401, message, "UnauthorizedException")


def bad_request_body(validation_error: str) -> GatewayError:
    return GatewayError(
        "BAD_REQUEST_BODY", 400, "Invalid request body", "BadRequestException", validation_error
    )


_JAVASCRIPT_ESCAPES: Final = {
    "'": "\\'",
    '"': '\\"',
    "\\": "\\\\",
    "/": "\\/",
    "\b": "\\b",
    "\n": "\\n",
    "\t": "\\t",
    "\f": "\\f",
    "\r": "\\r",
}


def _escape_javascript(text: str) -> str:
    """$util.escapeJavaScript: Apache Commons' JavaScript escaping, single quotes and slashes included."""
    escaped = []
    for character in text:
        if character in _JAVASCRIPT_ESCAPES:
            escaped.append(_JAVASCRIPT_ESCAPES[character])
        elif " " <= character <= "~":
            escaped.append(character)
        else:
            # Java strings are UTF-16: a character beyond the BMP becomes two escaped surrogates.
            units = character.encode("utf-16-be")
            escaped.extend(f"\\u{units[i] << 8 | units[i + 1]:04X}" for i in range(0, len(units), 2))
    return "".join(escaped)


@dataclass(frozen=True)
class GatewayResponse:
    """A gateway response of the API: status (None keeps the type's own), body template and headers."""

    status: int | None
    template: str
    headers: tuple[tuple[str, str], ...]

    @classmethod
    def from_definition(cls, definition: Mapping[str, Any]) -> "GatewayResponse":
        """What API Gateway keeps of one x-amazon-apigateway-gateway-responses entry."""
        templates = definition.get("responseTemplates") or {}
        headers = []
        for name, value in definition.get("responseParameters", {}).items():
            if not name.startswith(_HEADER_PARAMETER):
                continue
            if len(value) < 2 or value[0] != "'" or value[-1] != "'":
                raise UnsupportedApiFeatureError(f"gateway response parameter {name} is not a quoted literal")
            headers.append((name.removeprefix(_HEADER_PARAMETER), value[1:-1]))
        status = definition.get("statusCode")
        return cls(
            status=int(status) if status is not None else None,
            template=templates.get("application/json") or next(iter(templates.values()), _DEFAULT_TEMPLATE),
            headers=tuple(headers),
        )

    def render(self, error: GatewayError, request_id: str) -> HttpResponse:
        """The response, its template filled in with the error's $context variables."""
        variables = {
            "$context.error.message": error.message,
            "$context.error.messageString": json.dumps(error.message),
            "$context.error.validationErrorString": error.validation_error,
            "$context.error.responseType": error.response_type,
            "$context.requestId": request_id,
        }

        def substitute(reference: re.Match[str]) -> str:
            if reference["name"] not in variables:
                return reference.group(0)  # Velocity leaves a reference it cannot resolve as written
            value = variables[reference["name"]]
            if reference["escape"]:
                value = _escape_javascript(value)
            # Java's replaceAll takes a regular expression; the replacements used here are literal text.
            for pattern, replacement in _REPLACE_ALL.findall(reference["calls"]):
                value = re.sub(pattern, lambda _, literal=replacement: literal, value)
            return value

        headers = list(self.headers)
        if not has_header(headers, "Content-Type"):
            headers.append(("Content-Type", "application/json"))
        headers += [("x-amzn-RequestId", request_id), ("x-amzn-ErrorType", error.error_type)]
        body = _VTL_REFERENCE.sub(substitute, self.template).encode()
        # A status set on DEFAULT_4XX/DEFAULT_5XX applies to every response type it stands in for.
        return HttpResponse(self.status or error.status, headers, body)


UNCUSTOMIZED: Final = GatewayResponse(None, _DEFAULT_TEMPLATE, ())


# ----- request body models -------------------------------------------------------------------------------
def _json_type(value: Any) -> str:
    match value:
        case bool():
            return "boolean"
        case int():
            return "integer"
        case float():
            return "number"
        case str():
            return "string"
        case list():
            return "array"
        case dict():
            return "object"
    return "null"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _violation_message(error: ValidationError) -> str:
    """API Gateway's wording for one violation (its validator is fge's json-schema-validator)."""
    instance, expected = error.instance, error.validator_value
    match error.validator:
        case "required":
            missing = [name for name in expected if name not in instance]
            return f"object has missing required properties ({_compact(missing)})"
        case "additionalProperties":
            declared = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
            extra = sorted(name for name in instance if name not in declared)
            return f"object instance has properties which are not allowed by the schema: {_compact(extra)}"
        case "type":
            allowed = expected if isinstance(expected, list) else [expected]
            return (
                f"instance type ({_json_type(instance)}) does not match any allowed primitive type "
                f"(allowed: {_compact(allowed)})"
            )
        case "enum":
            return (
                f"instance value ({_compact(instance)}) not found in enum "
                f"(possible values: {_compact(expected)})"
            )
        case "pattern":
            return f'ECMA 262 regex "{expected}" does not match input string "{instance}"'
        case "minLength":
            return f'string "{instance}" is too short (length: {len(instance)}, required minimum: {expected})'
        case "maxLength":
            return f'string "{instance}" is too long (length: {len(instance)}, maximum allowed: {expected})'
        case "minItems":
            return (
                f"array is too short: must have at least {expected} elements "
                f"but instance has {len(instance)} elements"
            )
        case "maxItems":
            return (
                f"array is too long: must have at most {expected} elements "
                f"but instance has {len(instance)} elements"
            )
        case "minimum":
            return (
                f"numeric instance is lower than the required minimum "
                f"(minimum: {expected}, found: {instance})"
            )
        case "maximum":
            return (
                f"numeric instance is greater than the required maximum "
                f"(maximum: {expected}, found: {instance})"
            )
    return error.message


def validation_error_string(validator: Draft4Validator, body: bytes) -> str | None:
    """$context.error.validationErrorString for a body the model refuses; None when the body passes."""
    try:
        # An absent body is checked as an empty object, so the model's required properties still apply.
        document = json.loads(body.decode("utf-8") or "{}")
    except ValueError as unreadable:
        return f"[Invalid JSON: {unreadable}]"
    messages: list[str] = []
    for violation in validator.iter_errors(document):
        message = _violation_message(violation)
        if message not in messages:
            messages.append(message)
    return f"[{', '.join(messages)}]" if messages else None
