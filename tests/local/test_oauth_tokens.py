"""The user pool domain's token endpoint offline: the client credentials grant as Cognito answers it, its
errors as Cognito's token endpoint documents them, and access tokens the pool's JWKS verifies."""

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.client import BaseClient
from joserfc import jws, jwt
from joserfc.jwk import KeySet

from carebus_local.cognito import fetch_jwks_over_http
from carebus_local.http import HttpResponse
from carebus_local.oauth_tokens import TokenEndpoint
from carebus_local.stack import OfflineStack

REGION = "us-east-1"
FORM = ("Content-Type", "application/x-www-form-urlencoded")
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def pool_id(offline_stack: OfflineStack) -> str:
    return offline_stack.ref("UserPool")


@pytest.fixture(scope="module")
def endpoint(cognito: BaseClient, offline_stack: OfflineStack) -> TokenEndpoint:
    return TokenEndpoint(cognito, offline_stack.ref("PartnerAuthDomain"), REGION, clock=lambda: NOW)


@pytest.fixture(scope="module")
def clearinghouse(cognito: BaseClient, offline_stack: OfflineStack, pool_id: str) -> tuple[str, str]:
    client_id = offline_stack.outputs["ClearinghouseClientId"]
    described = cognito.describe_user_pool_client(UserPoolId=pool_id, ClientId=client_id)["UserPoolClient"]
    return client_id, described["ClientSecret"]


def basic(client_id: str, secret: str) -> tuple[str, str]:
    return "Authorization", "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


Post = Callable[..., HttpResponse]


@pytest.fixture
def post(endpoint: TokenEndpoint) -> Post:
    def send(form: str, *headers: tuple[str, str], method: str = "POST") -> HttpResponse:
        return endpoint.handle(method, [FORM, *headers], form.encode())

    return send


def error_of(response: HttpResponse) -> str:
    assert response.status == 400
    assert dict(response.headers)["Content-Type"] == "application/json;charset=UTF-8"
    document = json.loads(response.body)
    assert set(document) == {"error"}
    return document["error"]


def verified_claims(moto_url: str, pool_id: str, token: str) -> dict[str, Any]:
    """The token's claims once its signature checks out against the pool's JWKS, as moto serves it."""
    key_set = KeySet.import_key_set(fetch_jwks_over_http(f"{moto_url}/{pool_id}/.well-known/jwks.json"))
    return jwt.decode(token, key_set, algorithms=["RS256"]).claims


# ----- the grant ----------------------------------------------------------------------------------------
def test_client_secret_basic_gets_an_access_token_with_cognitos_client_credentials_claims(
    post, clearinghouse, offline_stack, moto_url, pool_id
):
    client_id, secret = clearinghouse

    response = post("grant_type=client_credentials", basic(client_id, secret))

    assert response.status == 200
    headers = dict(response.headers)
    assert headers["Content-Type"] == "application/json;charset=UTF-8"
    assert headers["Cache-Control"] == "no-store"
    answer = json.loads(response.body)
    # The template gives the client 60 minutes; no id or refresh token for a machine.
    assert {name: answer[name] for name in ("expires_in", "token_type")} == {
        "expires_in": 3600,
        "token_type": "Bearer",
    }
    assert set(answer) == {"access_token", "expires_in", "token_type"}
    claims = verified_claims(moto_url, pool_id, answer["access_token"])
    jti = claims.pop("jti")
    assert len(jti) == 36
    assert claims == {
        "sub": client_id,
        "client_id": client_id,
        "token_use": "access",
        # No scope asked for: every custom scope the client is allowed.
        "scope": offline_stack.outputs["PartnerScope"],
        "iss": f"https://cognito-idp.{REGION}.amazonaws.com/{pool_id}",
        "iat": NOW,
        "auth_time": NOW,
        "exp": NOW + 3600,
        "version": 2,
    }
    jwks = fetch_jwks_over_http(f"{moto_url}/{pool_id}/.well-known/jwks.json")
    assert jws.extract_compact(answer["access_token"].encode()).headers()["kid"] == jwks["keys"][0]["kid"]


def test_client_secret_post_and_an_explicit_scope_work_too(post, clearinghouse, moto_url, pool_id):
    client_id, secret = clearinghouse

    response = post(
        f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}"
        "&scope=carebus-partner%2Fclaims.read"
    )

    assert response.status == 200
    claims = verified_claims(moto_url, pool_id, json.loads(response.body)["access_token"])
    assert claims["scope"] == "carebus-partner/claims.read"


def test_the_client_id_may_also_be_in_the_body_beside_basic(post, clearinghouse):
    client_id, secret = clearinghouse

    response = post(f"grant_type=client_credentials&client_id={client_id}", basic(client_id, secret))

    assert response.status == 200


# ----- errors, as the token endpoint documents them --------------------------------------------------------
def test_a_wrong_or_missing_secret_or_an_unknown_client_is_invalid_client(post, clearinghouse):
    client_id, secret = clearinghouse

    assert error_of(post("grant_type=client_credentials", basic(client_id, secret + "x"))) == "invalid_client"
    assert error_of(post(f"grant_type=client_credentials&client_id={client_id}")) == "invalid_client"
    assert (
        error_of(post("grant_type=client_credentials", basic("1example23456789", secret))) == "invalid_client"
    )
    assert (
        error_of(post("grant_type=client_credentials", ("Authorization", "Bearer abc"))) == "invalid_client"
    )
    assert error_of(post("grant_type=client_credentials", ("Authorization", "Basic !!!"))) == "invalid_client"
    other_id = basic("someone-else", secret)
    assert (
        error_of(post(f"grant_type=client_credentials&client_id={client_id}", other_id)) == "invalid_client"
    )


@pytest.mark.parametrize(
    ("form", "headers", "method"),
    [
        ("grant_type=client_credentials", [], "POST"),  # no client at all
        ("scope=carebus-partner%2Fclaims.read", ["basic"], "POST"),  # no grant_type
        ("grant_type=client_credentials&grant_type=client_credentials", ["basic"], "POST"),  # repeated
        ("grant_type=client_credentials&client_secret=s", ["basic"], "POST"),  # two client authentications
        ("grant_type=client_credentials", ["basic"], "GET"),
    ],
)
def test_a_malformed_request_is_invalid_request(endpoint, clearinghouse, form, headers, method):
    sent = [FORM, *(basic(*clearinghouse) for _ in headers)]

    assert error_of(endpoint.handle(method, sent, form.encode())) == "invalid_request"


def test_a_body_that_is_not_a_form_is_invalid_request(endpoint, clearinghouse):
    body = json.dumps({"grant_type": "client_credentials"}).encode()

    response = endpoint.handle("POST", [("Content-Type", "application/json"), basic(*clearinghouse)], body)

    assert error_of(response) == "invalid_request"


@pytest.mark.parametrize(
    "grant_type", ["password", "urn:ietf:params:oauth:grant-type:jwt-bearer", "implicit"]
)
def test_a_grant_cognito_does_not_know_is_unsupported_grant_type(post, clearinghouse, grant_type):
    assert error_of(post(f"grant_type={grant_type}", basic(*clearinghouse))) == "unsupported_grant_type"


def test_a_scope_the_client_is_not_allowed_is_invalid_scope(post, clearinghouse):
    for scope in ("carebus-partner%2Fclaims.write", "openid", "carebus-partner%2Fclaims.read+other%2Fx"):
        assert (
            error_of(post(f"grant_type=client_credentials&scope={scope}", basic(*clearinghouse)))
            == "invalid_scope"
        )


def test_a_scope_no_resource_server_defines_is_invalid_scope(post, cognito, pool_id):
    # As after its resource server was deleted (moto neither checks a client's scopes nor deletes servers).
    client = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="retired-partner",
        GenerateSecret=True,
        AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthFlows=["client_credentials"],
        AllowedOAuthScopes=["retired/r"],
    )["UserPoolClient"]

    response = post("grant_type=client_credentials", basic(client["ClientId"], client["ClientSecret"]))

    assert error_of(response) == "invalid_scope"


def test_a_client_not_allowed_the_client_credentials_flow_is_unauthorized_client(
    post, cognito, pool_id, offline_stack
):
    # The staff app client: no secret, no OAuth flows (users sign in with USER_PASSWORD_AUTH or SRP).
    staff = offline_stack.outputs["UserPoolClientId"]
    code_only = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="web",
        GenerateSecret=True,
        AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthFlows=["code"],
        AllowedOAuthScopes=["carebus-partner/claims.read"],
        CallbackURLs=["https://example.org/callback"],
    )["UserPoolClient"]
    switched_off = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="switched-off",
        GenerateSecret=True,
        AllowedOAuthFlowsUserPoolClient=False,
        AllowedOAuthFlows=["client_credentials"],
        AllowedOAuthScopes=["carebus-partner/claims.read"],
    )["UserPoolClient"]

    assert error_of(post(f"grant_type=client_credentials&client_id={staff}")) == "unauthorized_client"
    for client in (code_only, switched_off):
        credentials = basic(client["ClientId"], client["ClientSecret"])
        assert error_of(post("grant_type=client_credentials", credentials)) == "unauthorized_client"


def test_an_authorization_code_is_invalid_grant_since_none_is_ever_issued_offline(post, cognito, pool_id):
    web = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="web-app",
        GenerateSecret=True,
        AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthFlows=["code"],
        AllowedOAuthScopes=["openid"],
        CallbackURLs=["https://example.org/callback"],
    )["UserPoolClient"]
    credentials = basic(web["ClientId"], web["ClientSecret"])

    with_code = post(
        "grant_type=authorization_code&code=abc&redirect_uri=https%3A%2F%2Fexample.org%2Fcallback",
        credentials,
    )
    without_code = post("grant_type=authorization_code", credentials)

    assert error_of(with_code) == "invalid_grant"
    assert error_of(without_code) == "invalid_request"


def test_the_token_lifetime_follows_the_clients_access_token_validity(post, cognito, pool_id, moto_url):
    client = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="short-lived",
        GenerateSecret=True,
        AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthFlows=["client_credentials"],
        AllowedOAuthScopes=["carebus-partner/claims.read"],
        AccessTokenValidity=2,
        TokenValidityUnits={"AccessToken": "hours"},
    )["UserPoolClient"]

    answer = json.loads(
        post("grant_type=client_credentials", basic(client["ClientId"], client["ClientSecret"])).body
    )

    assert answer["expires_in"] == 7200
    assert verified_claims(moto_url, pool_id, answer["access_token"])["exp"] == NOW + 7200
