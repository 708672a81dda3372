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
# The emulator itself failed (a bug, not the function): a dropped connection would tell the client less.
INTERNAL_ERROR: Final = GatewayError(
    "DEFAULT_5XX", 500, "Internal server error", "InternalServerErrorException"
)
# A payload above API Gateway's hard 10 MB quota.
REQUEST_TOO_LARGE: Final = GatewayError(
    "REQUEST_TOO_LARGE", 413, "Request Too Long", "RequestTooLargeException"
)
# A method that requires an API key got none, one that is unknown or disabled, or one that no usage plan of
# the stage holds: API Gateway says no more than this, whichever it was.
INVALID_API_KEY: Final = GatewayError("INVALID_API_KEY", 403, "Forbidden", "ForbiddenException")
# The key's usage plan throttle (its token bucket) is empty.
THROTTLED: Final = GatewayError("THROTTLED", 429, "Too Many Requests", "TooManyRequestsException")
# The key has sent every request its usage plan's quota allows in this period.
QUOTA_EXCEEDED: Final = GatewayError("QUOTA_EXCEEDED", 429, "Limit Exceeded", "LimitExceededException")
# What API Gateway answers for a response type the API does not customize.
_DEFAULT_TEMPLATE: Final = '{"message":$context.error.messageString}'
# Gateway response templates are not VTL: API Gateway substitutes $context variables and nothing else.
_CONTEXT_REFERENCE: Final = re.compile(r"\$context(?:\.\w+)+")
_HEADER_PARAMETER: Final = "gatewayresponse.header."
# fge's validator parses with Jackson, which (from 2.15, by default) refuses documents nested deeper than
# this. A fixed depth also keeps the answer a 400 whatever Python's recursion limits happen to be.
MAX_NESTING_DEPTH: Final = 1000
_TOO_DEEP: Final = f"[Invalid JSON: the document is nested deeper than {MAX_NESTING_DEPTH} levels]"


def unauthorized(message: str) -> GatewayError:
    return GatewayError("UNAUTHORIZED", 401, message, "UnauthorizedException")


def unreadable_request(message: str) -> GatewayError:
    """A request whose framing (its Content-Length) cannot be trusted, refused before any route is looked
    for. Not BAD_REQUEST_BODY, whose template speaks of the body's model; the API's DEFAULT_4XX carries
    the message."""
    return GatewayError("DEFAULT_4XX", 400, message, "BadRequestException")


def bad_request_body(validation_error: str) -> GatewayError:
    return GatewayError(
        "BAD_REQUEST_BODY", 400, "Invalid request body", "BadRequestException", validation_error
    )


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
        for template in templates.values():
            if "$util" in template or "#set" in template or "#if" in template:
                raise UnsupportedApiFeatureError(
                    "a gateway response template is not VTL: API Gateway substitutes $context variables only"
                )
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
            # A reference it cannot resolve is left as written.
            return variables.get(reference.group(0), reference.group(0))

        headers = list(self.headers)
        if not has_header(headers, "Content-Type"):
            headers.append(("Content-Type", "application/json"))
        headers += [("x-amzn-RequestId", request_id), ("x-amzn-ErrorType", error.error_type)]
        body = _CONTEXT_REFERENCE.sub(substitute, self.template).encode()
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


def _nesting_depth(document: Any) -> int:
    """How deep arrays and objects nest, stopping once past MAX_NESTING_DEPTH. Counted with a list, not
    recursion: deep nesting is what it looks for."""
    deepest = 0
    pending = [(document, 1)] if isinstance(document, dict | list) else []
    while pending and deepest <= MAX_NESTING_DEPTH:
        value, depth = pending.pop()
        deepest = max(deepest, depth)
        children = value.values() if isinstance(value, dict) else value
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def validation_error_string(validator: Draft4Validator, body: bytes) -> str | None:
    """$context.error.validationErrorString for a body the model refuses; None when the body passes."""
    try:
        # An absent body is checked as an empty object, so the model's required properties still apply.
        document = json.loads(body.decode("utf-8") or "{}")
    except ValueError as unreadable:
        return f"[Invalid JSON: {unreadable}]"
    except RecursionError:
        return _TOO_DEEP
    if _nesting_depth(document) > MAX_NESTING_DEPTH:
        return _TOO_DEEP
    messages: list[str] = []
    try:
        for violation in validator.iter_errors(document):
            message = _violation_message(violation)
            if message not in messages:
                messages.append(message)
    except RecursionError:
        # jsonschema and the messages (which quote the instance) recurse; a thread's stack may be shallow.
        return _TOO_DEEP
    return f"[{', '.join(messages)}]" if messages else None
