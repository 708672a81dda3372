"""API Gateway offline: a REST API's routes, Cognito authorizer, body models, gateway responses, proxy events.

LocalRestApi answers HTTP requests from the OpenAPI body that the SAM transform produced, in the order
API Gateway works: find the resource and method, run the authorizer, validate the body, call the function.
"""

import base64
import hashlib
import json
import logging
import re
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl

from botocore.client import BaseClient
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

logger = logging.getLogger(__name__)

Headers = list[tuple[str, str]]
Invoke = Callable[[str, dict[str, Any]], Any]
JwksFetcher = Callable[[str], dict[str, Any]]

# Java's Date.toString and the access-log time format speak English whatever the locale.
_WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_BEARER_PREFIX: Final = re.compile(r"^bearer\s+", re.IGNORECASE)
TOKEN_EXPIRED_MESSAGE: Final = "The incoming token has expired"  # noqa: S105 - a message, not a secret


@dataclass(frozen=True)
class HttpResponse:
    """What the API answers: a status, headers in order (a name may repeat) and the raw body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


class Unauthorized(Exception):
    """The Cognito authorizer refuses the token; message is what API Gateway says in its 401."""

    def __init__(self, message: str = "Unauthorized") -> None:
        super().__init__(message)
        self.message = message


class UnsupportedApiFeatureError(Exception):
    """The API definition uses an API Gateway feature that the offline runtime does not reproduce."""


# ----- Cognito authorizer --------------------------------------------------------------------------------
def fetch_jwks_over_http(url: str) -> dict[str, Any]:
    """A user pool's JSON Web Key Set, read from the endpoint that serves it."""
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - the runtime's own moto endpoint
        return json.load(answer)


class CognitoVerifier:
    """Checks Cognito ID tokens as API Gateway's Cognito user pool authorizer does."""

    def __init__(
        self,
        cognito_idp_client: BaseClient,
        endpoint_url: str,
        region: str,
        *,
        fetch_jwks: JwksFetcher = fetch_jwks_over_http,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cognito_idp = cognito_idp_client
        self._endpoint_url = endpoint_url.rstrip("/")
        self._region = region
        self._fetch_jwks = fetch_jwks
        self._clock = clock
        self._key_sets: dict[str, KeySet] = {}

    def verify(self, authorization: str | None, provider_arns: Sequence[str]) -> dict[str, str]:
        """The token's claims as API Gateway passes them to the function; Unauthorized if it would refuse."""
        token = _BEARER_PREFIX.sub("", (authorization or "").strip())
        if not token:
            raise Unauthorized
        issuers = {
            f"https://cognito-idp.{self._region}.amazonaws.com/{pool_id}": pool_id
            for pool_id in (arn.rsplit("/", 1)[-1] for arn in provider_arns)
        }
        try:
            # The issuer says which pool's keys to check the signature with; nothing is trusted before that.
            unverified = jws.extract_compact(token.encode())
            payload = json.loads(unverified.payload)
            issuer = payload.get("iss") if isinstance(payload, dict) else None
            pool_id = issuers.get(issuer) if isinstance(issuer, str) else None
            if pool_id is None:
                raise Unauthorized
            kid = unverified.headers().get("kid")
            key_set = self._key_set(pool_id, kid if isinstance(kid, str) else None)
            claims = jwt.decode(token, key_set, algorithms=["RS256"]).claims
        except (JoseError, ValueError) as refused:
            raise Unauthorized from refused
        if claims.get("token_use") != "id":
            raise Unauthorized
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] <= self._clock():
            raise Unauthorized(TOKEN_EXPIRED_MESSAGE)
        audience = claims.get("aud")
        if not isinstance(audience, str) or audience not in self._client_ids(pool_id):
            raise Unauthorized
        return {name: _claim_as_text(name, value) for name, value in claims.items()}

    def _key_set(self, pool_id: str, kid: str | None) -> KeySet:
        """The pool's signing keys, fetched again when a token names a key the cached set lacks."""
        cached = self._key_sets.get(pool_id)
        if cached is None or kid not in {key.kid for key in cached.keys}:
            jwks = self._fetch_jwks(f"{self._endpoint_url}/{pool_id}/.well-known/jwks.json")
            self._key_sets[pool_id] = cached = KeySet.import_key_set(jwks)
        return cached

    def _client_ids(self, pool_id: str) -> set[str]:
        """The pool's app clients, read on every check so that a deleted client stops being accepted."""
        pages = self._cognito_idp.get_paginator("list_user_pool_clients").paginate(UserPoolId=pool_id)
        return {client["ClientId"] for page in pages for client in page["UserPoolClients"]}


def _claim_as_text(name: str, value: Any) -> str:
    """One claim as the REST API's authorizer flattens it: text, lists comma-joined, times as Java dates."""
    if name in ("exp", "iat") and isinstance(value, int | float):
        return _java_date(value)
    if isinstance(value, list):
        return ",".join(_as_text(item) for item in value)
    return _as_text(value)


def _as_text(value: Any) -> str:
    """A string as it is, anything else as its JSON text (true, 42, null)."""
    return value if isinstance(value, str) else json.dumps(value)


def _java_date(epoch_seconds: float) -> str:
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return (
        f"{_WEEKDAYS[moment.weekday()]} {_MONTHS[moment.month - 1]} {moment.day:02d} "
        f"{moment:%H:%M:%S} UTC {moment.year}"
    )


# ----- gateway responses ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _GatewayError:
    """One of API Gateway's own answers: its response type, default status and message."""

    response_type: str
    status: int
    message: str
    error_type: str  # what API Gateway puts in x-amzn-ErrorType
    validation_error: str = ""


_MISSING_AUTHENTICATION_TOKEN: Final = _GatewayError(
    "MISSING_AUTHENTICATION_TOKEN", 403, "Missing Authentication Token", "MissingAuthenticationTokenException"
)
# A function that raised or answered something other than a proxy response; no dedicated type exists.
_INTEGRATION_FAILED: Final = _GatewayError(
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


def _unauthorized(message: str) -> _GatewayError:
    return _GatewayError("UNAUTHORIZED", 401, message, "UnauthorizedException")


def _bad_request_body(validation_error: str) -> _GatewayError:
    return _GatewayError(
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
class _GatewayResponse:
    """A gateway response of the API: status (None keeps the type's own), body template and headers."""

    status: int | None
    template: str
    headers: tuple[tuple[str, str], ...]

    @classmethod
    def from_definition(cls, definition: Mapping[str, Any]) -> "_GatewayResponse":
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

    def render(self, error: _GatewayError, request_id: str) -> HttpResponse:
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
        if not _has_header(headers, "Content-Type"):
            headers.append(("Content-Type", "application/json"))
        headers += [("x-amzn-RequestId", request_id), ("x-amzn-ErrorType", error.error_type)]
        body = _VTL_REFERENCE.sub(substitute, self.template).encode()
        # A status set on DEFAULT_4XX/DEFAULT_5XX applies to every response type it stands in for.
        return HttpResponse(self.status or error.status, headers, body)


_UNCUSTOMIZED: Final = _GatewayResponse(None, _DEFAULT_TEMPLATE, ())


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


def _validation_error_string(validator: Draft4Validator, body: bytes) -> str | None:
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


# ----- routes --------------------------------------------------------------------------------------------
_ANY_METHOD: Final = "x-amazon-apigateway-any-method"
_HTTP_METHODS: Final = frozenset({"get", "put", "post", "delete", "options", "head", "patch", _ANY_METHOD})
_FUNCTION_IN_URI: Final = re.compile(r"/functions/(?P<arn>.+)/invocations$")
# The base URI the API definition is registered under, so models' "#/components/schemas/..." refs resolve.
_API_DOCUMENT: Final = "urn:carebus-local:rest-api"


@dataclass(frozen=True)
class _Operation:
    """One method of one resource: its function, the pools whose tokens it takes, the bodies it checks."""

    resource: str
    function_arn: str
    provider_arns: tuple[str, ...]
    body_validators: Mapping[str, Draft4Validator]


@dataclass(frozen=True)
class _Resource:
    """A resource's path template, compiled, with its operations by method."""

    path: str
    pattern: re.Pattern[str]
    parameter_names: tuple[str, ...]
    operations: Mapping[str, _Operation]

    def precedence(self) -> tuple[int, ...]:
        """Literal segments before {parameters} before {greedy+} ones, as API Gateway prefers them."""
        return tuple(
            2 if segment.endswith("+}") else 1 if segment.startswith("{") else 0
            for segment in self.path.split("/")
        )


@dataclass(frozen=True)
class _Request:
    """One HTTP request as the stage receives it, with the id API Gateway gives it."""

    method: str
    path: str
    query_string: str
    headers: Headers
    body: bytes
    source_ip: str
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def header(self, name: str) -> str | None:
        """The last value of a header, its name matched without regard to case."""
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return values[-1] if values else None


@dataclass(frozen=True)
class _Match:
    """The operation a request reached, its path without the stage, and its path parameters."""

    operation: _Operation
    resource_path: str
    path_parameters: dict[str, str]


def _path_pattern(resource: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    parts, names = [], []
    for segment in resource.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            greedy = segment.endswith("+}")
            names.append(segment[1 : -2 if greedy else -1])
            parts.append("(.+)" if greedy else "([^/]+)")
        else:
            parts.append(re.escape(segment))
    return re.compile("/" + "/".join(parts)), tuple(names)


def _operation(
    api: Mapping[str, Any], resource: str, definition: Mapping[str, Any], registry: Registry
) -> _Operation:
    """What API Gateway made of one OpenAPI operation; refuses what the emulation cannot reproduce."""
    integration = definition.get("x-amazon-apigateway-integration", {})
    function = _FUNCTION_IN_URI.search(integration.get("uri", ""))
    if integration.get("type") != "aws_proxy" or function is None:
        raise UnsupportedApiFeatureError(f"{resource}: only Lambda proxy integrations are emulated")
    provider_arns: list[str] = []
    for requirement in definition.get("security", api.get("security", [])):
        for scheme in requirement:
            declared = api.get("components", {}).get("securitySchemes", {}).get(scheme, {})
            authorizer = declared.get("x-amazon-apigateway-authorizer", {})
            if authorizer.get("type") != "cognito_user_pools":
                raise UnsupportedApiFeatureError(
                    f"{resource}: only Cognito user pool authorizers are emulated"
                )
            provider_arns += authorizer["providerARNs"]
    validator_name = definition.get(
        "x-amazon-apigateway-request-validator", api.get("x-amazon-apigateway-request-validator")
    )
    validator = api.get("x-amazon-apigateway-request-validators", {}).get(validator_name, {})
    if validator.get("validateRequestParameters"):
        raise UnsupportedApiFeatureError(f"{resource}: request parameter validation is not emulated")
    body_validators = {}
    if validator.get("validateRequestBody"):
        for media_type, content in definition.get("requestBody", {}).get("content", {}).items():
            schema = content["schema"]
            if "$ref" in schema:
                schema = {"$ref": _API_DOCUMENT + schema["$ref"]}
            body_validators[media_type.lower()] = Draft4Validator(schema, registry=registry)
    return _Operation(resource, function.group("arn"), tuple(provider_arns), body_validators)


class LocalRestApi:
    """One deployed stage of a REST API whose methods are Lambda proxy integrations."""

    def __init__(
        self,
        body: dict[str, Any],
        stage: str,
        api_id: str,
        region: str,
        account_id: str,
        invoke: Invoke,
        verifier: CognitoVerifier | None,
    ) -> None:
        self.stage = stage
        self.api_id = api_id
        self.region = region
        self.account_id = account_id
        self._invoke = invoke
        self._verifier = verifier
        self._gateway_responses = {
            response_type: _GatewayResponse.from_definition(definition)
            for response_type, definition in body.get("x-amazon-apigateway-gateway-responses", {}).items()
        }
        registry = Registry().with_resource(_API_DOCUMENT, Resource.from_contents(body, DRAFT4))
        resources = []
        for path, item in body.get("paths", {}).items():
            pattern, parameter_names = _path_pattern(path)
            operations = {
                "ANY" if method == _ANY_METHOD else method.upper(): _operation(
                    body, path, definition, registry
                )
                for method, definition in item.items()
                if method in _HTTP_METHODS
            }
            resources.append(_Resource(path, pattern, parameter_names, operations))
        self._resources = sorted(resources, key=_Resource.precedence)
        if verifier is None and any(
            operation.provider_arns for resource in resources for operation in resource.operations.values()
        ):
            raise ValueError("the API has Cognito authorizers: give LocalRestApi a CognitoVerifier")

    def handle(
        self, method: str, path: str, query_string: str, headers: Headers, body: bytes, source_ip: str
    ) -> HttpResponse:
        """Answer one request as the deployed stage would: route, authorize, validate, invoke."""
        request = _Request(method, path, query_string, headers, body, source_ip)
        match = self._match(request)
        if match is None:
            return self._gateway_response(_MISSING_AUTHENTICATION_TOKEN, request)
        claims = None
        if match.operation.provider_arns:
            assert self._verifier is not None  # the constructor refuses an authorized API without one
            try:
                claims = self._verifier.verify(request.header("Authorization"), match.operation.provider_arns)
            except Unauthorized as refused:
                return self._gateway_response(_unauthorized(refused.message), request)
        refusal = self._body_refusal(match.operation, request)
        if refusal is not None:
            return self._gateway_response(_bad_request_body(refusal), request)
        try:
            result = self._invoke(match.operation.function_arn, self._proxy_event(request, match, claims))
        except Exception:
            logger.exception("%s %s: the function %s failed", method, path, match.operation.function_arn)
            return self._gateway_response(_INTEGRATION_FAILED, request)
        response = _http_response_of(result, request.request_id)
        if response is None:
            logger.error("%s %s: malformed Lambda proxy response %r", method, path, result)
            return self._gateway_response(_INTEGRATION_FAILED, request)
        return response

    def _match(self, request: _Request) -> _Match | None:
        """The operation the request reaches; None outside the stage, or for an unknown resource or method."""
        stage_prefix = f"/{self.stage}"
        if request.path == stage_prefix:
            resource_path = "/"
        elif request.path.startswith(stage_prefix + "/"):
            resource_path = request.path.removeprefix(stage_prefix)
        else:
            return None
        # API Gateway picks the resource first; a method that resource lacks is not looked for elsewhere.
        for resource in self._resources:
            found = resource.pattern.fullmatch(resource_path)
            if found is None:
                continue
            operation = resource.operations.get(request.method) or resource.operations.get("ANY")
            if operation is None:
                return None
            # Path parameters stay percent-encoded, as REST APIs pass them.
            parameters = dict(zip(resource.parameter_names, found.groups(), strict=True))
            return _Match(operation, resource_path, parameters)
        return None

    @staticmethod
    def _body_refusal(operation: _Operation, request: _Request) -> str | None:
        """The validation error string when the operation's model for this content type refuses the body."""
        # API Gateway picks the model by media type, and takes a request without one as application/json.
        content_type = request.header("Content-Type") or "application/json"
        validator = operation.body_validators.get(content_type.split(";", 1)[0].strip().lower())
        return None if validator is None else _validation_error_string(validator, request.body)

    def _proxy_event(self, request: _Request, match: _Match, claims: dict[str, str] | None) -> dict[str, Any]:
        """The Lambda proxy event, shaped like events/intake/submit_encounter.json."""
        multi_value_headers = _grouped(request.headers)
        multi_value_query = _grouped(parse_qsl(request.query_string, keep_blank_values=True))
        try:
            body, is_base64 = (request.body.decode("utf-8") if request.body else None), False
        except UnicodeDecodeError:
            body, is_base64 = base64.b64encode(request.body).decode("ascii"), True
        now = datetime.now(UTC)
        resource = match.operation.resource
        context: dict[str, Any] = {
            "accountId": self.account_id,
            "resourceId": hashlib.sha256(f"{self.api_id}{resource}".encode()).hexdigest()[:6],
            "stage": self.stage,
            "requestId": request.request_id,
            "requestTime": f"{now.day:02d}/{_MONTHS[now.month - 1]}/{now.year}:{now:%H:%M:%S} +0000",
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "identity": {"sourceIp": request.source_ip, "userAgent": request.header("User-Agent")},
            "path": request.path,
            "resourcePath": resource,
            "httpMethod": request.method,
            "apiId": self.api_id,
            "protocol": "HTTP/1.1",
        }
        if claims is not None:
            context["authorizer"] = {"claims": claims}
        return {
            "resource": resource,
            "path": match.resource_path,
            "httpMethod": request.method,
            "headers": _last_values(multi_value_headers),
            "multiValueHeaders": multi_value_headers or None,
            "queryStringParameters": _last_values(multi_value_query),
            "multiValueQueryStringParameters": multi_value_query or None,
            "pathParameters": match.path_parameters or None,
            "stageVariables": None,
            "requestContext": context,
            "body": body,
            "isBase64Encoded": is_base64,
        }

    def _gateway_response(self, error: _GatewayError, request: _Request) -> HttpResponse:
        """API Gateway's own answer, from the API's response of that type, else its DEFAULT_4XX/5XX."""
        fallback = self._gateway_responses.get("DEFAULT_4XX" if error.status < 500 else "DEFAULT_5XX")
        configured = self._gateway_responses.get(error.response_type) or fallback or _UNCUSTOMIZED
        return configured.render(error, request.request_id)


# ----- helpers -------------------------------------------------------------------------------------------
def _grouped(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Values by name in arrival order; names that differ only in case join the first spelling."""
    grouped: dict[str, list[str]] = {}
    spelling: dict[str, str] = {}
    for name, value in pairs:
        grouped.setdefault(spelling.setdefault(name.lower(), name), []).append(value)
    return grouped


def _last_values(grouped: dict[str, list[str]]) -> dict[str, str] | None:
    return {name: values[-1] for name, values in grouped.items()} or None


def _has_header(headers: Sequence[tuple[str, str]], name: str) -> bool:
    return any(key.lower() == name.lower() for key, _ in headers)


_PROXY_RESPONSE_KEYS: Final = frozenset(
    {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
)


def _http_response_of(result: Any, request_id: str) -> HttpResponse | None:
    """The HTTP answer a Lambda proxy response stands for; None when API Gateway would find it malformed."""
    if not isinstance(result, dict) or not set(result) <= _PROXY_RESPONSE_KEYS:
        return None
    status = result.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    single = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    body = result.get("body")
    is_base64 = result.get("isBase64Encoded", False)
    well_formed = (
        isinstance(status, int)
        and not isinstance(status, bool)
        and 100 <= status <= 599
        and isinstance(single, dict)
        and isinstance(multi, dict)
        and all(isinstance(values, list) for values in multi.values())
        and isinstance(body, str | None)
        and isinstance(is_base64, bool)
    )
    if not well_formed:
        return None
    try:
        raw_body = base64.b64decode(body or "", validate=True) if is_base64 else (body or "").encode()
    except ValueError:
        return None
    # Where both name a header, API Gateway keeps only the multiValueHeaders values.
    multi_names = {name.lower() for name in multi}
    headers = [(name, _as_text(value)) for name, value in single.items() if name.lower() not in multi_names]
    headers += [(name, _as_text(value)) for name, values in multi.items() for value in values]
    if not _has_header(headers, "Content-Type"):
        headers.append(("Content-Type", "application/json"))
    headers.append(("x-amzn-RequestId", request_id))
    return HttpResponse(status, headers, raw_body)
