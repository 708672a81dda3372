"""The offline API Gateway: routes, the Cognito authorizer, body models, gateway responses, proxy events.

Everything runs against a real moto server on a free port (no in-process mock_aws), as the runtime does:
the template is provisioned there, users sign in to its user pool, and the JWKS is fetched over HTTP.
"""

import base64
import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.client import BaseClient
from joserfc import jws, jwt
from joserfc.jwk import RSAKey
from jsonschema import Draft4Validator
from pool_users import TEST_USER_PASSWORD, sign_in

from carebus.approvals import DecisionRequest
from carebus.models import EncounterRequest
from carebus_local.apigateway import LocalRestApi
from carebus_local.cognito import TOKEN_EXPIRED_MESSAGE, CognitoVerifier, Unauthorized, fetch_jwks_over_http
from carebus_local.gateway_responses import GatewayResponse, validation_error_string
from carebus_local.http import HttpResponse, UnsupportedApiFeatureError
from carebus_local.stack import ACCOUNT_ID, OfflineStack
from carebus_testing import load_event
from carebus_tooling.contract import gateway_model

REGION = "us-east-1"
SAMPLE_EVENT = load_event("intake/submit_encounter.json")
CANNED_ANSWER = {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": '{"ok": true}'}


# ----- a moto server with the template on it --------------------------------------------------------------
@pytest.fixture(scope="module")
def physician_token(physician: dict[str, str]) -> str:
    return physician["IdToken"]


@pytest.fixture(scope="module")
def verifier(cognito: BaseClient, moto_url: str) -> CognitoVerifier:
    return CognitoVerifier(cognito, moto_url, REGION)


# ----- the API with fake functions behind it ---------------------------------------------------------------
@dataclass
class FakeFunctions:
    """Stands in for Lambda: records every invocation and answers with what `answer` makes of the event."""

    answer: Callable[[dict[str, Any]], Any] = lambda event: CANNED_ANSWER
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, function_arn: str, event: dict[str, Any]) -> Any:
        self.calls.append((function_arn, event))
        return self.answer(event)

    @property
    def last_event(self) -> dict[str, Any]:
        return self.calls[-1][1]


@pytest.fixture
def functions() -> FakeFunctions:
    return FakeFunctions()


@pytest.fixture
def api_body(offline_stack: OfflineStack) -> dict[str, Any]:
    return copy.deepcopy(offline_stack.rest_apis["CarebusApi"]["body"])


def local_api(
    offline_stack: OfflineStack, body: dict[str, Any], invoke: FakeFunctions, verifier: CognitoVerifier | None
) -> LocalRestApi:
    rest_api = offline_stack.rest_apis["CarebusApi"]
    return LocalRestApi(body, rest_api["stages"][0], rest_api["id"], REGION, ACCOUNT_ID, invoke, verifier)


@pytest.fixture
def api(
    offline_stack: OfflineStack, api_body: dict[str, Any], functions: FakeFunctions, verifier: CognitoVerifier
) -> LocalRestApi:
    return local_api(offline_stack, api_body, functions, verifier)


def call(
    api: LocalRestApi,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    query: str = "",
) -> HttpResponse:
    sent = [("Host", "localhost:3000"), ("User-Agent", "carebus-tests"), *(headers or [])]
    if token is not None:
        sent.append(("Authorization", token))
    return api.handle(method, path, query, sent, body, "127.0.0.1")


def header_values(response: HttpResponse, name: str) -> list[str]:
    return [value for key, value in response.headers if key.lower() == name.lower()]


def header(response: HttpResponse, name: str) -> str:
    (value,) = header_values(response, name)
    return value


def problem(response: HttpResponse) -> dict[str, Any]:
    assert header(response, "Content-Type") == "application/problem+json"
    return json.loads(response.body)


JSON = [("Content-Type", "application/json")]


def valid_encounter() -> dict[str, Any]:
    return json.loads(SAMPLE_EVENT["body"])


# ----- routing --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "body", "resource", "function", "path_parameters"),
    [
        ("POST", "/v1/encounters", valid_encounter(), "/encounters", "IntakeFunction", None),
        (
            "GET",
            "/v1/encounters/e-1",
            None,
            "/encounters/{encounterId}",
            "EncounterQueryFunction",
            {"encounterId": "e-1"},
        ),
        ("GET", "/v1/approvals", None, "/approvals", "ApprovalsFunction", None),
        (
            "GET",
            "/v1/approvals/a-7",
            None,
            "/approvals/{approvalId}",
            "ApprovalsFunction",
            {"approvalId": "a-7"},
        ),
        (
            "POST",
            "/v1/approvals/a-7/decision",
            {"decision": "APPROVE"},
            "/approvals/{approvalId}/decision",
            "ApprovalsFunction",
            {"approvalId": "a-7"},
        ),
    ],
)
def test_each_route_reaches_its_function_with_its_path_parameters(
    api, functions, offline_stack, physician_token, method, path, body, resource, function, path_parameters
):
    sent = json.dumps(body).encode() if body is not None else b""

    response = call(api, method, path, token=physician_token, body=sent, headers=JSON)

    assert response.status == 200
    assert json.loads(response.body) == {"ok": True}
    ((function_arn, event),) = functions.calls
    assert function_arn == offline_stack.functions[function].arn
    assert event["resource"] == event["requestContext"]["resourcePath"] == resource
    assert event["path"] == path.removeprefix("/v1")
    assert event["requestContext"]["path"] == path
    assert event["httpMethod"] == event["requestContext"]["httpMethod"] == method
    assert event["pathParameters"] == path_parameters


def test_path_parameters_stay_percent_encoded_as_rest_apis_pass_them(api, functions, physician_token):
    call(api, "GET", "/v1/encounters/a%2Fb%20c", token=physician_token)

    assert functions.last_event["pathParameters"] == {"encounterId": "a%2Fb%20c"}
    assert functions.last_event["path"] == "/encounters/a%2Fb%20c"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/approvals"),  # no stage
        ("GET", "/v2/approvals"),  # another stage
        ("GET", "/v1approvals"),
        ("GET", "/v1"),  # the root resource has no methods
        ("GET", "/v1/patients"),  # no such resource
        ("GET", "/v1/approvals/a-7/decision/extra"),
        ("DELETE", "/v1/approvals/a-7"),  # the resource lacks the method
        ("GET", "/v1/encounters"),
    ],
)
def test_anything_but_a_declared_method_is_missing_authentication_token(
    api, functions, physician_token, method, path
):
    response = call(api, method, path, token=physician_token)

    assert response.status == 403
    assert problem(response) == {
        "type": "https://carebus.dev/problems/client-error",
        "title": "The request was refused",
        "detail": "Missing Authentication Token",
    }
    assert header(response, "x-amzn-ErrorType") == "MissingAuthenticationTokenException"
    assert functions.calls == []


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "FOO", "get"])
def test_a_method_api_gateway_has_no_route_for_is_missing_authentication_token(
    api, functions, physician_token, method
):
    response = call(api, method, "/v1/approvals", token=physician_token)

    assert response.status == 403
    assert problem(response)["detail"] == "Missing Authentication Token"
    assert functions.calls == []


def test_any_stands_for_the_seven_methods_api_gateway_has_and_no_other(
    offline_stack, api_body, functions, verifier, physician_token
):
    item = api_body["paths"]["/approvals"]
    item["x-amazon-apigateway-any-method"] = copy.deepcopy(item["get"])
    api = local_api(offline_stack, api_body, functions, verifier)

    reached = call(api, "DELETE", "/v1/approvals", token=physician_token)
    traced = call(api, "TRACE", "/v1/approvals", token=physician_token)

    assert reached.status == 200
    assert traced.status == 403
    assert [event["httpMethod"] for _, event in functions.calls] == ["DELETE"]


def test_a_literal_resource_wins_over_a_path_parameter(
    offline_stack, api_body, functions, verifier, physician_token
):
    approval = api_body["paths"]["/approvals/{approvalId}"]["get"]
    api_body["paths"]["/approvals/pending"] = {"get": copy.deepcopy(approval) | {"parameters": []}}
    api = local_api(offline_stack, api_body, functions, verifier)

    for path in ("/v1/approvals/pending", "/v1/approvals/a-7"):
        call(api, "GET", path, token=physician_token)

    assert [event["resource"] for _, event in functions.calls] == [
        "/approvals/pending",
        "/approvals/{approvalId}",
    ]


# ----- the Cognito authorizer -----------------------------------------------------------------------------
def test_no_token_is_the_templates_unauthorized_problem_and_no_function_runs(api, functions):
    response = call(api, "POST", "/v1/encounters", body=json.dumps(valid_encounter()).encode(), headers=JSON)

    assert response.status == 401
    assert problem(response) == {
        "type": "https://carebus.dev/problems/unauthorized",
        "title": "Sign in first",
        "status": 401,
        "detail": "Unauthorized",
    }
    assert header(response, "WWW-Authenticate") == "Bearer"
    assert functions.calls == []


def forged(token: str) -> str:
    """The same claims and key id, signed with a key the pool never had."""
    claims = json.loads(jws.extract_compact(token.encode()).payload)
    impostor = RSAKey.generate_key(2048, parameters={"kid": "dummy"})
    return jwt.encode({"alg": "RS256", "kid": "dummy"}, claims, impostor)


@pytest.fixture(scope="module")
def refused_tokens(
    cognito: BaseClient, offline_stack: OfflineStack, physician: dict[str, str]
) -> dict[str, str]:
    """Tokens API Gateway's authorizer refuses, by why."""
    other_pool = cognito.create_user_pool(PoolName="another-pool")["UserPool"]["Id"]
    other_client = cognito.create_user_pool_client(
        UserPoolId=other_pool, ClientName="other", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    pool = offline_stack.ref("UserPool")
    retired_client = cognito.create_user_pool_client(
        UserPoolId=pool, ClientName="retired", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    retired_token = cognito.initiate_auth(
        ClientId=retired_client,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "physician@example.org", "PASSWORD": TEST_USER_PASSWORD},
    )["AuthenticationResult"]["IdToken"]
    cognito.delete_user_pool_client(UserPoolId=pool, ClientId=retired_client)
    return {
        "forged": forged(physician["IdToken"]),
        "another pool's": sign_in(cognito, other_pool, other_client, "someone@example.org")["IdToken"],
        "access token": physician["AccessToken"],
        "refresh token": physician["RefreshToken"],
        "deleted client's": retired_token,
        "not a JWT": "let-me-in",
        "Bearer only": "Bearer ",
    }


@pytest.mark.parametrize(
    "why",
    [
        "forged",
        "another pool's",
        "access token",
        "refresh token",
        "deleted client's",
        "not a JWT",
        "Bearer only",
    ],
)
def test_tokens_the_authorizer_refuses_are_401_and_no_function_runs(api, functions, refused_tokens, why):
    response = call(api, "GET", "/v1/approvals", token=refused_tokens[why])

    assert response.status == 401
    assert problem(response)["detail"] == "Unauthorized"
    assert header(response, "x-amzn-ErrorType") == "UnauthorizedException"
    assert functions.calls == []


def test_an_expired_id_token_is_401_the_incoming_token_has_expired(
    offline_stack, api_body, functions, cognito, moto_url, physician_token
):
    two_hours_later = CognitoVerifier(cognito, moto_url, REGION, clock=lambda: time.time() + 2 * 3600)
    api = local_api(offline_stack, api_body, functions, two_hours_later)

    response = call(api, "GET", "/v1/approvals", token=physician_token)

    assert response.status == 401
    assert problem(response)["detail"] == TOKEN_EXPIRED_MESSAGE
    assert functions.calls == []


@pytest.mark.parametrize("prefix", ["", "Bearer ", "bearer "])
def test_a_valid_id_token_passes_its_claims_as_api_gateway_does(
    api, functions, offline_stack, physician_token, prefix
):
    response = call(api, "GET", "/v1/approvals", token=prefix + physician_token)

    assert response.status == 200
    claims = functions.last_event["requestContext"]["authorizer"]["claims"]
    pool = offline_stack.ref("UserPool")
    assert claims["cognito:groups"] == "physicians"
    assert claims["email"] == "physician@example.org"
    assert claims["token_use"] == "id"
    assert claims["aud"] == offline_stack.ref("UserPoolClient")
    assert claims["iss"] == f"https://cognito-idp.{REGION}.amazonaws.com/{pool}"
    assert claims["cognito:username"] == claims["sub"]
    assert all(isinstance(value, str) for value in claims.values())
    # The REST authorizer writes exp and iat as Java dates, e.g. "Tue Sep 24 19:43:07 UTC 2019".
    assert time.strptime(claims["exp"], "%a %b %d %H:%M:%S UTC %Y")


def test_several_groups_arrive_comma_joined(api, functions, cognito, offline_stack):
    both = sign_in(
        cognito,
        offline_stack.ref("UserPool"),
        offline_stack.ref("UserPoolClient"),
        "both@example.org",
        "physicians",
        "pharmacists",
    )

    call(api, "GET", "/v1/approvals", token=both["IdToken"])

    groups = functions.last_event["requestContext"]["authorizer"]["claims"]["cognito:groups"]
    assert sorted(groups.split(",")) == ["pharmacists", "physicians"]


def test_the_pool_keys_are_fetched_once_and_again_for_an_unknown_key_id(
    cognito, offline_stack, moto_url, physician_token
):
    fetched: list[str] = []

    def counting_fetch(url: str) -> dict[str, Any]:
        fetched.append(url)
        return fetch_jwks_over_http(url)

    verifier = CognitoVerifier(cognito, moto_url, REGION, fetch_jwks=counting_fetch)
    pool_arn = offline_stack.attribute("UserPool", "Arn")
    verifier.verify(physician_token, [pool_arn])
    verifier.verify(physician_token, [pool_arn])
    assert fetched == [f"{moto_url}/{offline_stack.ref('UserPool')}/.well-known/jwks.json"]

    claims = json.loads(jws.extract_compact(physician_token.encode()).payload)
    rotated = RSAKey.generate_key(2048, parameters={"kid": "rotated"})
    with pytest.raises(Unauthorized):
        verifier.verify(jwt.encode({"alg": "RS256", "kid": "rotated"}, claims, rotated), [pool_arn])
    assert len(fetched) == 2


# ----- request validation ---------------------------------------------------------------------------------
GATEWAY_MODEL_PROBLEM = {
    "type": "https://carebus.dev/problems/validation-error",
    "title": "The request is invalid",
    "status": 400,
    "detail": "The body does not match the request schema (docs/openapi.yaml)",
    "errors": [
        {
            "field": "body",
            "message": "Does not match the request schema; API Gateway's model check names no field",
            "code": "gateway_model",
        }
    ],
}
ENCOUNTER_MODEL = Draft4Validator(gateway_model(EncounterRequest))
DECISION_MODEL = Draft4Validator(gateway_model(DecisionRequest))


def test_a_body_the_model_refuses_is_400_naming_the_body_and_echoing_nothing(api, functions, physician_token):
    encounter = valid_encounter()
    del encounter["practitionerNpi"]
    encounter["patient"]["name"] = "Zelda \u202eQuixote" * 20

    response = call(
        api,
        "POST",
        "/v1/encounters",
        token=physician_token,
        body=json.dumps(encounter).encode(),
        headers=JSON,
    )

    assert response.status == 400
    assert problem(response) == GATEWAY_MODEL_PROBLEM
    assert b"Zelda" not in response.body
    assert header(response, "x-amzn-ErrorType") == "BadRequestException"
    assert functions.calls == []


def test_the_model_checks_validation_error_string_lists_every_violation():
    encounter = valid_encounter() | {"encounterType": "SPA", "diagnoses": [], "surprise": 1}

    detail = validation_error_string(ENCOUNTER_MODEL, json.dumps(encounter).encode())

    assert detail is not None
    assert detail.startswith("[")
    assert detail.endswith("]")
    assert 'object instance has properties which are not allowed by the schema: ["surprise"]' in detail
    assert 'instance value ("SPA") not found in enum' in detail
    assert "array is too short: must have at least 1 elements but instance has 0 elements" in detail
    assert detail.count(", ") >= 2


@pytest.mark.parametrize(
    ("body", "violation"),
    [
        (b"{not json", "[Invalid JSON: "),
        (b"", 'object has missing required properties (["decision"])'),
        (b'{"decision": "MAYBE"}', 'instance value ("MAYBE") not found in enum'),
        (b'{"decision": "APPROVE", "reason": ""}', "is not valid under any of the given schemas"),
    ],
)
def test_decisions_are_checked_against_their_model(api, functions, physician_token, body, violation):
    response = call(api, "POST", "/v1/approvals/a-7/decision", token=physician_token, body=body, headers=JSON)

    assert response.status == 400
    assert problem(response) == GATEWAY_MODEL_PROBLEM
    assert violation in (validation_error_string(DECISION_MODEL, body) or "")
    assert functions.calls == []


def nested(depth: int, innermost: str = "1") -> str:
    """JSON arrays and objects alternating, depth levels deep."""
    return (
        "".join('{"a":' if level % 2 else "[" for level in range(depth))
        + innermost
        + "".join("}" if level % 2 else "]" for level in reversed(range(depth)))
    )


TOO_DEEP = "[Invalid JSON: the document is nested deeper than 1000 levels]"
TOO_DEEP_BODIES = {
    "arrays": "[" * 10000 + "]" * 10000,  # beyond what Python's parser can recurse into
    "objects": '{"a":' * 10000 + "1" + "}" * 10000,
    "alternating": nested(100_000),
    "just too deep": nested(1001),  # parsed, but deeper than API Gateway's parser takes
    "inside a property": '{"decision": ' + "[" * 1000 + "]" * 1000 + "}",
}


@pytest.mark.parametrize("why", TOO_DEEP_BODIES)
@pytest.mark.parametrize("path", ["/v1/encounters", "/v1/approvals/a-7/decision"])
def test_a_body_nested_too_deeply_is_400_bad_request_body(api, functions, physician_token, why, path):
    body = TOO_DEEP_BODIES[why].encode()

    response = call(api, "POST", path, token=physician_token, body=body, headers=JSON)

    assert response.status == 400
    assert problem(response)["type"] == "https://carebus.dev/problems/validation-error"
    assert header(response, "x-amzn-ErrorType") == "BadRequestException"
    assert functions.calls == []


DECISION_LIKE = Draft4Validator({"type": "object", "properties": {"decision": {"type": "string"}}})


@pytest.mark.parametrize("why", TOO_DEEP_BODIES)
def test_the_validation_error_of_a_body_nested_too_deeply_says_so(why):
    assert validation_error_string(DECISION_LIKE, TOO_DEEP_BODIES[why].encode()) == TOO_DEEP


def test_a_body_nested_as_deep_as_allowed_is_checked_against_the_model():
    body = '{"decision": ' + "[" * 999 + "]" * 999 + "}"

    assert validation_error_string(DECISION_LIKE, body.encode()) == (
        '[instance type (array) does not match any allowed primitive type (allowed: ["string"])]'
    )


@pytest.mark.parametrize(
    "template", ['{"detail":"$util.escapeJavaScript($context.error.message)"}', "#set($x = 1)"]
)
def test_a_gateway_response_template_is_not_vtl(template):
    with pytest.raises(UnsupportedApiFeatureError, match="not VTL"):
        GatewayResponse.from_definition({"responseTemplates": {"application/json": template}})


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", None])
def test_the_json_model_applies_to_json_and_to_bodies_without_a_content_type(
    api, functions, physician_token, content_type
):
    headers = [("Content-Type", content_type)] if content_type else []

    response = call(
        api, "POST", "/v1/approvals/a-7/decision", token=physician_token, body=b"[]", headers=headers
    )

    assert response.status == 400
    assert functions.calls == []


def test_other_content_types_pass_to_the_function_unchecked(api, functions, physician_token):
    functions.answer = lambda event: {"statusCode": 415, "body": "{}"}

    response = call(
        api,
        "POST",
        "/v1/encounters",
        token=physician_token,
        body=b"patient=x",
        headers=[("Content-Type", "text/plain")],
    )

    assert response.status == 415
    assert functions.last_event["body"] == "patient=x"


# ----- the proxy event ------------------------------------------------------------------------------------
def shape(value: Any) -> Any:
    """The keys and JSON types of a value, recursively."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    return type(value).__name__


def test_the_proxy_event_has_the_shape_api_gateway_sends(api, functions, physician_token):
    sample_headers = list(SAMPLE_EVENT["headers"].items())

    response = api.handle(
        "POST",
        "/v1/encounters",
        "",
        [*sample_headers, ("Authorization", physician_token)],
        SAMPLE_EVENT["body"].encode(),
        "127.0.0.1",
    )

    event = functions.last_event
    sample_claims = SAMPLE_EVENT["requestContext"]["authorizer"]["claims"]
    claims = event["requestContext"]["authorizer"].pop("claims")
    assert set(sample_claims) <= set(claims)
    expected = shape(SAMPLE_EVENT)
    del expected["requestContext"]["authorizer"]["claims"]
    del event["headers"]["Authorization"], event["multiValueHeaders"]["Authorization"]
    assert shape(event) == expected
    assert event["body"] == SAMPLE_EVENT["body"]
    assert event["headers"] == SAMPLE_EVENT["headers"]
    assert event["requestContext"]["requestId"] == header(response, "x-amzn-RequestId")
    assert event["requestContext"]["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "carebus-sample"}
    assert event["requestContext"]["stage"] == "v1"
    assert abs(event["requestContext"]["requestTimeEpoch"] / 1000 - time.time()) < 60
    assert time.strptime(event["requestContext"]["requestTime"], "%d/%b/%Y:%H:%M:%S +0000")


def test_repeated_headers_and_query_parameters(api, functions, physician_token):
    call(
        api,
        "GET",
        "/v1/approvals",
        token=physician_token,
        headers=[("Accept", "text/html"), ("X-Trace", "a"), ("accept", "application/json")],
        query="status=PENDING&status=APPROVED&note=caf%C3%A9+au+lait&empty=",
    )

    event = functions.last_event
    assert event["headers"]["Accept"] == "application/json"
    assert event["multiValueHeaders"]["Accept"] == ["text/html", "application/json"]
    assert event["multiValueHeaders"]["X-Trace"] == ["a"]
    assert event["queryStringParameters"] == {"status": "APPROVED", "note": "café au lait", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {
        "status": ["PENDING", "APPROVED"],
        "note": ["café au lait"],
        "empty": [""],
    }
    assert event["pathParameters"] is None
    assert event["body"] is None
    assert event["isBase64Encoded"] is False


NOT_UTF8 = b'\x89PNG\r\n\x1a\n\xff{"caf\xe9": "\xed\xa0\x80"}'


def test_without_binary_media_types_a_body_that_is_not_utf8_arrives_as_text(api, functions, physician_token):
    """As API Gateway passes a text payload: a UTF-8 string, what is not UTF-8 replaced by U+FFFD."""
    call(
        api,
        "POST",
        "/v1/encounters",
        token=physician_token,
        body=NOT_UTF8,
        headers=[("Content-Type", "application/octet-stream")],
    )

    event = functions.last_event
    assert event["isBase64Encoded"] is False
    assert event["body"] == NOT_UTF8.decode("utf-8", errors="replace")
    assert "\ufffd" in event["body"]
    # Valid UTF-8 JSON, as Lambda delivers every event: no lone surrogates.
    assert json.loads(json.dumps(event, ensure_ascii=False).encode("utf-8")) == event


def test_a_json_body_that_is_not_utf8_is_refused_by_the_model_before_any_function(
    api, functions, physician_token
):
    response = call(
        api,
        "POST",
        "/v1/approvals/a-7/decision",
        token=physician_token,
        body=b'{"decision": "APPROVE", "reason": "caf\xe9"}',
        headers=JSON,
    )

    assert response.status == 400
    assert header(response, "x-amzn-ErrorType") == "BadRequestException"
    assert functions.calls == []


@pytest.mark.parametrize(
    ("content_type", "binary"),
    [
        ("image/png", True),
        ("IMAGE/PNG; q=1", True),
        ("application/pdf", True),
        ("application/octet-stream", False),
        ("text/plain", False),
    ],
)
def test_a_body_of_a_binary_media_type_arrives_base64_encoded(
    offline_stack, api_body, functions, verifier, physician_token, content_type, binary
):
    api_body["x-amazon-apigateway-binary-media-types"] = ["image/*", "application/pdf"]
    api = local_api(offline_stack, api_body, functions, verifier)
    raw = b"\x89PNG\r\n\x1a\n\xff" if binary else b"plain text"

    call(
        api,
        "POST",
        "/v1/encounters",
        token=physician_token,
        body=raw,
        headers=[("Content-Type", content_type)],
    )

    event = functions.last_event
    assert event["isBase64Encoded"] is binary
    assert (base64.b64decode(event["body"]) if binary else event["body"].encode()) == raw


# ----- the function's answer ------------------------------------------------------------------------------
def test_headers_and_multi_value_headers_merge(api, functions, physician_token):
    functions.answer = lambda event: {
        "statusCode": 202,
        "headers": {"Location": "/v1/encounters/e-1", "X-Both": "from headers", "X-Count": 3},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"], "x-both": ["from multiValueHeaders"]},
        "body": "{}",
    }

    response = call(api, "GET", "/v1/approvals", token=physician_token)

    assert response.status == 202
    assert header(response, "Location") == "/v1/encounters/e-1"
    assert header_values(response, "Set-Cookie") == ["a=1", "b=2"]
    assert header_values(response, "X-Both") == ["from multiValueHeaders"]
    assert header(response, "X-Count") == "3"
    assert header(response, "Content-Type") == "application/json"
    assert header(response, "x-amzn-RequestId") == functions.last_event["requestContext"]["requestId"]
    assert response.body == b"{}"


def test_a_base64_encoded_answer_is_decoded(api, functions, physician_token):
    picture = b"\x89PNG\r\n\x1a\n\x00\xff"
    functions.answer = lambda event: {
        "statusCode": 200,
        "headers": {"Content-Type": "image/png"},
        "body": base64.b64encode(picture).decode(),
        "isBase64Encoded": True,
    }

    response = call(api, "GET", "/v1/approvals", token=physician_token)

    assert response.body == picture
    assert header(response, "Content-Type") == "image/png"


def raise_error(event: dict[str, Any]) -> Any:
    raise RuntimeError("the handler crashed")


@pytest.mark.parametrize(
    "answer",
    [
        raise_error,
        lambda event: None,
        lambda event: "OK",
        lambda event: {"body": "{}"},
        lambda event: {"statusCode": 200, "body": {"ok": True}},
        lambda event: {"statusCode": 200, "body": "{}", "cookies": ["a=1"]},
        lambda event: {"statusCode": 200, "body": "not base64!", "isBase64Encoded": True},
    ],
    ids=["raises", "None", "a string", "no statusCode", "object body", "unknown key", "bad base64"],
)
def test_a_failing_function_or_a_malformed_answer_is_502(api, functions, physician_token, answer):
    functions.answer = answer

    response = call(api, "GET", "/v1/approvals", token=physician_token)

    assert response.status == 502
    assert problem(response) == {
        "type": "https://carebus.dev/problems/server-error",
        "title": "Something went wrong",
        "detail": "Internal server error",
    }
    assert len(functions.calls) == 1


def test_a_failure_of_the_emulation_itself_is_the_templates_default_5xx(
    api, functions, physician_token, monkeypatch
):
    def broken(*_: Any) -> str:
        raise RuntimeError("a bug in the emulator")

    monkeypatch.setattr("carebus_local.apigateway.validation_error_string", broken)

    response = call(
        api, "POST", "/v1/approvals/a-7/decision", token=physician_token, body=b"{}", headers=JSON
    )

    assert response.status == 500
    assert problem(response) == {
        "type": "https://carebus.dev/problems/server-error",
        "title": "Something went wrong",
        "detail": "Internal server error",
    }
    assert header(response, "x-amzn-ErrorType") == "InternalServerErrorException"
    assert functions.calls == []


# ----- gateway responses without customization, and what is not emulated ----------------------------------
def test_uncustomized_gateway_responses_are_api_gateways_defaults(
    offline_stack, api_body, functions, verifier
):
    del api_body["x-amazon-apigateway-gateway-responses"]
    api = local_api(offline_stack, api_body, functions, verifier)

    missing = call(api, "GET", "/v1/nowhere")
    unauthorized = call(api, "GET", "/v1/approvals")

    assert (missing.status, json.loads(missing.body)) == (403, {"message": "Missing Authentication Token"})
    assert (unauthorized.status, json.loads(unauthorized.body)) == (401, {"message": "Unauthorized"})
    assert header(missing, "Content-Type") == "application/json"


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (
            lambda body: body["paths"]["/approvals"]["get"]["x-amazon-apigateway-integration"].update(
                type="http"
            ),
            "only Lambda proxy integrations",
        ),
        (
            lambda body: body["components"]["securitySchemes"]["CognitoAuthorizer"][
                "x-amazon-apigateway-authorizer"
            ].update(type="token"),
            "only Cognito user pool authorizers",
        ),
        (
            lambda body: body["x-amazon-apigateway-request-validators"]["body-only"].update(
                validateRequestParameters=True
            ),
            "request parameter validation",
        ),
        (
            lambda body: body["x-amazon-apigateway-gateway-responses"]["UNAUTHORIZED"][
                "responseParameters"
            ].update({"gatewayresponse.header.X-Origin": "method.request.header.Origin"}),
            "not a quoted literal",
        ),
    ],
)
def test_api_features_the_emulation_lacks_are_refused_up_front(
    offline_stack, api_body, functions, verifier, change, refusal
):
    change(api_body)

    with pytest.raises(UnsupportedApiFeatureError, match=refusal):
        local_api(offline_stack, api_body, functions, verifier)


def test_an_api_with_authorizers_needs_a_verifier(offline_stack, api_body, functions):
    with pytest.raises(ValueError, match="CognitoVerifier"):
        local_api(offline_stack, api_body, functions, None)
