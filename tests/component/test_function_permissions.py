"""Every AWS call each function makes on its sample is one its role allows (moto does not check IAM)."""

from datetime import UTC, datetime, timedelta

import pytest

from carebus_testing import (
    denied_calls,
    load_event,
    recorded_calls,
    request_sample_approval,
    set_clock,
    submit_sample,
)

# Each function with the sample event it handles, and what must happen before (the sample encounter,
# or the sample approval waiting for a decision).
SAMPLES = [
    ("IntakeFunction", "intake/submit_encounter.json", None),
    ("EncounterQueryFunction", "encounter_query/read_encounter.json", "encounter"),
    ("BillingFunction", "billing/encounter_reference.json", "encounter"),
    ("SchedulingFunction", "scheduling/encounter_reference.json", "encounter"),
    ("PrescriptionsFunction", "prescriptions/encounter_reference.json", "encounter"),
    ("ApprovalsFunction", "approvals/approve.json", "approval"),
    ("ApprovalTokenFunction", "approval_tokens/task_token.json", "approval"),
    ("PartnerClaimsFunction", "partner_claims/list_claims.json", "claim"),
    ("PartnerClaimsFunction", "partner_claims/read_claim.json", "claim"),
]
# The partner samples' request time: the sample's claim is billed an hour before it.
PARTNER_SAMPLE_TIME = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_every_function_of_the_template_has_a_sample_here(stack):
    assert {logical_id for logical_id, _, _ in SAMPLES} == set(stack.functions)


@pytest.mark.parametrize(("logical_id", "sample", "before"), SAMPLES, ids=[entry[1] for entry in SAMPLES])
def test_every_call_on_the_sample_is_allowed_by_the_functions_role(
    stack, driver, function, monkeypatch, logical_id, sample, before
):
    # A clock before the sample's follow-up window, so that scheduling's booking transaction runs.
    set_clock(function, monkeypatch)
    if before == "encounter":
        submit_sample(function)
    elif before == "approval":
        request_sample_approval(driver, function)
    elif before == "claim":
        moment = PARTNER_SAMPLE_TIME - timedelta(hours=1)
        monkeypatch.setattr(function("BillingFunction").module, "current_time", lambda: moment)
        monkeypatch.setattr(function(logical_id).module, "current_time", lambda: PARTNER_SAMPLE_TIME)
        submit_sample(function)
        assert driver.deliver("BillingQueue").failed == []

    with recorded_calls() as calls:
        response = function(logical_id).invoke(load_event(sample))

    assert response.get("statusCode", 200) < 300
    assert response.get("batchItemFailures", []) == []
    assert denied_calls(stack, logical_id, calls) == []
