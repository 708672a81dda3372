"""The partner API, against whichever stack the suite was given: a claim read as the clearinghouse reads
it (client credentials, the scope, its API key), never without both, and never with patient data."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from carebus_client.api import ApiClient
from carebus_client.e2e.conftest import eventually
from carebus_client.partner import (
    PartnerCredentials,
    access_token,
    call_partner_api,
    claim_path,
    claims_path,
    partner_credentials,
    request_token,
)
from carebus_client.samples import billing_only_encounter
from carebus_client.stacks import Stack

from .test_e2e import today


@pytest.fixture(scope="module")
def partner(stack: Stack) -> PartnerCredentials:
    return partner_credentials(stack)


@pytest.fixture(scope="module")
def token(partner: PartnerCredentials) -> str:
    return access_token(partner)


@pytest.fixture(scope="module")
def claimed(physician: ApiClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """A billing-only encounter as submitted, and its claim once billing wrote it."""
    body = billing_only_encounter(today())
    answer = physician.submit_encounter(body, f"e2e-partner-{body['patient']['id']}")
    claim = eventually(lambda: physician.encounter(answer["encounterId"])["claim"], "the claim")
    return body, claim


def test_the_token_endpoint_grants_the_partner_scope(partner: PartnerCredentials):
    answer = request_token(partner)

    assert answer.status == 200, answer.body
    assert answer.body["token_type"] == "Bearer"  # noqa: S105 - OAuth's token type, not a secret
    assert answer.body["expires_in"] > 0


def test_the_clearinghouse_reads_a_claim_without_patient_data(partner, token, claimed):
    body, claim = claimed
    answer = call_partner_api(partner, claim_path(claim["claimId"]), token=token)

    assert answer.status == 200, answer.body
    assert answer.body["claimId"] == claim["claimId"]
    assert answer.body["totalCents"] == claim["totalCents"]
    text = json.dumps(answer.body)
    for value in body["patient"].values():
        assert value not in text


def test_the_clearinghouse_finds_the_claim_among_those_submitted_since(partner, token, claimed):
    _, claim = claimed
    since = datetime.now(UTC) - timedelta(hours=1)
    path = claims_path(f"{since:%Y-%m-%dT%H:%M:%S}Z", limit=100)

    def listed() -> bool:
        answer = call_partner_api(partner, path, token=token)
        assert answer.status == 200, answer.body
        return claim["claimId"] in {listed["claimId"] for listed in answer.body["claims"]}

    assert eventually(listed, "the claim in GET /claims")


def test_the_api_key_alone_is_refused(partner, claimed):
    _, claim = claimed
    answer = call_partner_api(partner, claim_path(claim["claimId"]), token=None)

    assert answer.status == 401


def test_the_token_alone_is_refused(partner, token, claimed):
    _, claim = claimed
    answer = call_partner_api(partner, claim_path(claim["claimId"]), token=token, send_key=False)

    assert answer.status == 403
