"""API Gateway's Cognito user pool authorizer, offline: tokens checked against the pool's JWKS.

A method without OAuth scopes takes ID tokens only; a method with scopes takes access tokens only, and only
those that claim at least one of its scopes (API Gateway's rule; anything else is 401 Unauthorized).
"""

import json
import re
import time
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from botocore.client import BaseClient
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

JwksFetcher = Callable[[str], dict[str, Any]]

# Java's Date.toString and the access-log time format speak English whatever the locale.
_WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_BEARER_PREFIX: Final = re.compile(r"^bearer\s+", re.IGNORECASE)
TOKEN_EXPIRED_MESSAGE: Final = "The incoming token has expired"  # noqa: S105 - a message, not a secret


class Unauthorized(Exception):
    """The Cognito authorizer refuses the token; message is what API Gateway says in its 401."""

    def __init__(self, message: str = "Unauthorized") -> None:
        super().__init__(message)
        self.message = message


def fetch_jwks_over_http(url: str) -> dict[str, Any]:
    """A user pool's JSON Web Key Set, read from the endpoint that serves it."""
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - the runtime's own moto endpoint
        return json.load(answer)


class CognitoVerifier:
    """Checks Cognito tokens as API Gateway's Cognito user pool authorizer does."""

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

    def verify(
        self, authorization: str | None, provider_arns: Sequence[str], scopes: Sequence[str] = ()
    ) -> dict[str, str]:
        """The token's claims as API Gateway passes them to the function; Unauthorized if it would refuse.
        scopes: the method's OAuth scopes; none means the method takes ID tokens."""
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
        if claims.get("token_use") != ("access" if scopes else "id"):
            raise Unauthorized
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] <= self._clock():
            raise Unauthorized(TOKEN_EXPIRED_MESSAGE)
        if scopes:
            granted = claims.get("scope")
            if not isinstance(granted, str) or not set(granted.split()) & set(scopes):
                raise Unauthorized
        # An ID token names its app client as the audience, an access token in client_id.
        client = claims.get("client_id" if scopes else "aud")
        if not isinstance(client, str) or client not in self._client_ids(pool_id):
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
        return ",".join(as_text(item) for item in value)
    return as_text(value)


def as_text(value: Any) -> str:
    """A string as it is, anything else as its JSON text (true, 42, null)."""
    return value if isinstance(value, str) else json.dumps(value)


def _java_date(epoch_seconds: float) -> str:
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return (
        f"{_WEEKDAYS[moment.weekday()]} {MONTHS[moment.month - 1]} {moment.day:02d} "
        f"{moment:%H:%M:%S} UTC {moment.year}"
    )
