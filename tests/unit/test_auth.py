import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carebus.auth import Role, groups_from_claims, require_any
from carebus.errors import ForbiddenError

SUB = "3d7b9e21-6c4a-4b8f-9e05-7a1c2d3e4f50"
ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_SAMPLE"
JTI = "7f0c1e2d-3b4a-4c5d-8e6f-9a0b1c2d3e4f"
ALL_ROLES = frozenset(Role)
# Legal in a Cognito group name ([\p{L}\p{M}\p{S}\p{N}\p{P}]+, up to 128 characters; no whitespace).
group_names = st.text(st.characters(categories=["L", "M", "S", "N", "P"]), min_size=1, max_size=128)
SEPARATORS = ",[]\"'"
names_with_a_separator = st.builds(
    lambda before, separator, after: before + separator + after,
    st.text(st.characters(categories=["L", "M", "S", "N", "P"]), max_size=20),
    st.sampled_from(SEPARATORS),
    st.text(st.characters(categories=["L", "M", "S", "N", "P"]), max_size=20),
)
# Names that are, or look like, the roles' groups: the role's name with punctuation around or inside it.
lookalikes = st.one_of(
    names_with_a_separator,
    st.sampled_from([*Role, "trainee"]).flatmap(
        lambda role: st.sampled_from(
            [f"{role},pharmacists", f"trainee,{role}", f"[{role}]", f'"{role}"', f"'{role}'", f"{role},"]
        )
    ),
)


def segment(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def id_token(groups: Any = None, **changes: Any) -> str:
    """A Cognito-shaped ID token. Its signature is nothing: the function never checks one, because API
    Gateway's authorizer already did."""
    payload: dict[str, Any] = {"sub": SUB, "token_use": "id", "iss": ISSUER, "jti": JTI, **changes}
    if groups is not None:
        payload["cognito:groups"] = groups
    return f"{segment({'alg': 'RS256', 'kid': 'k'})}.{segment(payload)}.c2lnbmF0dXJl"


def verified_claims(flattened: Any = None, **changes: Any) -> dict[str, Any]:
    """requestContext.authorizer.claims for the token's user, groups flattened as the REST API does."""
    claims: dict[str, Any] = {"sub": SUB, "token_use": "id", "iss": ISSUER, "jti": JTI, **changes}
    if flattened is not None:
        claims["cognito:groups"] = flattened
    return claims


def roles(claims: dict[str, Any], token: str | None = None) -> frozenset[Role]:
    return groups_from_claims(claims, None if token is None else {"Authorization": token})


# ----- the ID token: exact names ----------------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["", "Bearer ", "bearer  "])
def test_the_tokens_groups_grant_their_roles_exactly(prefix: str) -> None:
    token = prefix + id_token(["physicians", "pharmacists", "billing-clerks"])

    assert roles(verified_claims("billing-clerks,pharmacists,physicians"), token) == ALL_ROLES


def test_one_group_named_trainee_comma_pharmacists_in_the_token_grants_nothing() -> None:
    # Flattened, it reads exactly like two groups; the token says it is one.
    token = id_token(["trainee,pharmacists"])

    assert roles(verified_claims("trainee,pharmacists"), token) == frozenset()


@given(st.lists(st.one_of(group_names, lookalikes), unique=True, max_size=6), st.text())
def test_the_token_grants_exactly_the_roles_it_names_whatever_the_claim_says(
    groups: list[str], flattened: str
) -> None:
    token = id_token(groups)

    assert roles(verified_claims(flattened), token) == {role for role in Role if role.value in groups}


@given(st.lists(lookalikes, max_size=6))
def test_no_group_name_with_a_separator_grants_a_role_by_token_or_list_claim(groups: list[str]) -> None:
    assert roles(verified_claims(",".join(groups)), id_token(groups)) == frozenset()
    assert roles(verified_claims(groups)) == frozenset()


def test_the_token_of_a_user_in_no_group_grants_nothing_even_if_the_claim_names_a_role() -> None:
    assert roles(verified_claims("pharmacists"), id_token()) == frozenset()


@pytest.mark.parametrize("groups", ["pharmacists", {"pharmacists": True}, ["pharmacists", 7], 7, None])
def test_a_token_listing_its_groups_in_another_shape_grants_nothing(groups: Any) -> None:
    token = id_token(**{"cognito:groups": groups})

    assert roles(verified_claims("pharmacists"), token) == frozenset()


# ----- which token: the one the authorizer verified -----------------------------------------------------
@pytest.mark.parametrize(
    "other",
    [
        {"sub": "9a1e4c55-2b7f-4f0e-8a63-5d2c1b0e9f77"},
        {"token_use": "access"},
        {"iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_OTHER"},
        {"jti": "another-token"},
        {"aud": "anotherclient"},
    ],
    ids=["sub", "token_use", "iss", "jti", "aud"],
)
def test_a_token_not_the_verified_one_is_ignored(other: dict[str, str]) -> None:
    claims = verified_claims("physicians", aud="sampleclient0000000000000")
    token = id_token(["pharmacists"], **{"aud": "sampleclient0000000000000", **other})

    assert roles(claims, token) == {Role.PHYSICIAN}


@given(st.lists(st.sampled_from(list(Role)), unique=True), st.sampled_from([*Role, "", "a,b"]))
def test_a_token_of_another_subject_never_overrides_the_claim(named: list[Role], flattened: str) -> None:
    token = id_token(named, sub="someone-else")

    assert roles(verified_claims(flattened), token) == roles(verified_claims(flattened))


@pytest.mark.parametrize("claims", [{"cognito:groups": "trainee"}, {"sub": "", "cognito:groups": "trainee"}])
def test_claims_without_a_subject_take_no_groups_from_a_token(claims: dict[str, Any]) -> None:
    assert roles(claims, id_token(["pharmacists"], sub="")) == frozenset()
    assert roles(claims, id_token(["pharmacists"], sub=None)) == frozenset()


def test_several_authorization_values_are_not_trusted_as_the_verified_one() -> None:
    # Which of them the authorizer checked is not known, so none of them is read.
    verified, other = id_token(["physicians"]), id_token(["pharmacists"])
    claims = verified_claims("trainee")

    assert groups_from_claims(claims, {"Authorization": other}, {"Authorization": [verified, other]}) == set()
    assert groups_from_claims(claims, {"authorization": verified, "Authorization": other}) == set()
    assert groups_from_claims(claims, {"Authorization": other}, {"authorization": [verified]}) == set()
    # The same value in both maps (as API Gateway passes one header) is one value.
    one_header = groups_from_claims(claims, {"Authorization": other}, {"Authorization": [other]})
    assert one_header == {Role.PHARMACIST}


@pytest.mark.parametrize(
    "authorization",
    [
        "let-me-in",
        "Bearer ",
        "a.b",
        "a.b.c.d",
        "eyJhbGciOiJSUzI1NiJ9.not*base64.sig",
        "eyJhbGciOiJSUzI1NiJ9.e.sig",  # one base64 character is no whole byte
        f"h.{base64.urlsafe_b64encode(b'not json').decode()}.s",
        f"h.{base64.urlsafe_b64encode(bytes([0xFF, 0xFE, 0x00])).decode()}.s",
        f"h.{segment(['pharmacists'])}.s",
        f"h.{segment('pharmacists')}.s",
        f"h.{base64.urlsafe_b64encode(b'[' * 100_000).decode()}.s",
    ],
)
def test_a_malformed_token_falls_back_to_the_claim(authorization: str) -> None:
    assert roles(verified_claims("pharmacists"), authorization) == {Role.PHARMACIST}
    assert roles(verified_claims("trainee,pharmacists"), authorization) == frozenset()


@given(st.text(), st.one_of(st.text(), st.lists(st.text())))
def test_any_header_and_claim_grant_at_most_the_claims_exact_role_and_never_raise(
    authorization: str, flattened: str | list[str]
) -> None:
    granted = roles(verified_claims(flattened), authorization)

    exact = set(flattened) if isinstance(flattened, list) else {flattened}
    assert granted <= {role for role in Role if role.value in exact}


# ----- no token: the claim itself ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("claim", "granted"),
    [
        ("physicians", {Role.PHYSICIAN}),
        ("pharmacists", {Role.PHARMACIST}),
        (["physicians", "pharmacists"], ALL_ROLES),
        (("pharmacists",), {Role.PHARMACIST}),
        (["pharmacists", 7, None], {Role.PHARMACIST}),
        ("billing-clerks", set()),
        # One group named "trainee,pharmacists", or two groups: from the string alone, no telling.
        ("trainee,pharmacists", set()),
        # A genuine physician and pharmacist gets neither role without the token (on AWS it has one).
        ("physicians,pharmacists", set()),
        ("[physicians pharmacists]", set()),
        # Brackets are legal in a name: "[pharmacists]" may be one group named so, and is not unwrapped.
        ("[pharmacists]", set()),
        ('["pharmacists"]', set()),
        (" pharmacists", set()),
        ("Pharmacists", set()),
        (["pharmacists "], set()),
        (["trainee,pharmacists"], set()),
        ("[]", set()),
        ("", set()),
    ],
)
def test_without_a_token_only_a_whole_group_name_grants_its_role(claim: Any, granted: set[Role]) -> None:
    assert roles(verified_claims(claim)) == granted


@given(st.lists(group_names, min_size=2, max_size=5, unique=True))
def test_without_a_token_a_flattened_list_of_several_groups_grants_nothing(groups: list[str]) -> None:
    for flattened in (",".join(groups), f"[{' '.join(groups)}]"):
        assert roles(verified_claims(flattened)) == frozenset()


@given(st.one_of(group_names, lookalikes))
def test_without_a_token_a_name_grants_a_role_only_if_it_is_the_roles_name(name: str) -> None:
    assert roles(verified_claims(name)) == {role for role in Role if role.value == name}


@pytest.mark.parametrize(
    "claims", [{}, {"cognito:groups": None}, {"cognito:groups": 7}, {"groups": "physicians"}]
)
def test_absent_or_unreadable_groups_claim_grants_no_role(claims: dict[str, Any]) -> None:
    assert groups_from_claims(claims) == frozenset()


# ----- checks --------------------------------------------------------------------------------------------
def test_member_of_any_required_role_is_allowed() -> None:
    require_any(frozenset({Role.PHARMACIST}), Role.PHYSICIAN, Role.PHARMACIST)


@pytest.mark.parametrize("groups", [frozenset(), frozenset({"pharmacists", "admins"})])
def test_caller_without_a_required_role_is_forbidden(groups: frozenset[str]) -> None:
    with pytest.raises(ForbiddenError, match="physicians"):
        require_any(groups, Role.PHYSICIAN)


def test_role_values_are_the_cognito_group_names() -> None:
    assert (Role.PHYSICIAN, Role.PHARMACIST) == ("physicians", "pharmacists")
