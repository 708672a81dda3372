"""The partner API through the running offline stack, over real HTTP: the token endpoint at PartnerTokenUrl,
the API at PartnerApiUrl beside the staff API on the same port, a key and a scoped token on every call."""

import base64
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cli_harness import started_on_free_ports

from carebus_local.demo_users import DEMO_PASSWORD, DEMO_USERS
from carebus_local.runtime import OfflineRuntime


@pytest.fixture(scope="module")
def runtime() -> Iterator[OfflineRuntime]:
    started = started_on_free_ports(stack_name=f"carebus-partner-{uuid.uuid4().hex[:6]}")
    yield started
    started.stop()


def exchange(
    method: str, url: str, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310 - local
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            status, answer_headers, raw = answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, raw = error.code, dict(error.headers), error.read()
    return status, answer_headers, json.loads(raw) if raw else None


def test_a_partner_gets_a_token_and_calls_the_partner_api_with_its_key(runtime):
    outputs = {
        output["OutputKey"]: output["OutputValue"]
        for output in runtime.client("cloudformation").describe_stacks(StackName=runtime.stack.name)[
            "Stacks"
        ][0]["Outputs"]
    }
    client_id = outputs["ClearinghouseClientId"]
    secret = runtime.client("cognito-idp").describe_user_pool_client(
        UserPoolId=outputs["UserPoolId"], ClientId=client_id
    )["UserPoolClient"]["ClientSecret"]
    key = runtime.client("apigateway").get_api_key(
        apiKey=outputs["ClearinghouseApiKeyId"], includeValue=True
    )["value"]
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    physician, _ = DEMO_USERS["physician"]
    staff_id_token = runtime.client("cognito-idp").initiate_auth(
        ClientId=outputs["UserPoolClientId"],
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": physician, "PASSWORD": DEMO_PASSWORD},
    )["AuthenticationResult"]["IdToken"]

    token_status, _, token_answer = exchange(
        "POST",
        outputs["PartnerTokenUrl"],
        {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Basic {basic}"},
        f"grant_type=client_credentials&scope={outputs['PartnerScope']}".encode(),
    )
    bearer = {"Authorization": f"Bearer {token_answer['access_token']}"}
    before = runtime.invocations["PartnerClaimsFunction"]
    reached, _, _ = exchange(
        "GET", f"{outputs['PartnerApiUrl']}/claims/c-{uuid.uuid4()}", {**bearer, "x-api-key": key}
    )
    invoked = runtime.invocations["PartnerClaimsFunction"] - before
    no_key = exchange("GET", f"{outputs['PartnerApiUrl']}/claims", bearer)
    staff_token = exchange(
        "GET", f"{outputs['PartnerApiUrl']}/claims", {"Authorization": staff_id_token, "x-api-key": key}
    )
    partner_on_staff_api = exchange("GET", f"{outputs['ApiUrl']}/approvals", bearer)
    approvals_before = runtime.invocations["ApprovalsFunction"]
    exchange("GET", f"{outputs['ApiUrl']}/approvals", {"Authorization": staff_id_token})
    staff_reached_staff_api = runtime.invocations["ApprovalsFunction"] - approvals_before
    under_no_api = exchange("GET", f"{runtime.api_url}/partner/v2/claims", {**bearer, "x-api-key": key})

    assert outputs["ApiUrl"] == f"{runtime.api_url}/v1"
    assert outputs["PartnerApiUrl"] == f"{runtime.api_url}/partner/v1"
    assert outputs["PartnerTokenUrl"] == f"{runtime.api_url}/oauth2/token"
    assert token_status == 200
    assert token_answer["token_type"] == "Bearer"
    # The gateway let the call through to the function (whatever it answers for an unknown claim).
    assert invoked == 1
    assert reached not in (401, 403, 429)
    assert no_key[0] == 403
    assert no_key[1]["Content-Type"] == "application/problem+json"
    assert no_key[2]["type"] == "https://carebus.dev/problems/invalid-api-key"
    assert staff_token[0] == 401
    assert staff_token[2]["type"] == "https://carebus.dev/problems/unauthorized"
    assert partner_on_staff_api[0] == 401
    assert staff_reached_staff_api == 1
    assert under_no_api[0] == 403
    assert under_no_api[2]["detail"] == "Missing Authentication Token"
