"""The partner integration through one offline runtime with the stand-in clearinghouse on: submitted claims
reach it as EventBridge's API destination delivers them (the stand-in's view of what arrived, the dead-letter
queue's of what did not), the partner API is reached with a token and a key over real HTTP, and the partner's
CLI commands work against it."""

import base64
import json
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import pytest
from cli_harness import STACK, printed, started_on_free_ports

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
        stack_name=STACK,  # the CLI tests below find it by this name
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


# ----- the partner API over HTTP: the token endpoint at PartnerTokenUrl, the API at PartnerApiUrl -------
def exchange(
    method: str, url: str, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310 - local
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            status, answer_headers, raw = answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, raw = error.code, dict(error.headers), error.read()
    return status, answer_headers, json.loads(raw) if raw else None


def test_a_partner_gets_a_token_and_calls_the_partner_api_with_its_key(runtime):
    outputs = {
        output["OutputKey"]: output["OutputValue"]
        for output in runtime.client("cloudformation").describe_stacks(StackName=runtime.stack.name)[
            "Stacks"
        ][0]["Outputs"]
    }
    client_id = outputs["ClearinghouseClientId"]
    secret = runtime.client("cognito-idp").describe_user_pool_client(
        UserPoolId=outputs["UserPoolId"], ClientId=client_id
    )["UserPoolClient"]["ClientSecret"]
    key = runtime.client("apigateway").get_api_key(
        apiKey=outputs["ClearinghouseApiKeyId"], includeValue=True
    )["value"]
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    physician, _ = DEMO_USERS["physician"]
    staff_id_token = runtime.client("cognito-idp").initiate_auth(
        ClientId=outputs["UserPoolClientId"],
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": physician, "PASSWORD": DEMO_PASSWORD},
    )["AuthenticationResult"]["IdToken"]

    token_status, _, token_answer = exchange(
        "POST",
        outputs["PartnerTokenUrl"],
        {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Basic {basic}"},
        f"grant_type=client_credentials&scope={outputs['PartnerScope']}".encode(),
    )
    bearer = {"Authorization": f"Bearer {token_answer['access_token']}"}
    before = runtime.invocations["PartnerClaimsFunction"]
    reached, _, _ = exchange(
        "GET", f"{outputs['PartnerApiUrl']}/claims/c-{uuid.uuid4()}", {**bearer, "x-api-key": key}
    )
    invoked = runtime.invocations["PartnerClaimsFunction"] - before
    no_key = exchange("GET", f"{outputs['PartnerApiUrl']}/claims", bearer)
    staff_token = exchange(
        "GET", f"{outputs['PartnerApiUrl']}/claims", {"Authorization": staff_id_token, "x-api-key": key}
    )
    partner_on_staff_api = exchange("GET", f"{outputs['ApiUrl']}/approvals", bearer)
    approvals_before = runtime.invocations["ApprovalsFunction"]
    exchange("GET", f"{outputs['ApiUrl']}/approvals", {"Authorization": staff_id_token})
    staff_reached_staff_api = runtime.invocations["ApprovalsFunction"] - approvals_before
    under_no_api = exchange("GET", f"{runtime.api_url}/partner/v2/claims", {**bearer, "x-api-key": key})

    assert outputs["ApiUrl"] == f"{runtime.api_url}/v1"
    assert outputs["PartnerApiUrl"] == f"{runtime.api_url}/partner/v1"
    assert outputs["PartnerTokenUrl"] == f"{runtime.api_url}/oauth2/token"
    assert token_status == 200
    assert token_answer["token_type"] == "Bearer"
    # The gateway let the call through to the function (whatever it answers for an unknown claim).
    assert invoked == 1
    assert reached not in (401, 403, 429)
    assert no_key[0] == 403
    assert no_key[1]["Content-Type"] == "application/problem+json"
    assert no_key[2]["type"] == "https://carebus.dev/problems/invalid-api-key"
    assert staff_token[0] == 401
    assert staff_token[2]["type"] == "https://carebus.dev/problems/unauthorized"
    assert partner_on_staff_api[0] == 401
    assert staff_reached_staff_api == 1
    assert under_no_api[0] == 403
    assert under_no_api[2]["detail"] == "Missing Authentication Token"


# ----- the partner's commands (lab 10 runs them too) ------------------------------------------------------
@pytest.mark.usefixtures("carebus_home")
def test_partner_claims_without_a_token_or_a_key_shows_the_gateways_refusal_and_exits_0(carebus):
    without_token = carebus("partner", "claims", "--last", "5", "--without-token")
    without_key = carebus("partner", "claims", "--last", "5", "--without-key")

    assert (without_token.code, without_key.code) == (0, 0), (without_token.err, without_key.err)
    assert printed(without_token.out)[0].startswith("HTTP 401 unauthorized:")
    assert printed(without_key.out)[0].startswith("HTTP 403 invalid-api-key:")


@pytest.mark.usefixtures("carebus_home")
def test_partner_claims_with_both_answers_a_page(carebus):
    ran = carebus("partner", "claims", "--last", "5")

    assert ran.code == 0, ran.err
    assert printed(ran.out)[0] == "HTTP 200"
    assert printed(ran.out)[-1].startswith("next page ")


@pytest.mark.usefixtures("carebus_home")
def test_partner_token_prints_the_scope_and_the_token_last(carebus):
    ran = carebus("partner", "token")

    assert ran.code == 0, ran.err
    lines = printed(ran.out)
    assert "scope carebus-partner/claims.read" in lines
    assert lines[-1].count(".") == 2  # a JWT, alone on its line: TOKEN=$(carebus partner token | tail -n 1)


@pytest.mark.usefixtures("carebus_home")
def test_clearinghouse_fail_and_deliveries_show_a_refused_then_accepted_claim(carebus, runtime, standin):
    failing = carebus("clearinghouse", "fail", "--status", "503", "--times", "1")
    claim_id, _ = submit(runtime)
    shown = carebus("clearinghouse", "deliveries", "--wait-for", f"202 {claim_id} key=ok", "--timeout", "30")

    assert failing.code == 0, failing.err
    assert printed(failing.out) == ["The next 1 claim request(s) get HTTP 503"]
    assert shown.code == 0, shown.err
    lines = printed(shown.out)
    assert f"503 {claim_id} key=ok" in lines
    assert f"202 {claim_id} key=ok" in lines
    assert "  fields announcedAt claimId currency encounterId eventId lineCount totalCents" in lines
