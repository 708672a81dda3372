"""Every AWS call each function makes on its sample is one its role allows (moto does not check IAM)."""

import pytest

from carebus_testing import denied_calls, load_event, recorded_calls, set_clock

SAMPLE_INTAKE = "intake/submit_encounter.json"
# Each function with the sample event it handles; the encounter is submitted first where it needs one.
SAMPLES = [
    ("IntakeFunction", SAMPLE_INTAKE),
    ("EncounterQueryFunction", "encounter_query/read_encounter.json"),
    ("BillingFunction", "billing/encounter_reference.json"),
    ("SchedulingFunction", "scheduling/encounter_reference.json"),
    ("PrescriptionsFunction", "prescriptions/encounter_reference.json"),
]


def test_every_function_of_the_template_has_a_sample_here(stack):
    assert {logical_id for logical_id, _ in SAMPLES} == set(stack.functions)


@pytest.mark.parametrize(("logical_id", "sample"), SAMPLES, ids=[logical_id for logical_id, _ in SAMPLES])
def test_every_call_on_the_sample_is_allowed_by_the_functions_role(
    stack, function, monkeypatch, logical_id, sample
):
    if logical_id != "IntakeFunction":
        function("IntakeFunction").invoke(load_event(SAMPLE_INTAKE))
    handler = function(logical_id)
    if logical_id == "SchedulingFunction":
        # A clock before the sample's follow-up window, so that the booking path (the transaction) runs.
        set_clock(function, monkeypatch)

    with recorded_calls() as calls:
        response = handler.invoke(load_event(sample))

    assert response.get("statusCode", 200) < 300
    assert response.get("batchItemFailures", []) == []
    assert denied_calls(stack, logical_id, calls) == []
