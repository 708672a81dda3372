"""Role checks on Cognito group claims as API Gateway passes them to the function."""

import re
from collections.abc import Mapping, Set
from enum import StrEnum
from typing import Any, Final

from carebus.errors import ForbiddenError

GROUPS_CLAIM: Final = "cognito:groups"
# REST API authorizers flatten the list claim into "a,b" or "[a b]" depending on the path it took.
_GROUP_SEPARATORS: Final = re.compile(r"[\s,\[\]\"']+")


class Role(StrEnum):
    """A Cognito group that grants a role."""

    PHYSICIAN = "physicians"
    PHARMACIST = "pharmacists"


def groups_from_claims(claims: Mapping[str, Any]) -> frozenset[str]:
    """The caller's Cognito groups; an absent or unreadable claim grants none."""
    raw = claims.get(GROUPS_CLAIM)
    if isinstance(raw, str):
        names: list[Any] = _GROUP_SEPARATORS.split(raw)
    elif isinstance(raw, list | tuple):
        names = list(raw)
    else:
        return frozenset()
    return frozenset(name.strip() for name in names if isinstance(name, str) and name.strip())


def require_any(groups: Set[str], *roles: Role) -> None:
    """Raise ForbiddenError unless the caller belongs to at least one of the roles."""
    if groups.isdisjoint(roles):
        raise ForbiddenError(f"requires one of the roles: {', '.join(sorted(roles))}")
