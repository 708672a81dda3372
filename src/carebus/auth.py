"""Role checks on the caller's Cognito groups, read exactly as Cognito listed them.

A role is granted only by a group whose name is exactly the role's value. Cognito group names may contain
commas, brackets and quotes, so a group named "trainee,pharmacists" must not make its members pharmacists.

Where the groups are read from, best first:

1. The ID token in the Authorization header. The REST API's Cognito authorizer flattens the list claim into
   one string in requestContext.authorizer.claims ("a,b" or "[a b]"), and from that string alone one group
   named "trainee,pharmacists" cannot be told from two groups. The token still holds the JSON list. On AWS
   the token is always there: the header is the authorizer's identity source, and API Gateway passes the
   request's headers on to the function.
2. A claim that is already a list (HTTP API JWT authorizers, tests): its entries as they are.
3. Otherwise (a hand-written event without a token, such as the samples in events/) the flattened string,
   which grants a role only when the whole string is that role's group name. A string naming several groups
   is ambiguous, so it grants nothing: a physician who is also a pharmacist gets neither role this way, and
   gets both through the token.
"""

import base64
import json
import re
from collections.abc import Mapping, Set
from enum import StrEnum
from typing import Any, Final

from carebus.errors import ForbiddenError

GROUPS_CLAIM: Final = "cognito:groups"
_AUTHORIZATION: Final = "authorization"
_BEARER_PREFIX: Final = re.compile(r"^bearer\s+", re.IGNORECASE)
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
# The token must be the one whose claims the authorizer passed: the same subject, and where the verified
# claims name them, the same token use, issuer, audience and token id (Cognito gives each token its own jti).
_SAME_TOKEN_CLAIMS: Final = ("token_use", "iss", "aud", "jti")


class Role(StrEnum):
    """A Cognito group that grants a role."""

    PHYSICIAN = "physicians"
    PHARMACIST = "pharmacists"


def groups_from_claims(
    claims: Mapping[str, Any],
    headers: Mapping[str, Any] | None = None,
    multi_value_headers: Mapping[str, Any] | None = None,
) -> frozenset[Role]:
    """The roles the caller's Cognito groups grant, each only by a group named exactly as the role.

    claims are the authorizer's (requestContext.authorizer.claims); headers and multi_value_headers are the
    proxy event's, for the ID token. Nothing here raises: whatever cannot be read grants nothing."""
    token_groups = _token_groups(claims, _sole_authorization(headers, multi_value_headers))
    if token_groups is not None:
        names: Set[object] = token_groups
    else:
        raw = claims.get(GROUPS_CLAIM)
        if isinstance(raw, list | tuple):
            names = frozenset(name for name in raw if isinstance(name, str))
        elif isinstance(raw, str):
            # The whole string, never split or stripped: any separator in it means it is not one role's
            # group name (it may be one group named with commas or brackets, or several groups).
            names = frozenset({raw})
        else:
            names = frozenset()
    return frozenset(role for role in Role if role.value in names)


def require_any(groups: Set[str], *roles: Role) -> None:
    """Raise ForbiddenError unless the caller belongs to at least one of the roles."""
    if groups.isdisjoint(roles):
        raise ForbiddenError(f"requires one of the roles: {', '.join(sorted(roles))}")


def _sole_authorization(*header_maps: Mapping[str, Any] | None) -> str | None:
    """The request's Authorization header if it carried exactly one value. With several, which one the
    authorizer checked is unknown, and an unchecked one must not be read as if it had been."""
    values: set[str] = set()
    for header_map in header_maps:
        if not isinstance(header_map, Mapping):
            continue
        for name, value in header_map.items():
            if isinstance(name, str) and name.lower() == _AUTHORIZATION:
                items = value if isinstance(value, list) else [value]
                values.update(item for item in items if isinstance(item, str) and item)
    return next(iter(values)) if len(values) == 1 else None


def _token_groups(claims: Mapping[str, Any], authorization: str | None) -> frozenset[str] | None:
    """The groups the ID token lists, or None when there is no token that is the one the claims came from.

    The signature is not checked here: API Gateway's Cognito authorizer has checked it (signature, issuer,
    audience, expiry) before the function runs, and refuses the request otherwise. Comparing the token with
    the verified claims makes sure this is that token. A token that is it but lists its groups in any other
    shape than a list of strings grants nothing, rather than falling back to the ambiguous string."""
    payload = _token_payload(authorization)
    if payload is None or not _same_token(payload, claims):
        return None
    groups = payload.get(GROUPS_CLAIM, [])  # Cognito leaves the claim out for a user in no group
    if not isinstance(groups, list) or not all(isinstance(name, str) for name in groups):
        return frozenset()
    return frozenset(groups)


def _token_payload(authorization: str | None) -> dict[str, Any] | None:
    """The claims in a compact JWT ("Bearer <jwt>" or the bare jwt), or None if it is not one."""
    if authorization is None:
        return None
    parts = _BEARER_PREFIX.sub("", authorization.strip()).split(".")
    if len(parts) != 3 or not _BASE64URL.fullmatch(parts[1]):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    # Bad base64 (binascii.Error is a ValueError), not UTF-8, not JSON, or nested too deeply to parse.
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def _same_token(payload: Mapping[str, Any], claims: Mapping[str, Any]) -> bool:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or payload.get("sub") != subject:
        return False
    return all(payload.get(name) == claims[name] for name in _SAME_TOKEN_CLAIMS if name in claims)
