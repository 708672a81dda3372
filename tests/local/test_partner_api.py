"""The partner API offline: a scoped access token AND an API key on every call, the key metered by its usage
plan (throttle, then quota), in API Gateway's order; and the refusals, each as the template's problem.

The stack is provisioned on a real moto server with small plan values (template parameters); the meter's
clock is a fake one, so throttling and quotas are proved by moving time, never by waiting for it.
"""

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from clocks import FakeClock

from carebus_local.apigateway import LocalRestApi
from carebus_local.cognito import TOKEN_EXPIRED_MESSAGE, CognitoVerifier
from carebus_local.http import HttpResponse, UnsupportedApiFeatureError
from carebus_local.oauth_tokens import TokenEndpoint
from carebus_local.stack import ACCOUNT_ID, OfflineStack
from carebus_local.usage_plans import UsagePlanMeter

REGION = "us-east-1"
# Small enough to reach in a test: 2 requests at once, 1 more a second, 5 a month.
PLAN = {"PartnerRateLimit": "1", "PartnerBurstLimit": "2", "PartnerMonthlyQuota": "5"}
CANNED_ANSWER = {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": '{"ok": true}'}
JANUARY_31_LATE = datetime(2027, 1, 31, 23, 59, 0, tzinfo=UTC).timestamp()


# ----- a moto server with the template on it --------------------------------------------------------------
@pytest.fixture(scope="module")
def local_stack_parameters() -> dict[str, str]:
    return PLAN


@pytest.fixture(scope="module")
def apigateway(moto_url: str) -> BaseClient:
    return boto3.client("apigateway", region_name=REGION, endpoint_url=moto_url)


@pytest.fixture(scope="module")
def verifier(cognito: BaseClient, moto_url: str) -> CognitoVerifier:
    return CognitoVerifier(cognito, moto_url, REGION)


@pytest.fixture(scope="module")
def token_endpoint(cognito: BaseClient, offline_stack: OfflineStack) -> TokenEndpoint:
    return TokenEndpoint(cognito, offline_stack.ref("PartnerAuthDomain"), REGION)


def client_credentials(endpoint: TokenEndpoint, client_id: str, secret: str, scope: str | None = None) -> str:
    """An access token from the token endpoint, the client authenticated with HTTP Basic."""
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    form = "grant_type=client_credentials" + (f"&scope={scope}" if scope else "")
    answer = endpoint.handle(
        "POST",
        [("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", f"Basic {basic}")],
        form.encode(),
    )
    assert answer.status == 200, answer.body
    return json.loads(answer.body)["access_token"]


@pytest.fixture(scope="module")
def clearinghouse(cognito: BaseClient, offline_stack: OfflineStack) -> tuple[str, str]:
    """The clearinghouse's client id and secret, read as a partner's operator would."""
    client_id = offline_stack.outputs["ClearinghouseClientId"]
    described = cognito.describe_user_pool_client(
        UserPoolId=offline_stack.ref("UserPool"), ClientId=client_id
    )
    return client_id, described["UserPoolClient"]["ClientSecret"]


@pytest.fixture(scope="module")
def partner_token(token_endpoint: TokenEndpoint, clearinghouse: tuple[str, str]) -> str:
    return client_credentials(token_endpoint, *clearinghouse)


@pytest.fixture(scope="module")
def api_key(apigateway: BaseClient, offline_stack: OfflineStack) -> str:
    """The clearinghouse's key value, as `aws apigateway get-api-key --include-value` shows it."""
    return apigateway.get_api_key(apiKey=offline_stack.outputs["ClearinghouseApiKeyId"], includeValue=True)[
        "value"
    ]


# ----- the partner API, a fake function behind it ---------------------------------------------------------
@dataclass
class FakeFunctions:
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, function_arn: str, event: dict[str, Any]) -> Any:
        self.calls.append((function_arn, event))
        return CANNED_ANSWER


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(JANUARY_31_LATE)


@pytest.fixture
def functions() -> FakeFunctions:
    return FakeFunctions()


@pytest.fixture
def meter(apigateway: BaseClient, clock: FakeClock) -> UsagePlanMeter:
    """Fresh counters for each test; keys and plans read again on every request."""
    return UsagePlanMeter(apigateway, clock=clock, cache_seconds=0)


def rest_api(
    stack: OfflineStack,
    logical_id: str,
    functions: FakeFunctions,
    verifier: CognitoVerifier,
    meter: UsagePlanMeter,
) -> LocalRestApi:
    api = stack.rest_apis[logical_id]
    return LocalRestApi(
        api["body"], api["stages"][0], api["id"], REGION, ACCOUNT_ID, functions, verifier, usage_plans=meter
    )


@pytest.fixture
def partner_api(offline_stack, functions, verifier, meter) -> LocalRestApi:
    return rest_api(offline_stack, "PartnerApi", functions, verifier, meter)


Call = Callable[..., HttpResponse]


@pytest.fixture
def get(partner_api: LocalRestApi) -> Call:
    """GET on the partner API with whichever of a token and a key the test gives."""

    def call(path: str, *, token: str | None = None, key: str | None = None, api: LocalRestApi = partner_api):
        headers = [("Host", "localhost:3000"), ("User-Agent", "clearinghouse/1.0")]
        if token is not None:
            headers.append(("Authorization", f"Bearer {token}"))
        if key is not None:
            headers.append(("x-api-key", key))
        return api.handle("GET", path, "", headers, b"", "127.0.0.1")

    return call


def problem(response: HttpResponse) -> dict[str, Any]:
    assert dict(response.headers)["Content-Type"] == "application/problem+json"
    return json.loads(response.body)


def error_type(response: HttpResponse) -> str:
    return dict(response.headers)["x-amzn-ErrorType"]


UNAUTHORIZED = {
    "type": "https://carebus.dev/problems/unauthorized",
    "title": "Sign in first",
    "status": 401,
    "detail": "Unauthorized",
}
INVALID_API_KEY = {
    "type": "https://carebus.dev/problems/invalid-api-key",
    "title": "API key missing or unknown",
    "status": 403,
    "detail": "send the partner's API key in the x-api-key header",
}


# ----- the happy path ---------------------------------------------------------------------------------------
def test_a_scoped_access_token_and_the_key_reach_the_function_with_claims_and_key(
    get, functions, offline_stack, partner_token, api_key, clearinghouse
):
    response = get("/v1/claims/c-1", token=partner_token, key=api_key)

    assert response.status == 200
    ((function_arn, event),) = functions.calls
    assert function_arn == offline_stack.functions["PartnerClaimsFunction"].arn
    assert event["pathParameters"] == {"claimId": "c-1"}
    identity = event["requestContext"]["identity"]
    assert identity["apiKey"] == api_key
    assert identity["apiKeyId"] == offline_stack.outputs["ClearinghouseApiKeyId"]
    claims = event["requestContext"]["authorizer"]["claims"]
    client_id, _ = clearinghouse
    assert claims["client_id"] == claims["sub"] == client_id
    assert claims["token_use"] == "access"
    assert claims["scope"] == offline_stack.outputs["PartnerScope"]
    assert claims["version"] == "2"
    # API Gateway passes exp and iat as Java dates, everything else as text.
    assert claims["exp"].endswith(" UTC " + claims["exp"].rsplit(" ", 1)[-1])
    assert "username" not in claims


# ----- all three are required ------------------------------------------------------------------------------
def test_no_token_is_401_even_with_the_key(get, functions, api_key):
    response = get("/v1/claims", key=api_key)

    assert response.status == 401
    assert problem(response) == UNAUTHORIZED
    assert functions.calls == []


def test_no_key_is_403_invalid_api_key_even_with_a_scoped_token(get, functions, partner_token):
    response = get("/v1/claims", token=partner_token)

    assert response.status == 403
    assert problem(response) == INVALID_API_KEY
    assert error_type(response) == "ForbiddenException"
    assert functions.calls == []


def test_an_unknown_key_is_403_invalid_api_key(get, functions, partner_token):
    response = get("/v1/claims", token=partner_token, key="x" * 40)

    assert response.status == 403
    assert problem(response) == INVALID_API_KEY
    assert functions.calls == []


def test_the_authorizer_runs_before_the_key_is_looked_at(get, functions):
    response = get("/v1/claims", key="x" * 40)

    assert response.status == 401
    assert problem(response) == UNAUTHORIZED


def test_an_access_token_without_the_scope_is_401(
    get, functions, cognito, offline_stack, token_endpoint, api_key
):
    pool_id = offline_stack.ref("UserPool")
    cognito.create_resource_server(
        UserPoolId=pool_id,
        Identifier="other-api",
        Name="other",
        Scopes=[{"ScopeName": "x.read", "ScopeDescription": "x"}],
    )
    other = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="other-partner",
        GenerateSecret=True,
        AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthFlows=["client_credentials"],
        AllowedOAuthScopes=["other-api/x.read"],
    )["UserPoolClient"]
    unscoped = client_credentials(token_endpoint, other["ClientId"], other["ClientSecret"])

    response = get("/v1/claims", token=unscoped, key=api_key)

    assert response.status == 401
    assert problem(response) == UNAUTHORIZED
    assert functions.calls == []


@pytest.mark.parametrize("token_kind", ["IdToken", "AccessToken"])
def test_a_staff_users_tokens_are_refused_on_the_partner_api(get, functions, physician, api_key, token_kind):
    response = get("/v1/claims", token=physician[token_kind], key=api_key)

    assert response.status == 401
    assert problem(response) == UNAUTHORIZED
    assert functions.calls == []


def test_a_partner_access_token_is_refused_on_the_staff_api(
    get, offline_stack, functions, verifier, meter, partner_token, api_key, physician
):
    staff_api = rest_api(offline_stack, "CarebusApi", functions, verifier, meter)

    refused = get("/v1/approvals", token=partner_token, key=api_key, api=staff_api)
    signed_in = get("/v1/approvals", token=physician["IdToken"], api=staff_api)

    assert refused.status == 401
    assert problem(refused)["type"] == UNAUTHORIZED["type"]
    assert signed_in.status == 200
    assert len(functions.calls) == 1


def test_an_expired_partner_token_is_401_the_incoming_token_has_expired(
    get, functions, cognito, offline_stack, clearinghouse, api_key
):
    issued_two_hours_ago = TokenEndpoint(
        cognito,
        offline_stack.ref("PartnerAuthDomain"),
        REGION,
        clock=lambda: datetime.now(UTC).timestamp() - 2 * 3600,
    )
    expired = client_credentials(issued_two_hours_ago, *clearinghouse)

    response = get("/v1/claims", token=expired, key=api_key)

    assert response.status == 401
    assert problem(response)["detail"] == TOKEN_EXPIRED_MESSAGE


# ----- keys as API Gateway holds them -----------------------------------------------------------------------
def new_key(apigateway: BaseClient, plan_id: str | None, *, enabled: bool = True) -> dict[str, Any]:
    """A key made as `aws apigateway create-api-key` (and create-usage-plan-key) would."""
    key = apigateway.create_api_key(
        name=f"partner-{len(apigateway.get_api_keys()['items'])}", enabled=enabled
    )
    if plan_id is not None:
        apigateway.create_usage_plan_key(usagePlanId=plan_id, keyId=key["id"], keyType="API_KEY")
    return key


def test_a_key_added_to_the_plan_with_the_aws_api_is_accepted_until_it_is_disabled(
    get, functions, apigateway, offline_stack, partner_token
):
    key = new_key(apigateway, offline_stack.ref("ClearinghouseUsagePlan"))

    accepted = get("/v1/claims", token=partner_token, key=key["value"])
    apigateway.update_api_key(
        apiKey=key["id"], patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}]
    )
    disabled = get("/v1/claims", token=partner_token, key=key["value"])

    assert accepted.status == 200
    assert functions.calls[0][1]["requestContext"]["identity"]["apiKeyId"] == key["id"]
    assert disabled.status == 403
    assert problem(disabled) == INVALID_API_KEY
    assert len(functions.calls) == 1


def test_a_key_created_disabled_is_refused(get, functions, apigateway, offline_stack, partner_token):
    key = new_key(apigateway, offline_stack.ref("ClearinghouseUsagePlan"), enabled=False)

    response = get("/v1/claims", token=partner_token, key=key["value"])

    assert response.status == 403
    assert problem(response) == INVALID_API_KEY


def test_a_key_in_no_usage_plan_of_the_stage_is_refused(get, functions, apigateway, partner_token):
    elsewhere = apigateway.create_usage_plan(
        name="another-api", apiStages=[{"apiId": "0123456789", "stage": "v1"}]
    )
    stray = new_key(apigateway, None)
    misplaced = new_key(apigateway, elsewhere["id"])

    answers = [get("/v1/claims", token=partner_token, key=key["value"]) for key in (stray, misplaced)]

    assert [answer.status for answer in answers] == [403, 403]
    assert all(problem(answer) == INVALID_API_KEY for answer in answers)
    assert functions.calls == []


def test_a_key_read_from_moto_is_reused_for_the_cache_time(
    apigateway, offline_stack, functions, verifier, clock, get, partner_token
):
    cached = UsagePlanMeter(apigateway, clock=clock, cache_seconds=1.0)
    api = rest_api(offline_stack, "PartnerApi", functions, verifier, cached)
    get("/v1/claims", token=partner_token, key="y" * 40, api=api)  # the first read
    key = new_key(apigateway, offline_stack.ref("ClearinghouseUsagePlan"))

    within = get("/v1/claims", token=partner_token, key=key["value"], api=api)
    clock.now += 1.0
    after = get("/v1/claims", token=partner_token, key=key["value"], api=api)

    assert [within.status, after.status] == [403, 200]


# ----- the usage plan: throttle, then quota -------------------------------------------------------------
THROTTLED = {
    "type": "https://carebus.dev/problems/throttled",
    "title": "Too many requests",
    "status": 429,
    "detail": "more requests a second than this API (or this API key's usage plan) allows; retry later",
}
QUOTA_EXCEEDED = {
    "type": "https://carebus.dev/problems/quota-exceeded",
    "title": "Monthly quota used up",
    "status": 429,
    "detail": "this API key has sent every request its usage plan allows this month (UTC)",
}


def test_a_burst_beyond_the_plan_is_429_throttled_until_the_bucket_refills(
    get, functions, clock, partner_token, api_key
):
    burst = [get("/v1/claims", token=partner_token, key=api_key) for _ in range(3)]
    clock.now += 1.0  # one more token at 1 request a second
    refilled = [get("/v1/claims", token=partner_token, key=api_key) for _ in range(2)]

    assert [answer.status for answer in burst] == [200, 200, 429]
    assert problem(burst[2]) == THROTTLED
    assert dict(burst[2].headers)["Retry-After"] == "1"
    assert error_type(burst[2]) == "TooManyRequestsException"
    assert [answer.status for answer in refilled] == [200, 429]
    assert len(functions.calls) == 3


def test_the_monthly_quota_is_429_quota_exceeded_and_starts_again_on_the_first_utc(
    get, functions, clock, partner_token, api_key
):
    statuses = []
    for _ in range(6):  # the plan allows 5 a month
        response = get("/v1/claims", token=partner_token, key=api_key)
        statuses.append(response.status)
        clock.now += 5  # never throttled (the bucket refills), and still January 31st, UTC
    last_of_january = response
    clock.now = datetime(2027, 2, 1, tzinfo=UTC).timestamp()
    february = get("/v1/claims", token=partner_token, key=api_key)

    assert statuses == [200, 200, 200, 200, 200, 429]
    assert problem(last_of_january) == QUOTA_EXCEEDED
    assert error_type(last_of_january) == "LimitExceededException"
    assert february.status == 200
    assert len(functions.calls) == 6


def test_a_throttled_request_uses_no_quota(get, functions, clock, partner_token, api_key):
    throttled = [get("/v1/claims", token=partner_token, key=api_key) for _ in range(10)]
    admitted_after = []
    for _ in range(5):
        clock.now += 5
        admitted_after.append(get("/v1/claims", token=partner_token, key=api_key).status)

    assert [answer.status for answer in throttled].count(200) == 2
    # 2 of the 5 monthly requests went in the burst: 3 remain.
    assert admitted_after == [200, 200, 200, 429, 429]


def test_refused_credentials_use_no_quota(get, functions, clock, partner_token, api_key):
    for _ in range(10):
        get("/v1/claims", key=api_key)  # no token: refused before the key is counted
    admitted = []
    for _ in range(5):
        clock.now += 5
        admitted.append(get("/v1/claims", token=partner_token, key=api_key).status)

    assert admitted == [200] * 5


# ----- what the emulation refuses to pretend ----------------------------------------------------------------
def test_keys_from_an_authorizer_are_not_emulated(offline_stack, functions, verifier, meter):
    api = offline_stack.rest_apis["PartnerApi"]
    body = api["body"] | {"x-amazon-apigateway-api-key-source": "AUTHORIZER"}

    with pytest.raises(UnsupportedApiFeatureError, match="x-api-key"):
        LocalRestApi(body, "v1", api["id"], REGION, ACCOUNT_ID, functions, verifier, usage_plans=meter)


def test_a_key_required_api_needs_a_meter(offline_stack, functions, verifier):
    api = offline_stack.rest_apis["PartnerApi"]

    with pytest.raises(ValueError, match="UsagePlanMeter"):
        LocalRestApi(api["body"], "v1", api["id"], REGION, ACCOUNT_ID, functions, verifier)
