"""API Gateway offline: a REST API's routes, Cognito authorizer, body models, gateway responses, proxy events.

LocalRestApi answers HTTP requests from the OpenAPI body that the SAM transform produced, in the order
API Gateway works: find the resource and method, run the authorizer, check the API key against its usage
plan (usage_plans.py), validate the body, call the function.
"""

import base64
import hashlib
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl

from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from carebus_local.cognito import MONTHS, CognitoVerifier, Unauthorized, as_text
from carebus_local.gateway_responses import (
    INTEGRATION_FAILED,
    INTERNAL_ERROR,
    MISSING_AUTHENTICATION_TOKEN,
    UNCUSTOMIZED,
    GatewayError,
    GatewayResponse,
    bad_request_body,
    unauthorized,
    validation_error_string,
)
from carebus_local.http import Headers, HttpResponse, UnsupportedApiFeatureError, has_header, last_header
from carebus_local.usage_plans import ApiKeyUse, MeteringRefusal, UsagePlanMeter

logger = logging.getLogger(__name__)

Invoke = Callable[[str, dict[str, Any]], Any]


_ANY_METHOD: Final = "x-amazon-apigateway-any-method"
_HTTP_METHODS: Final = frozenset({"get", "put", "post", "delete", "options", "head", "patch", _ANY_METHOD})
# What ANY stands for; API Gateway has no method for anything else (TRACE, CONNECT, PROPFIND...).
_ANY_COVERS: Final = frozenset(method.upper() for method in _HTTP_METHODS - {_ANY_METHOD})
_FUNCTION_IN_URI: Final = re.compile(r"/functions/(?P<arn>.+)/invocations$")
# The base URI the API definition is registered under, so models' "#/components/schemas/..." refs resolve.
_API_DOCUMENT: Final = "urn:carebus-local:rest-api"
# The header API Gateway reads a key from (the API's key source HEADER, its default).
API_KEY_HEADER: Final = "x-api-key"


@dataclass(frozen=True)
class _Operation:
    """One method of one resource: its function, the pools whose tokens it takes (and the OAuth scopes it
    wants of them), whether it needs an API key, the bodies it checks."""

    resource: str
    function_arn: str
    provider_arns: tuple[str, ...]
    scopes: tuple[str, ...]
    api_key_required: bool
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
        return last_header(self.headers, name)


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
    scopes: list[str] = []
    api_key_required = False
    # Unlike OpenAPI, where requirements are alternatives, API Gateway applies every one a method lists:
    # SAM writes an authorizer and the API key as two requirements, and a call needs both.
    for requirement in definition.get("security", api.get("security", [])):
        for scheme, scheme_scopes in requirement.items():
            declared = api.get("components", {}).get("securitySchemes", {}).get(scheme, {})
            authorizer = declared.get("x-amazon-apigateway-authorizer")
            if authorizer is None and declared.get("type") == "apiKey" and declared.get("in") == "header":
                api_key_required = True
            elif authorizer is not None and authorizer.get("type") == "cognito_user_pools":
                provider_arns += authorizer["providerARNs"]
                scopes += scheme_scopes
            else:
                raise UnsupportedApiFeatureError(
                    f"{resource}: only Cognito user pool authorizers and API keys are emulated"
                )
    if api_key_required and api.get("x-amazon-apigateway-api-key-source", "HEADER") != "HEADER":
        raise UnsupportedApiFeatureError(
            f"{resource}: only API keys in the {API_KEY_HEADER} header are emulated"
        )
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
    return _Operation(
        resource,
        function.group("arn"),
        tuple(provider_arns),
        tuple(scopes),
        api_key_required,
        body_validators,
    )


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
        usage_plans: UsagePlanMeter | None = None,
    ) -> None:
        self.stage = stage
        self.api_id = api_id
        self.region = region
        self.account_id = account_id
        self._invoke = invoke
        self._verifier = verifier
        self._usage_plans = usage_plans
        self._binary_media_types = tuple(
            _media_type_pattern(media_type)
            for media_type in body.get("x-amazon-apigateway-binary-media-types", [])
        )
        self._gateway_responses = {
            response_type: GatewayResponse.from_definition(definition)
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
        operations = [operation for resource in resources for operation in resource.operations.values()]
        if verifier is None and any(operation.provider_arns for operation in operations):
            raise ValueError("the API has Cognito authorizers: give LocalRestApi a CognitoVerifier")
        if usage_plans is None and any(operation.api_key_required for operation in operations):
            raise ValueError("the API requires API keys: give LocalRestApi a UsagePlanMeter")

    def handle(
        self, method: str, path: str, query_string: str, headers: Headers, body: bytes, source_ip: str
    ) -> HttpResponse:
        """Answer one request as the deployed stage would: route, authorize, validate, invoke. Always an
        answer: a failure of the emulation itself is the API's DEFAULT_5XX response, not an exception."""
        request = _Request(method, path, query_string, headers, body, source_ip)
        try:
            return self._answer(request)
        except Exception:
            logger.exception("%s %s: the emulated gateway failed", method, path)
            return self._gateway_response(INTERNAL_ERROR, request.request_id)

    def refusal(self, error: GatewayError) -> HttpResponse:
        """The API's gateway response for a request answered without handle(): the HTTP server could not
        read it as framed, or failed itself."""
        return self._gateway_response(error, str(uuid.uuid4()))

    def _answer(self, request: _Request) -> HttpResponse:
        method, path = request.method, request.path
        match = self._match(request)
        if match is None:
            return self._gateway_response(MISSING_AUTHENTICATION_TOKEN, request.request_id)
        operation = match.operation
        claims = None
        if operation.provider_arns:
            assert self._verifier is not None  # the constructor refuses an authorized API without one
            try:
                claims = self._verifier.verify(
                    request.header("Authorization"), operation.provider_arns, operation.scopes
                )
            except Unauthorized as refused:
                return self._gateway_response(unauthorized(refused.message), request.request_id)
        api_key = None
        if operation.api_key_required:
            assert self._usage_plans is not None  # the constructor refuses a key-required API without one
            try:
                api_key = self._usage_plans.admit(
                    self.api_id, self.stage, operation.resource, method, request.header(API_KEY_HEADER)
                )
            except MeteringRefusal as refused:
                return self._gateway_response(refused.error, request.request_id)
        refusal = self._body_refusal(operation, request)
        if refusal is not None:
            return self._gateway_response(bad_request_body(refusal), request.request_id)
        try:
            result = self._invoke(operation.function_arn, self._proxy_event(request, match, claims, api_key))
        except Exception:
            logger.exception("%s %s: the function %s failed", method, path, operation.function_arn)
            return self._gateway_response(INTEGRATION_FAILED, request.request_id)
        response = _http_response_of(result, request.request_id)
        if response is None:
            logger.error("%s %s: malformed Lambda proxy response %r", method, path, result)
            return self._gateway_response(INTEGRATION_FAILED, request.request_id)
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
            operation = resource.operations.get(request.method)
            if operation is None and request.method in _ANY_COVERS:
                operation = resource.operations.get("ANY")
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
        return None if validator is None else validation_error_string(validator, request.body)

    def _proxy_event(
        self, request: _Request, match: _Match, claims: dict[str, str] | None, api_key: ApiKeyUse | None
    ) -> dict[str, Any]:
        """The Lambda proxy event, shaped like events/intake/submit_encounter.json."""
        multi_value_headers = _grouped(request.headers)
        multi_value_query = _grouped(parse_qsl(request.query_string, keep_blank_values=True))
        body, is_base64 = self._event_body(request)
        now = datetime.now(UTC)
        resource = match.operation.resource
        context: dict[str, Any] = {
            "accountId": self.account_id,
            "resourceId": hashlib.sha256(f"{self.api_id}{resource}".encode()).hexdigest()[:6],
            "stage": self.stage,
            "requestId": request.request_id,
            "requestTime": f"{now.day:02d}/{MONTHS[now.month - 1]}/{now.year}:{now:%H:%M:%S} +0000",
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
        if api_key is not None:
            context["identity"] |= {"apiKey": api_key.value, "apiKeyId": api_key.key_id}
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

    def _event_body(self, request: _Request) -> tuple[str | None, bool]:
        """The event's body and isBase64Encoded: base64 only for a Content-Type the API's binaryMediaTypes
        match (the template declares none). Any other body is text, as API Gateway passes it: UTF-8, what
        is not UTF-8 replaced by U+FFFD. Not surrogateescape: lone surrogates are no UTF-8, so no Lambda
        event could carry them. The function (carebus.adapters.api.request_body) still refuses what it
        cannot read: a binary body is seldom JSON once replaced, so its parser answers "not JSON"; and
        application/json bodies meet the strict UTF-8 parse of the model validation before any function."""
        if not request.body:
            return None, False
        media_type = (request.header("Content-Type") or "").split(";", 1)[0].strip().lower()
        if any(pattern.fullmatch(media_type) for pattern in self._binary_media_types):
            return base64.b64encode(request.body).decode("ascii"), True
        return request.body.decode("utf-8", errors="replace"), False

    def _gateway_response(self, error: GatewayError, request_id: str) -> HttpResponse:
        """API Gateway's own answer, from the API's response of that type, else its DEFAULT_4XX/5XX."""
        fallback = self._gateway_responses.get("DEFAULT_4XX" if error.status < 500 else "DEFAULT_5XX")
        configured = self._gateway_responses.get(error.response_type) or fallback or UNCUSTOMIZED
        return configured.render(error, request_id)


# ----- helpers -------------------------------------------------------------------------------------------
def _media_type_pattern(media_type: str) -> re.Pattern[str]:
    """A binaryMediaTypes entry as a pattern: "*" stands for any name ("image/*", "*/*")."""
    return re.compile(".*".join(re.escape(part) for part in media_type.strip().lower().split("*")))


def _grouped(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Values by name in arrival order; names that differ only in case join the first spelling."""
    grouped: dict[str, list[str]] = {}
    spelling: dict[str, str] = {}
    for name, value in pairs:
        grouped.setdefault(spelling.setdefault(name.lower(), name), []).append(value)
    return grouped


def _last_values(grouped: dict[str, list[str]]) -> dict[str, str] | None:
    return {name: values[-1] for name, values in grouped.items()} or None


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
    headers = [(name, as_text(value)) for name, value in single.items() if name.lower() not in multi_names]
    headers += [(name, as_text(value)) for name, values in multi.items() for value in values]
    if not has_header(headers, "Content-Type"):
        headers.append(("Content-Type", "application/json"))
    headers.append(("x-amzn-RequestId", request_id))
    return HttpResponse(status, headers, raw_body)
