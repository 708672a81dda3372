"""The fan-out as template.yaml wires it: what each queue receives for which encounter."""

import copy
import json
from itertools import product

import boto3
import pytest
from moto import mock_aws

from carebus.messages import reference_body, routing_attributes
from carebus.models import EncounterRequest
from carebus_local.provision import Provisioner
from carebus_local.template import translate

WORK_QUEUES = ("BillingQueue", "SchedulingQueue", "PrescriptionsQueue")
ENCOUNTER_ID = "8a6e0f53-2b1d-4c7e-9f30-5e4d3c2b1a00"


def encounter(procedures: int, follow_up: bool, prescriptions: int) -> EncounterRequest:
    return EncounterRequest.model_validate(
        {
            "patient": {
                "id": "p-1",
                "name": "Fan Out",
                "birthDate": "1970-01-01",
                "insuranceMemberId": "M-1",
            },
            "practitionerNpi": "1234567893",
            "encounterDate": "2026-11-02",
            "encounterType": "OFFICE",
            "diagnoses": [{"system": "ICD-10-CM", "code": "J02.9"}],
            "procedures": [{"system": "CPT", "code": "99213", "units": 1, "chargeCents": 100}] * procedures,
            "followUp": {"earliest": "2026-11-16", "latest": "2026-11-20", "visitType": "OFFICE"}
            if follow_up
            else None,
            "prescriptions": [{"rxnormCode": "308182", "drug": "Amoxicillin", "quantity": 1, "refills": 0}]
            * prescriptions,
        }
    )


def publish(stack, request: EncounterRequest) -> None:
    boto3.client("sns").publish(
        TopicArn=stack.outputs["EncounterTopicArn"],
        Message=reference_body(ENCOUNTER_ID),
        MessageAttributes=routing_attributes(ENCOUNTER_ID, request),
    )


@pytest.mark.parametrize(
    ("procedures", "follow_up", "prescriptions"), list(product((0, 2), (False, True), (0, 1)))
)
def test_each_queue_receives_exactly_the_encounters_it_acts_on(
    stack, driver, procedures, follow_up, prescriptions
):
    publish(stack, encounter(procedures, follow_up, prescriptions))

    received = {queue: driver.depth(queue) for queue in WORK_QUEUES}
    assert received == {
        "BillingQueue": int(procedures > 0),
        "SchedulingQueue": int(follow_up),
        "PrescriptionsQueue": int(prescriptions > 0),
    }


def test_queues_receive_the_raw_reference_with_its_routing_attributes(stack, driver):
    publish(stack, encounter(2, True, 1))

    for queue in WORK_QUEUES:
        [message] = driver.messages(queue)
        assert json.loads(message["Body"]) == {"schemaVersion": 1, "encounterId": ENCOUNTER_ID}
        assert message["MessageAttributes"]["procedureCount"]["StringValue"] == "2"


def test_routing_follows_the_template_not_a_copy_of_it(sam_template):
    """Route billing on follow-ups in a copy of the template: the provisioned fan-out changes with it."""
    changed = copy.deepcopy(sam_template)
    changed["Resources"]["BillingSubscription"]["Properties"]["FilterPolicy"] = {
        "followUpRequested": ["true"]
    }
    with mock_aws():
        stack = Provisioner(translate(changed), changed).provision()
        sqs = boto3.client("sqs")

        def billing_depth() -> str:
            return sqs.get_queue_attributes(
                QueueUrl=stack.ref("BillingQueue"), AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]

        publish(stack, encounter(procedures=2, follow_up=False, prescriptions=0))
        after_procedures_only = billing_depth()
        publish(stack, encounter(procedures=0, follow_up=True, prescriptions=0))
        after_follow_up_only = billing_depth()
    assert (after_procedures_only, after_follow_up_only) == ("0", "1")
