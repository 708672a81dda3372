from typing import Any

import pytest

from carebus.auth import Role, groups_from_claims, require_any
from carebus.errors import ForbiddenError


@pytest.mark.parametrize(
    ("claim", "groups"),
    [
        ("physicians", {"physicians"}),
        ("physicians,pharmacists", {"physicians", "pharmacists"}),
        ("[physicians pharmacists]", {"physicians", "pharmacists"}),
        ("[physicians, pharmacists]", {"physicians", "pharmacists"}),
        ('["physicians","pharmacists"]', {"physicians", "pharmacists"}),
        (["physicians", "pharmacists"], {"physicians", "pharmacists"}),
        ("[]", set()),
        ("", set()),
    ],
)
def test_groups_claim_is_read_in_every_shape_api_gateway_passes(claim: Any, groups: set[str]) -> None:
    assert groups_from_claims({"cognito:groups": claim}) == groups


@pytest.mark.parametrize(
    "claims", [{}, {"cognito:groups": None}, {"cognito:groups": 7}, {"groups": "physicians"}]
)
def test_absent_or_unreadable_groups_claim_grants_no_group(claims: dict[str, Any]) -> None:
    assert groups_from_claims(claims) == frozenset()


def test_member_of_any_required_role_is_allowed() -> None:
    require_any(frozenset({"pharmacists"}), Role.PHYSICIAN, Role.PHARMACIST)


@pytest.mark.parametrize("groups", [frozenset(), frozenset({"pharmacists", "admins"})])
def test_caller_without_a_required_role_is_forbidden(groups: frozenset[str]) -> None:
    with pytest.raises(ForbiddenError, match="physicians"):
        require_any(groups, Role.PHYSICIAN)


def test_role_values_are_the_cognito_group_names() -> None:
    assert (Role.PHYSICIAN, Role.PHARMACIST) == ("physicians", "pharmacists")
