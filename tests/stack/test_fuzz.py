"""Schemathesis over docs/openapi.yaml against the offline API (`carebus local up`), as a physician and as a
pharmacist: each operation on its own (the coverage phase and seeded generation, valid and invalid data),
then scenarios along the links (POST /encounters -> GET /encounters/{encounterId}; GET /approvals ->
POST /approvals/{approvalId}/decision). Bounded in examples and time for CI; the seed is fixed
(fuzzing.SEED), so a failure comes back on the next run. The verdict, and the ledger printed with it, are
tests/fuzzing.py's: no 5xx, nothing outside the description, no valid request refused.
"""

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import schemathesis
from fuzz_oracles import declared_links, function_only_rules, register_formats
from fuzzing import Fuzzer, Ledger, Role
from schemathesis import Case, GenerationMode

from carebus_client.api import ApiClient
from carebus_client.e2e.targets import E2ETarget, offline_stack
from carebus_client.samples import full_encounter
from carebus_client.stacks import Stack, sign_in
from carebus_client.users import create_user
from carebus_client.waiting import wait_until
from carebus_local.template import PROJECT_ROOT

pytestmark = pytest.mark.slow

# A draft description can be fuzzed instead: CAREBUS_FUZZ_OPENAPI=path/to/openapi.yaml.
OPENAPI_PATH = Path(os.environ.get("CAREBUS_FUZZ_OPENAPI") or PROJECT_ROOT / "docs" / "openapi.yaml")
PASSWORD = f"Fuzz-{uuid.uuid4().hex[:12]}-Aa1!"
APPROVALS_TO_DECIDE = 2  # encounters with a controlled prescription submitted before the fuzzing
# Bounds, for a 2-core CI machine: examples per operation, scenarios and their steps (counts, not seconds).
OWN_EXAMPLES = {"POST /encounters": 40}
OWN_EXAMPLES_DEFAULT = 15
OTHER_ROLE_EXAMPLES = 4
SCENARIOS, SCENARIO_STEPS = 40, 6

ENCOUNTERS = ("POST /encounters", "GET /encounters/{encounterId}")
APPROVALS = ("GET /approvals", "GET /approvals/{approvalId}", "POST /approvals/{approvalId}/decision")
# What a valid request may get, by role: its own routes answer (an unknown id: 404; a decision the approval
# no longer takes: 409; no 409 for an encounter, whose key the fuzzer never reuses for another body); the
# other role's routes answer 403.
PHYSICIAN_EXPECTS = {
    "POST /encounters": frozenset({202}),
    "GET /encounters/{encounterId}": frozenset({200, 404}),
    **dict.fromkeys(APPROVALS, frozenset({403})),
}
PHARMACIST_EXPECTS = {
    "POST /encounters": frozenset({403}),
    "GET /encounters/{encounterId}": frozenset({200, 404}),
    "GET /approvals": frozenset({200}),
    "GET /approvals/{approvalId}": frozenset({200, 404}),
    "POST /approvals/{approvalId}/decision": frozenset({200, 404, 409}),
}


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2ETarget]:
    with offline_stack(tmp_path_factory.mktemp("fuzz-stack")) as started:
        yield started


@pytest.fixture(scope="module")
def roles(offline: E2ETarget) -> dict[str, Role]:
    stack = Stack.find(offline.target)
    run = uuid.uuid4().hex[:8]
    tokens = {}
    for role, group in (("physician", "physicians"), ("pharmacist", "pharmacists")):
        user = create_user(stack, f"fuzz-{role}-{run}@carebus.test", PASSWORD, group)
        tokens[role] = sign_in(stack, user.username, PASSWORD).id_token
    return {
        "physician": Role("physician", tokens["physician"], PHYSICIAN_EXPECTS),
        "pharmacist": Role("pharmacist", tokens["pharmacist"], PHARMACIST_EXPECTS),
    }


@pytest.fixture(scope="module")
def api_url(offline: E2ETarget) -> str:
    return offline.target.api_url or Stack.find(offline.target).output("ApiUrl")


@pytest.fixture(scope="module")
def pending_approvals(api_url: str, roles: dict[str, Role]) -> list[str]:
    """Approvals to decide: a physician's encounters with a schedule II prescription, through the flow."""
    physician = ApiClient(api_url, roles["physician"].id_token)
    pharmacist = ApiClient(api_url, roles["pharmacist"].id_token)
    for _ in range(APPROVALS_TO_DECIDE):
        physician.submit_encounter(full_encounter(datetime.now(UTC).date()), str(uuid.uuid4()))
    approvals = wait_until(
        lambda: (found := pharmacist.approvals("PENDING")) and len(found) >= APPROVALS_TO_DECIDE and found,
        timeout=60,
        what=f"{APPROVALS_TO_DECIDE} pending approvals",
        interval=0.25,
    )
    return [approval["approvalId"] for approval in approvals]


@pytest.fixture(scope="module")
def description() -> schemathesis.BaseSchema:
    register_formats(datetime.now(UTC).date())
    return schemathesis.openapi.from_path(OPENAPI_PATH)


@pytest.fixture(scope="module")
def schema(description: schemathesis.BaseSchema, api_url: str) -> schemathesis.BaseSchema:
    description.config.update(base_url=api_url, request_timeout=30)
    # The ID token is the caller's, sent by the fuzzer; Schemathesis neither makes one up nor drops it.
    description.config.generation.update(with_security_parameters=False)
    # Reproductions show the Idempotency-Key sent (the ID token is left out of them all the same).
    description.config.output.sanitization.update(enabled=False)
    return description


def _owner(roles: dict[str, Role], operation: str) -> Role:
    return roles["physician"] if operation in ENCOUNTERS else roles["pharmacist"]


def _verdict(ledger: Ledger, elapsed: float) -> str:
    return f"{ledger.summary()}\n(in {elapsed:.1f} s)"


@pytest.mark.usefixtures("pending_approvals")
def test_each_operation_answers_as_described_to_each_role(schema, roles):
    ledger, started = Ledger(), time.monotonic()
    fuzzer = Fuzzer(ledger, function_only_rules(schema.raw_schema))
    for result in schema.get_all_operations():
        operation = result.ok()
        owner = _owner(roles, operation.label)
        fuzzer.coverage(operation, owner, [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
        examples = OWN_EXAMPLES.get(operation.label, OWN_EXAMPLES_DEFAULT)
        fuzzer.fuzz(operation, owner, GenerationMode.POSITIVE, examples)
        fuzzer.fuzz(operation, owner, GenerationMode.NEGATIVE, max(examples // 2, 1))
        other = next(role for role in roles.values() if role is not owner)
        fuzzer.fuzz(operation, other, GenerationMode.POSITIVE, OTHER_ROLE_EXAMPLES)
    verdict = _verdict(ledger, time.monotonic() - started)
    print(verdict)

    if ledger.findings:
        pytest.fail(verdict, pytrace=False)


def test_the_description_links_what_a_client_does_next(description):
    links = {(source, status, target) for source, status, target, _ in declared_links(description.raw_schema)}

    assert ("POST /encounters", "202", "GET /encounters/{encounterId}") in links, sorted(links)
    assert ("GET /approvals", "200", "POST /approvals/{approvalId}/decision") in links, sorted(links)


@pytest.mark.usefixtures("pending_approvals")
def test_scenarios_along_the_links_answer_as_described(schema, roles):
    ledger, started = Ledger(), time.monotonic()
    fuzzer = Fuzzer(ledger, function_only_rules(schema.raw_schema))

    def role_of(case: Case) -> Role:
        return _owner(roles, case.operation.label)

    fuzzer.stateful(schema, role_of, SCENARIOS, SCENARIO_STEPS)
    verdict = _verdict(ledger, time.monotonic() - started)
    print(verdict)

    if ledger.findings:
        pytest.fail(verdict, pytrace=False)
    # The scenarios got where the links lead: an encounter read back, a decision taken.
    assert ledger.answered("GET /encounters/{encounterId}", 200), verdict
    assert ledger.answered("POST /approvals/{approvalId}/decision", 200), verdict
