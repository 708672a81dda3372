"""Submitted claims reach the clearinghouse as EventBridge's API destination delivers them: one offline
runtime for the module with the stand-in clearinghouse on, claims submitted through the API, the stand-in's
view of what arrived, the clearinghouse dead-letter queue's view of what did not."""

import json
import ssl
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import pytest
from cli_harness import started_on_free_ports

from carebus.billing import claim_id_for
from carebus_client.api import ApiClient
from carebus_client.samples import billing_only_encounter
from carebus_client.waiting import wait_until
from carebus_local.api_destinations import Backoff
from carebus_local.clearinghouse import ClaimDelivery, ClearinghouseStandIn
from carebus_local.demo_users import DEMO_PASSWORD, DEMO_USERS
from carebus_local.runtime import OfflineRuntime

MAXIMUM_RETRY_ATTEMPTS = 2
WAIT_SECONDS = 30
PATIENT_FIELDS = ("id", "name", "birthDate", "insuranceMemberId")


@pytest.fixture(scope="module")
def runtime() -> Iterator[OfflineRuntime]:
    started = started_on_free_ports(
        stack_name=f"carebus-ch-{uuid.uuid4().hex[:6]}",
        retry_failed_after_seconds=0,
        batching_window_seconds=0,
        clearinghouse=True,
        api_destination_backoff=Backoff(base_seconds=1, cap_seconds=1),
        parameters={"ClearinghouseMaximumRetryAttempts": str(MAXIMUM_RETRY_ATTEMPTS)},
    )
    yield started
    started.stop()


@pytest.fixture
def standin(runtime: OfflineRuntime) -> Iterator[ClearinghouseStandIn]:
    assert runtime.clearinghouse is not None
    yield runtime.clearinghouse
    runtime.clearinghouse.fail_next(503, 0)


def submit(runtime: OfflineRuntime) -> tuple[str, dict[str, Any]]:
    """A billing encounter submitted through the API as the physician; its claim id and what was sent."""
    username, _ = DEMO_USERS["physician"]
    token = runtime.client("cognito-idp").initiate_auth(
        ClientId=runtime.stack.outputs["UserPoolClientId"],
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": DEMO_PASSWORD},
    )["AuthenticationResult"]["IdToken"]
    encounter = billing_only_encounter(datetime.now(UTC).date())
    accepted = ApiClient(runtime.stack.outputs["ApiUrl"], token).submit_encounter(
        encounter, str(uuid.uuid4())
    )
    return claim_id_for(accepted["encounterId"]), encounter


def deliveries_of(standin: ClearinghouseStandIn, claim_id: str) -> list[ClaimDelivery]:
    return [d for d in standin.deliveries() if isinstance(d.body, dict) and d.body.get("claimId") == claim_id]


def settled(runtime: OfflineRuntime) -> bool:
    """Nothing waiting or in flight on the clearinghouse target's shadow queue (retries included)."""
    assert runtime.stack is not None
    [spec] = [spec for spec in runtime.stack.rule_targets if spec.target["Id"] == "clearinghouse"]
    attributes = runtime.client("sqs").get_queue_attributes(
        QueueUrl=spec.shadow_queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return not any(int(count) for count in attributes.values())


def dead_letters(runtime: OfflineRuntime, claim_id: str) -> list[dict[str, Any]]:
    answer = runtime.client("sqs").receive_message(
        QueueUrl=runtime.stack.outputs["ClearinghouseDeadLetterQueueUrl"],
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
        VisibilityTimeout=0,
    )
    return [m for m in answer.get("Messages", []) if json.loads(m["Body"])["detail"]["claimId"] == claim_id]


def admin(runtime: OfflineRuntime, path: str, body: Any = None) -> Any:
    """The stand-in's admin endpoints, found (and trusted) through the stack's outputs as a client would."""
    outputs = runtime.stack.outputs
    request = urllib.request.Request(  # noqa: S310 - the stand-in's loopback HTTPS URL
        outputs["ClearinghouseUrl"] + path,
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=outputs["ClearinghouseCaFile"])
    with urllib.request.urlopen(request, context=context, timeout=5) as answer:  # noqa: S310
        return json.loads(answer.read())


def test_a_submitted_claim_reaches_the_clearinghouse_once_with_the_connections_key(runtime, standin):
    claim_id, _ = submit(runtime)

    [delivery] = wait_until(lambda: deliveries_of(standin, claim_id), WAIT_SECONDS, "the claim's delivery")
    wait_until(lambda: settled(runtime), WAIT_SECONDS, "the clearinghouse target to settle")

    assert len(deliveries_of(standin, claim_id)) == 1
    assert (delivery.method, delivery.status, delivery.key_matched) == ("POST", 202, True)
    headers = {name.lower(): value for name, value in delivery.headers.items()}
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert headers["user-agent"] == "Amazon/EventBridge/ApiDestinations"
    assert headers["x-api-key"] == "[redacted]"
    assert delivery.body["eventId"] == f"ClaimSubmitted/{claim_id}"
    assert delivery.body["claimId"] == claim_id
    assert delivery.body["encounterId"] == claim_id.removeprefix("clm-")
    assert (delivery.body["lineCount"], delivery.body["totalCents"], delivery.body["currency"]) == (
        1,
        12500,
        "USD",
    )
    assert set(delivery.body) == {
        "eventId",
        "claimId",
        "encounterId",
        "lineCount",
        "totalCents",
        "currency",
        "announcedAt",
    }
    assert standin.accepted()[delivery.body["eventId"]] == delivery.body


def test_a_claim_refused_with_503_is_retried_then_delivered_once(runtime, standin):
    assert admin(runtime, "/_standin/failures", {"status": 503, "count": 2}) == {
        "status": 503,
        "count": 2,
    }
    claim_id, _ = submit(runtime)

    wait_until(
        lambda: any(d.status == 202 for d in deliveries_of(standin, claim_id)),
        WAIT_SECONDS,
        "the retried claim",
    )
    wait_until(lambda: settled(runtime), WAIT_SECONDS, "the clearinghouse target to settle")

    assert [d.status for d in deliveries_of(standin, claim_id)] == [503, 503, 202]
    # Every retry carried the same body; the clearinghouse kept it once.
    [body] = {json.dumps(d.body, sort_keys=True) for d in deliveries_of(standin, claim_id)}
    assert json.loads(body) == standin.accepted()[f"ClaimSubmitted/{claim_id}"]
    assert dead_letters(runtime, claim_id) == []


def test_a_claim_refused_more_often_than_the_retry_policy_allows_goes_to_the_dead_letter_queue(
    runtime, standin
):
    standin.fail_next(503, MAXIMUM_RETRY_ATTEMPTS + 1)
    claim_id, _ = submit(runtime)

    [message] = wait_until(lambda: dead_letters(runtime, claim_id), WAIT_SECONDS, "the dead-lettered claim")

    assert [d.status for d in deliveries_of(standin, claim_id)] == [503] * (MAXIMUM_RETRY_ATTEMPTS + 1)
    assert f"ClaimSubmitted/{claim_id}" not in standin.accepted()
    attributes = {name: value["StringValue"] for name, value in message["MessageAttributes"].items()}
    assert attributes == {
        "RULE_ARN": runtime.stack.attribute("ClearinghouseRule", "Arn"),
        "TARGET_ARN": runtime.stack.attribute("ClearinghouseDestination", "Arn"),
        "ERROR_CODE": "SDK_CLIENT_ERROR",
        "ERROR_MESSAGE": "Unable to invoke ApiDestination endpoint: The endpoint answered HTTP 503.",
        "RETRY_ATTEMPTS": str(MAXIMUM_RETRY_ATTEMPTS),
        "EXHAUSTED_RETRY_CONDITION": "MaximumRetryAttempts",
    }
    event = json.loads(message["Body"])
    assert (event["source"], event["detail-type"]) == ("carebus.billing", "ClaimSubmitted")
    assert event["detail"]["eventId"] == f"ClaimSubmitted/{claim_id}"


def test_a_claim_refused_with_400_goes_to_the_dead_letter_queue_without_a_retry(runtime, standin):
    standin.fail_next(400, 1)
    claim_id, _ = submit(runtime)

    [message] = wait_until(lambda: dead_letters(runtime, claim_id), WAIT_SECONDS, "the dead-lettered claim")

    assert [d.status for d in deliveries_of(standin, claim_id)] == [400]
    attributes = {name: value["StringValue"] for name, value in message["MessageAttributes"].items()}
    assert attributes["RETRY_ATTEMPTS"] == "0"
    assert "EXHAUSTED_RETRY_CONDITION" not in attributes


def test_nothing_the_clearinghouse_received_names_the_patient_or_carries_the_key(runtime, standin):
    claim_id, encounter = submit(runtime)
    wait_until(lambda: deliveries_of(standin, claim_id), WAIT_SECONDS, "the claim's delivery")
    # And a claim the clearinghouse refused: what the dead-letter queue keeps of it.
    standin.fail_next(400, 1)
    lost_id, lost_encounter = submit(runtime)
    [message] = wait_until(lambda: dead_letters(runtime, lost_id), WAIT_SECONDS, "the dead-lettered claim")

    received = json.dumps(admin(runtime, "/_standin/deliveries"))
    dead_lettered = json.dumps(message)

    assert claim_id in received
    assert lost_id in dead_lettered
    for field in PATIENT_FIELDS:
        assert encounter["patient"][field] not in received, field
        assert lost_encounter["patient"][field] not in dead_lettered, field
    assert standin.api_key not in received
    assert standin.api_key not in dead_lettered
    assert all(standin.api_key not in json.dumps(asdict(d)) for d in standin.deliveries())


def test_a_claim_announced_again_is_kept_once_by_its_event_id(runtime, standin):
    claim_id, _ = submit(runtime)
    [first] = wait_until(lambda: deliveries_of(standin, claim_id), WAIT_SECONDS, "the claim's delivery")
    # What a billing redelivery does: the same ClaimSubmitted (same eventId) put on the bus again.
    detail = {
        name: first.body[name] for name in ("eventId", "claimId", "encounterId", "lineCount", "totalCents")
    }
    runtime.client("events").put_events(
        Entries=[
            {
                "Source": "carebus.billing",
                "DetailType": "ClaimSubmitted",
                "EventBusName": runtime.stack.outputs["EventBusName"],
                "Detail": json.dumps({"schemaVersion": 1, **detail}),
            }
        ]
    )

    def repeated() -> list[ClaimDelivery] | None:
        found = deliveries_of(standin, claim_id)
        return found if len(found) == 2 else None

    both = wait_until(repeated, WAIT_SECONDS, "the repeated delivery")

    assert [(d.status, d.duplicate) for d in both] == [(202, False), (200, True)]
    assert both[0].body["eventId"] == both[1].body["eventId"]
    assert list(standin.accepted()).count(first.body["eventId"]) == 1
