"""The outbound clearinghouse integration offline, piece by piece: CloudFormation's dynamic references, the
connection and destination on moto, EventBridge's delivery decisions for API destinations (what is retried,
for how long, what the dead-letter queue gets, the rate limit), and the stand-in clearinghouse itself."""

import json
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from clocks import FakeClock
from moto import mock_aws

from carebus_local.api_destinations import (
    ApiDestinations,
    Backoff,
    RateLimiter,
    RetryPolicy,
    call_endpoint,
    http_failure,
)
from carebus_local.clearinghouse import ClearinghouseStandIn, start_for_stack
from carebus_local.delivery import RuleTargetDelivery
from carebus_local.provision import Provisioner
from carebus_local.stack import OfflineStack, RuleTargetSpec

POLICY = RetryPolicy(maximum_retry_attempts=2, maximum_event_age_seconds=3600)
BACKOFF = Backoff(base_seconds=1, cap_seconds=30)
UNAVAILABLE = http_failure(503)


# ----- the outbound integration on moto ----------------------------------------------------------------
@pytest.fixture
def outbound(cfn: dict[str, Any], sam_template: dict[str, Any]) -> Iterator[tuple[OfflineStack, Any]]:
    """The whole template on moto with the clearinghouse on, pointed at a started stand-in."""
    with mock_aws():
        standin, parameters = start_for_stack(
            boto3.client("secretsmanager"), "carebus", "127.0.0.1", {"ClearinghouseMaximumRetryAttempts": "1"}
        )
        try:
            yield Provisioner(cfn, sam_template, parameters=parameters).provision(), standin
        finally:
            standin.stop()


def clearinghouse_target(stack: OfflineStack) -> RuleTargetSpec:
    [spec] = [spec for spec in stack.rule_targets if spec.target["Id"] == "clearinghouse"]
    return spec


def put_claim_submitted(stack: OfflineStack, claim: str) -> None:
    detail = {"eventId": f"ClaimSubmitted/{claim}", "claimId": claim, "encounterId": "e-1", "lineCount": 2}
    boto3.client("events").put_events(
        Entries=[
            {
                "Source": "carebus.billing",
                "DetailType": "ClaimSubmitted",
                "EventBusName": stack.outputs["EventBusName"],
                "Detail": json.dumps({**detail, "totalCents": 16250}),
            }
        ]
    )


def delivery(stack: OfflineStack, standin: ClearinghouseStandIn, **options: Any) -> RuleTargetDelivery:
    api = ApiDestinations(
        boto3.client("events"), boto3.client("secretsmanager"), ca_file=standin.ca_file, **options
    )
    return RuleTargetDelivery(stack.rule_targets, boto3.client("sqs"), None, api_destinations=api)


def test_the_connection_keeps_the_resolved_key_in_its_own_secret(outbound):
    stack, standin = outbound
    events = boto3.client("events")

    connection = events.describe_connection(Name=stack.ref("ClearinghouseConnection"))
    destination = events.describe_api_destination(Name=stack.ref("ClearinghouseDestination"))
    secret = boto3.client("secretsmanager").get_secret_value(
        SecretId=stack.attribute("ClearinghouseConnection", "SecretArn")
    )

    assert connection["AuthorizationType"] == "API_KEY"
    assert json.loads(secret["SecretString"]) == {
        "api_key_name": "x-api-key",
        "api_key_value": standin.api_key,
    }
    assert (destination["HttpMethod"], destination["InvocationEndpoint"]) == ("POST", standin.claims_url)
    assert int(destination["InvocationRateLimitPerSecond"]) == 10
    assert destination["ApiDestinationArn"] == stack.attribute("ClearinghouseDestination", "Arn")


def test_moto_is_not_given_the_api_destination_target_the_runtime_delivers(outbound):
    stack, _ = outbound
    rule, bus = clearinghouse_target(stack).rule_name, stack.outputs["EventBusName"]

    assert boto3.client("events").list_targets_by_rule(Rule=rule, EventBusName=bus)["Targets"] == []


def test_a_matched_claim_is_posted_with_the_connections_key_and_the_transformed_body(outbound):
    stack, standin = outbound
    put_claim_submitted(stack, "clm-1")

    assert delivery(stack, standin).deliver_pending() == 1

    [received] = standin.deliveries()
    assert (received.status, received.key_matched) == (202, True)
    assert received.headers["Content-Type"] == "application/json; charset=utf-8"
    assert received.body["claimId"] == "clm-1"
    assert (received.body["lineCount"], received.body["totalCents"]) == (2, 16250)


def test_a_retry_goes_back_on_the_shadow_queue_delayed_and_counted(outbound):
    stack, standin = outbound
    standin.fail_next(503, 1)
    put_claim_submitted(stack, "clm-2")
    sqs = boto3.client("sqs")
    url = clearinghouse_target(stack).shadow_queue_url

    assert delivery(stack, standin, backoff=Backoff(5, 5)).deliver_pending() == 1

    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    assert counts["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"
    assert [d.status for d in standin.deliveries()] == [503]


def test_retried_then_dead_lettered_with_the_original_event(outbound):
    stack, standin = outbound
    standin.fail_next(502, 2)
    put_claim_submitted(stack, "clm-3")

    delivery(stack, standin, backoff=Backoff(0, 0)).deliver_pending()

    assert [d.status for d in standin.deliveries()] == [502, 502]  # one retry: the policy's maximum
    [message] = boto3.client("sqs").receive_message(
        QueueUrl=stack.outputs["ClearinghouseDeadLetterQueueUrl"], MessageAttributeNames=["All"]
    )["Messages"]
    assert json.loads(message["Body"])["detail"]["claimId"] == "clm-3"
    assert message["MessageAttributes"]["RETRY_ATTEMPTS"]["StringValue"] == "1"
    assert message["MessageAttributes"]["EXHAUSTED_RETRY_CONDITION"]["StringValue"] == "MaximumRetryAttempts"


def test_an_event_older_than_maximum_event_age_is_dead_lettered_unsent(outbound):
    stack, standin = outbound
    put_claim_submitted(stack, "clm-4")
    a_day_later = FakeClock()
    a_day_later.now = 10**10

    delivery(stack, standin, clock=a_day_later).deliver_pending()

    assert standin.deliveries() == []
    [message] = boto3.client("sqs").receive_message(
        QueueUrl=stack.outputs["ClearinghouseDeadLetterQueueUrl"], MessageAttributeNames=["All"]
    )["Messages"]
    condition = message["MessageAttributes"]["EXHAUSTED_RETRY_CONDITION"]["StringValue"]
    assert condition == "MaximumEventAgeInSeconds"


def test_an_event_whose_connection_secret_is_gone_is_dead_lettered_at_once_not_retried(outbound):
    stack, standin = outbound
    boto3.client("secretsmanager").delete_secret(
        SecretId=stack.attribute("ClearinghouseConnection", "SecretArn"), ForceDeleteWithoutRecovery=True
    )
    put_claim_submitted(stack, "clm-5")

    assert delivery(stack, standin, backoff=Backoff(0, 0)).deliver_pending() == 1

    assert standin.deliveries() == []
    [message] = boto3.client("sqs").receive_message(
        QueueUrl=stack.outputs["ClearinghouseDeadLetterQueueUrl"], MessageAttributeNames=["All"]
    )["Messages"]
    assert json.loads(message["Body"])["detail"]["claimId"] == "clm-5"
    assert message["MessageAttributes"]["ERROR_CODE"]["StringValue"] == "SDK_CLIENT_ERROR"
    assert message["MessageAttributes"]["RETRY_ATTEMPTS"]["StringValue"] == "0"
    shadow = boto3.client("sqs").get_queue_attributes(
        QueueUrl=clearinghouse_target(stack).shadow_queue_url, AttributeNames=["All"]
    )["Attributes"]
    assert (shadow["ApproximateNumberOfMessages"], shadow["ApproximateNumberOfMessagesDelayed"]) == ("0", "0")


def test_requests_to_a_destination_keep_to_its_invocation_rate(outbound):
    stack, standin = outbound
    clock = FakeClock()
    api = ApiDestinations(
        boto3.client("events"),
        boto3.client("secretsmanager"),
        ca_file=standin.ca_file,
        limiter=RateLimiter(clock, clock.sleep),
    )
    target = clearinghouse_target(stack).target

    for number in range(3):
        assert api.invoke(target, json.dumps({"eventId": f"e-{number}"})).delivered

    assert clock.slept == [pytest.approx(0.1), pytest.approx(0.2)]  # InvocationRateLimitPerSecond: 10


# ----- requests ------------------------------------------------------------------------------------------
HEADERS = {"Content-Type": "application/json; charset=utf-8", "x-api-key": "k"}


def test_an_endpoint_whose_certificate_is_not_trusted_is_not_called():
    with ClearinghouseStandIn(api_key="k") as standin:
        refused = call_endpoint("POST", standin.claims_url, b"{}", HEADERS, ssl.create_default_context(), 5)

        assert (refused.status, refused.error_code, refused.retryable) == (None, "SDK_CLIENT_ERROR", True)
        assert standin.deliveries() == []


def test_an_endpoint_that_does_not_answer_in_time_is_a_retryable_timeout():
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"https://127.0.0.1:{silent.getsockname()[1]}/claims"

        timed_out = call_endpoint("POST", url, b"{}", HEADERS, ssl.create_default_context(), 0.2)

    assert (timed_out.status, timed_out.error_code, timed_out.retryable) == (None, "TIMEOUT", True)


def test_the_endpoints_retry_after_is_read():
    with ClearinghouseStandIn(api_key="k") as standin:
        standin.fail_next(429, 1, retry_after=4)
        context = ssl.create_default_context(cafile=standin.ca_file)

        throttled = call_endpoint("POST", standin.claims_url, b'{"eventId": "e"}', HEADERS, context, 5)

    assert (throttled.status, throttled.error_code, throttled.retry_after_seconds) == (429, "THROTTLING", 4)


# ----- the stand-in --------------------------------------------------------------------------------------
@pytest.fixture
def standin() -> Iterator[ClearinghouseStandIn]:
    with ClearinghouseStandIn(api_key="the-key", max_deliveries=3) as started:
        yield started


def post(standin: ClearinghouseStandIn, path: str, body: Any, **headers: str) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 - the stand-in's loopback HTTPS URL
        standin.base_url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    context = ssl.create_default_context(cafile=standin.ca_file)
    try:
        with urllib.request.urlopen(request, context=context, timeout=5) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_claim_without_the_right_key_is_401_and_recorded_without_the_key(standin):
    assert post(standin, "/claims", {"eventId": "e-1"}, **{"x-api-key": "wrong"})[0] == 401
    assert post(standin, "/claims", {"eventId": "e-1"})[0] == 401

    assert [(d.status, d.key_matched) for d in standin.deliveries()] == [(401, False), (401, False)]
    assert standin.deliveries()[0].headers["X-Api-Key"] == "[redacted]"
    assert standin.accepted() == {}


def test_the_first_claim_of_an_event_id_is_kept_and_a_repeat_is_a_duplicate(standin):
    first = post(standin, "/claims", {"eventId": "e-1", "totalCents": 1}, **{"x-api-key": "the-key"})
    again = post(standin, "/claims", {"eventId": "e-1", "totalCents": 2}, **{"x-api-key": "the-key"})

    assert first == (202, {"accepted": True, "duplicate": False})
    assert again == (200, {"accepted": True, "duplicate": True})
    assert standin.accepted() == {"e-1": {"eventId": "e-1", "totalCents": 1}}


def test_failures_asked_for_over_the_admin_endpoint_answer_the_next_claims(standin):
    assert post(standin, "/_standin/failures", {"status": 503, "count": 2}) == (
        200,
        {"status": 503, "count": 2},
    )
    statuses = [post(standin, "/claims", {"eventId": "e-1"}, **{"x-api-key": "the-key"})[0] for _ in range(3)]

    assert statuses == [503, 503, 202]
    assert post(standin, "/_standin/failures", {"count": 2})[0] == 400


def test_what_the_stand_in_remembers_is_bounded_and_listed_oldest_first(standin):
    for number in range(5):
        post(standin, "/claims", {"eventId": f"e-{number}"}, **{"x-api-key": "the-key"})
    url, context = (
        standin.base_url + "/_standin/deliveries",
        ssl.create_default_context(cafile=standin.ca_file),
    )

    with urllib.request.urlopen(url, context=context, timeout=5) as answer:  # noqa: S310 - loopback HTTPS
        listed = json.loads(answer.read())["deliveries"]

    assert [d["body"]["eventId"] for d in listed] == ["e-2", "e-3", "e-4"]
    assert post(standin, "/elsewhere", {})[0] == 404
