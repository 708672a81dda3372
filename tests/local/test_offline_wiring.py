"""The offline runtime's own rules: what it refuses, and how it shapes rule targets' input."""

import copy
import json

import pytest
from moto import mock_aws

from carebus_local.delivery import target_input
from carebus_local.environments import ExecutionEnvironments
from carebus_local.provision import Provisioner, TemplateRuleError
from carebus_local.stack import UnsupportedResourceError
from carebus_local.template import translate
from carebus_testing import load_event, recorded_calls, redelivered, submit_sample

EVENT = {
    "version": "0",
    "id": "0b5c6a1e-0000-4000-8000-000000000001",
    "detail-type": "PrescriptionApprovalRequested",
    "source": "carebus.prescriptions",
    "time": "2026-11-22T12:00:00Z",
    "detail": {"schemaVersion": 1, "encounterId": "e-1", "prescriptionId": "rx-e-1-2", "deaSchedule": "II"},
}


def test_a_resource_type_it_cannot_create_is_refused_by_name(sam_template):
    changed = copy.deepcopy(sam_template)
    changed["Resources"]["ReportsBucket"] = {"Type": "AWS::Glue::Database", "Properties": {}}

    with mock_aws(), pytest.raises(UnsupportedResourceError, match=r"AWS::Glue::Database"):
        Provisioner(translate(changed), changed).provision()


@pytest.mark.parametrize(
    ("parameters", "refused"),
    [
        ({"ClearinghouseEndpoint": "https://clearinghouse.example/claims"}, True),
        (
            {
                "ClearinghouseEndpoint": "https://clearinghouse.example/claims",
                "ClearinghouseApiKeySecret": "k",
            },
            False,
        ),
        ({}, False),
    ],
    ids=["endpoint without its key", "endpoint and key", "neither"],
)
def test_the_templates_rules_are_checked_before_anything_is_created(cfn, sam_template, parameters, refused):
    provisioner = Provisioner(cfn, sam_template, parameters=parameters, endpoint_url="http://127.0.0.1:9")
    with recorded_calls() as calls:
        if refused:
            with pytest.raises(
                TemplateRuleError, match=r"ClearinghouseNeedsAnApiKey.*ClearinghouseApiKeySecret"
            ):
                provisioner.check_rules()
        else:
            provisioner.check_rules()
    assert calls == []


def test_the_approval_rule_hands_the_workflow_ids_and_the_request_time_only(cfn):
    [target] = cfn["Resources"]["PrescriptionApprovalRule"]["Properties"]["Targets"]

    assert json.loads(target_input(EVENT, target)) == {
        "encounterId": "e-1",
        "prescriptionId": "rx-e-1-2",
        "requestedAt": "2026-11-22T12:00:00Z",
    }


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ({"InputPath": "$.detail"}, EVENT["detail"]),
        ({"Input": '{"fixed": true}'}, {"fixed": True}),
        ({}, EVENT),
        (
            {"InputTransformer": {"InputPathsMap": {"d": "$.detail"}, "InputTemplate": '{"wrapped": <d>}'}},
            {"wrapped": EVENT["detail"]},
        ),
    ],
    ids=["input-path", "constant-input", "whole-event", "transformer-with-an-object"],
)
def test_targets_receive_what_eventbridge_would_hand_them(target, expected):
    assert (
        json.loads(target_input(EVENT, {"Arn": "arn:aws:states:us-east-1:1:stateMachine:x", **target}))
        == expected
    )


def test_a_duplicate_that_reaches_another_execution_environment_is_still_answered_from_its_idempotency_record(
    stack, function
):
    submit_sample(function)
    environments = ExecutionEnvironments(
        stack.functions["BillingFunction"], stack.function_environment("BillingFunction"), concurrency=2
    )
    sample = load_event("billing/encounter_reference.json")
    first, second = (environments._environment() for _ in range(2))  # two environments, both busy

    assert first.invoke(sample) == {"batchItemFailures": []}
    with recorded_calls() as calls:
        assert second.invoke(redelivered(sample)) == {"batchItemFailures": []}

    assert first.module is not second.module
    touched = {
        (params.get("TableName") or ",".join(params.get("RequestItems", {})), operation)
        for service, operation, params in calls
        if service == "dynamodb"
    }
    # The batch's encounters are read before any record is processed; then the idempotency record
    # answered, and no claim was written again.
    assert touched == {
        (stack.ref("EncountersTable"), "BatchGetItem"),
        (stack.ref("IdempotencyTable"), "PutItem"),
    }
