"""A user pool domain's OAuth 2.0 token endpoint, offline: the client credentials grant (moto has none).

POST /oauth2/token, application/x-www-form-urlencoded, the client authenticated by HTTP Basic
(client_secret_basic) or by client_id and client_secret in the body (client_secret_post), each checked
against the app client as moto holds it. The access token carries the claims Cognito gives a client
credentials token and is signed with the key moto signs its own tokens with, so the pool's JWKS (and the
offline Cognito authorizer) verifies it. Errors are Cognito's: 400 and {"error": code}.

Not emulated: the authorization code grant (there is no /oauth2/authorize offline, so no code exists and
every code is invalid_grant), the refresh token grant (unsupported_grant_type here; InitiateAuth's
REFRESH_TOKEN_AUTH works on moto), custom domains, and the pre token generation trigger.
"""

import base64
import binascii
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, Final
from urllib.parse import parse_qs, unquote_plus

from botocore.client import BaseClient
from botocore.exceptions import ClientError
from joserfc import jwt
from joserfc.jwk import RSAKey

from carebus_local.http import Headers, HttpResponse, last_header

logger = logging.getLogger(__name__)

TOKEN_PATH: Final = "/oauth2/token"  # noqa: S105 - a path, not a secret
_FORM: Final = "application/x-www-form-urlencoded"
_GRANTS: Final = frozenset({"authorization_code", "refresh_token", "client_credentials"})
# TokenValidityUnits' names, in seconds; a client without AccessTokenValidity gets Cognito's hour.
_UNIT_SECONDS: Final = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
_DEFAULT_ACCESS_TOKEN_SECONDS: Final = 3600


class _TokenError(Exception):
    """One of the errors Cognito's token endpoint documents; reason is logged, never answered."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@cache
def moto_signing_key() -> tuple[RSAKey, str]:
    """The private key moto signs user pool tokens with, and its kid as moto's JWKS publishes it."""
    from moto.utilities.utils import load_resource

    jwk = load_resource("cognitoidp/resources/jwks-private.json")
    return RSAKey.import_key(jwk), jwk["kid"]


class TokenEndpoint:
    """The token endpoint of one user pool domain."""

    def __init__(
        self,
        cognito_idp_client: BaseClient,
        domain: str,
        region: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cognito_idp = cognito_idp_client
        self.domain = domain
        self._region = region
        self._clock = clock

    def handle(self, method: str, headers: Headers, body: bytes) -> HttpResponse:
        """The endpoint's answer: an access token, or Cognito's error."""
        try:
            return _answer(200, self._token(method, headers, body))
        except _TokenError as refused:
            logger.info("token endpoint of %s: %s (%s)", self.domain, refused.code, refused.reason)
            return _answer(400, {"error": refused.code})

    def _token(self, method: str, headers: Headers, body: bytes) -> dict[str, Any]:
        if method != "POST":
            raise _TokenError("invalid_request", f"the token endpoint takes POST, not {method}")
        content_type = (last_header(headers, "Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != _FORM:
            raise _TokenError("invalid_request", f"the body must be {_FORM}, not {content_type or 'absent'}")
        form = _form(body)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise _TokenError("invalid_request", "grant_type is missing")
        if grant_type not in _GRANTS:
            raise _TokenError("unsupported_grant_type", f"grant_type {grant_type!r}")
        pool_id = self._pool_id()
        client = self._authenticated_client(pool_id, last_header(headers, "Authorization"), form)
        flows = client.get("AllowedOAuthFlows", []) if client.get("AllowedOAuthFlowsUserPoolClient") else []
        if grant_type == "refresh_token":
            raise _TokenError("unsupported_grant_type", "the refresh token grant is not emulated offline")
        if grant_type == "authorization_code":
            if "code" not in flows:
                raise _TokenError("unauthorized_client", "the client may not use the code grant")
            if not form.get("code") or not form.get("redirect_uri"):
                raise _TokenError("invalid_request", "the code grant needs code and redirect_uri")
            raise _TokenError("invalid_grant", "no authorization code exists offline (no /oauth2/authorize)")
        if "client_credentials" not in flows or "ClientSecret" not in client:
            raise _TokenError("unauthorized_client", "the client may not use the client credentials grant")
        scopes = self._granted_scopes(pool_id, client, form.get("scope"))
        return self._access_token(pool_id, client, scopes)

    def _pool_id(self) -> str:
        """The domain's user pool, read on every request so that a deleted domain stops answering."""
        description = self._cognito_idp.describe_user_pool_domain(Domain=self.domain)["DomainDescription"]
        if not description.get("UserPoolId"):
            raise _TokenError("invalid_request", f"the domain {self.domain} no longer exists")
        return str(description["UserPoolId"])

    def _authenticated_client(
        self, pool_id: str, authorization: str | None, form: Mapping[str, str]
    ) -> dict[str, Any]:
        """The app client the request authenticates as (its secret checked if it has one)."""
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization is not None:
            scheme, _, credentials = authorization.strip().partition(" ")
            if scheme.lower() != "basic":
                raise _TokenError("invalid_client", f"{scheme} is no client authentication")
            if secret is not None:
                raise _TokenError("invalid_request", "client_secret both in the header and in the body")
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError) as unreadable:
                raise _TokenError("invalid_client", "the Basic credentials are not base64") from unreadable
            basic_id, colon, basic_secret = decoded.partition(":")
            if not colon:
                raise _TokenError("invalid_client", "the Basic credentials lack a colon")
            # RFC 6749 2.3.1: the id and secret are form-encoded before they are joined and encoded.
            basic_id, secret = unquote_plus(basic_id), unquote_plus(basic_secret)
            if client_id is not None and client_id != basic_id:
                raise _TokenError("invalid_client", "client_id differs from the Basic credentials'")
            client_id = basic_id
        if not client_id:
            raise _TokenError("invalid_request", "no client_id")
        try:
            client: dict[str, Any] = self._cognito_idp.describe_user_pool_client(
                UserPoolId=pool_id, ClientId=client_id
            )["UserPoolClient"]
        except ClientError as unknown:
            raise _TokenError("invalid_client", f"no app client {client_id} in {pool_id}") from unknown
        expected = client.get("ClientSecret")
        if expected is None:
            if secret is not None:
                raise _TokenError("invalid_client", "the client has no secret")
        elif secret is None or not hmac.compare_digest(secret.encode(), str(expected).encode()):
            raise _TokenError("invalid_client", "wrong or missing client secret")
        return client

    def _granted_scopes(self, pool_id: str, client: Mapping[str, Any], requested: str | None) -> list[str]:
        """The custom scopes the token gets: those requested, else every one the client is allowed. A scope
        must be allowed to the client and still defined by a resource server of the pool."""
        allowed = [scope for scope in client.get("AllowedOAuthScopes", []) if "/" in scope]
        wanted = requested.split() if requested else allowed
        defined = self._defined_scopes(pool_id)
        refused = [scope for scope in wanted if scope not in allowed or scope not in defined]
        if refused or not wanted:
            raise _TokenError("invalid_scope", f"scopes {refused or 'none'} cannot be granted to the client")
        return list(dict.fromkeys(wanted))

    def _defined_scopes(self, pool_id: str) -> set[str]:
        defined: set[str] = set()
        request: dict[str, Any] = {"UserPoolId": pool_id, "MaxResults": 50}
        while True:
            page = self._cognito_idp.list_resource_servers(**request)
            for server in page["ResourceServers"]:
                defined |= {
                    f"{server['Identifier']}/{scope['ScopeName']}" for scope in server.get("Scopes", [])
                }
            if not page.get("NextToken"):
                return defined
            request["NextToken"] = page["NextToken"]

    def _access_token(self, pool_id: str, client: Mapping[str, Any], scopes: list[str]) -> dict[str, Any]:
        now = int(self._clock())
        lifetime = _access_token_seconds(client)
        claims = {
            "sub": client["ClientId"],
            "token_use": "access",
            "scope": " ".join(scopes),
            "auth_time": now,
            "iss": f"https://cognito-idp.{self._region}.amazonaws.com/{pool_id}",
            "exp": now + lifetime,
            "iat": now,
            "version": 2,
            "jti": str(uuid.uuid4()),
            "client_id": client["ClientId"],
        }
        key, kid = moto_signing_key()
        token = jwt.encode({"alg": "RS256", "kid": kid}, claims, key)
        return {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"}


def _access_token_seconds(client: Mapping[str, Any]) -> int:
    validity = client.get("AccessTokenValidity")
    if validity is None:
        return _DEFAULT_ACCESS_TOKEN_SECONDS
    unit = (client.get("TokenValidityUnits") or {}).get("AccessToken", "hours")
    return int(validity) * _UNIT_SECONDS[unit]


def _form(body: bytes) -> dict[str, str]:
    """The form's parameters; a repeated one is malformed (RFC 6749 3.2)."""
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError) as unreadable:
        raise _TokenError("invalid_request", "the body is no form") from unreadable
    repeated = sorted(name for name, values in parsed.items() if len(values) > 1)
    if repeated:
        raise _TokenError("invalid_request", f"parameters {repeated} repeated")
    return {name: values[0] for name, values in parsed.items()}


def _answer(status: int, document: Mapping[str, Any]) -> HttpResponse:
    headers = [
        ("Content-Type", "application/json;charset=UTF-8"),
        # RFC 6749 5.1: a token answer is never cached.
        ("Cache-Control", "no-store"),
        ("Pragma", "no-cache"),
    ]
    return HttpResponse(status, headers, json.dumps(document).encode())
