"""API destinations as EventBridge calls them, without a server: what is retried, the backoff, the dead-letter
attributes, the rate limit, and the dynamic references the connection's key is resolved from."""

import json
from typing import Any

import boto3
import pytest
from clocks import FakeClock
from moto import mock_aws

from carebus_local.api_destinations import (
    Backoff,
    DeadLetter,
    Invocation,
    RateLimiter,
    Retry,
    RetryPolicy,
    dead_letter_attributes,
    http_failure,
    next_step,
    not_callable,
)
from carebus_local.provision import DynamicReferenceError, Provisioner, secret_reference
from carebus_local.stack import Provisioned

POLICY = RetryPolicy(maximum_retry_attempts=2, maximum_event_age_seconds=3600)
BACKOFF = Backoff(base_seconds=1, cap_seconds=30)
UNAVAILABLE = http_failure(503)


# ----- delivery decisions ------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [401, 407, 409, 429, 500, 502, 503, 504, 599])
def test_the_statuses_eventbridge_documents_as_retryable_are_retried(status):
    assert http_failure(status).retryable
    assert next_step(http_failure(status), 0, 0, POLICY, BACKOFF) == Retry(1)


@pytest.mark.parametrize("status", [100, 301, 304, 400, 403, 404, 410, 413, 422])
def test_every_other_status_goes_to_the_dead_letter_queue_without_a_retry(status):
    assert not http_failure(status).retryable
    assert next_step(http_failure(status), 0, 0, POLICY, BACKOFF) == DeadLetter(None)


def test_timeouts_and_connection_errors_are_retried():
    timed_out = Invocation(None, "TIMEOUT", "Timeout calling endpoint for API Destination.")

    assert next_step(timed_out, 1, 10, POLICY, BACKOFF) == Retry(2)


def test_a_2xx_answer_is_delivered():
    assert next_step(Invocation(202), 0, 0, POLICY, BACKOFF) is None


def test_retries_stop_at_maximum_retry_attempts():
    assert next_step(UNAVAILABLE, 1, 0, POLICY, BACKOFF) == Retry(2)
    assert next_step(UNAVAILABLE, 2, 0, POLICY, BACKOFF) == DeadLetter("MaximumRetryAttempts")


def test_no_retry_at_all_when_the_policy_allows_none():
    assert next_step(UNAVAILABLE, 0, 0, RetryPolicy(0, 3600), BACKOFF) == DeadLetter("MaximumRetryAttempts")


def test_retries_stop_when_the_next_one_would_outlive_maximum_event_age():
    assert next_step(UNAVAILABLE, 1, 3599, POLICY, BACKOFF) == DeadLetter("MaximumEventAgeInSeconds")
    assert next_step(UNAVAILABLE, 1, 3598, POLICY, BACKOFF) == Retry(2)  # 3598 + 2 is still within the age


def test_backoff_doubles_in_lab_seconds_up_to_its_cap():
    assert [Backoff(1, 30).delay(retry) for retry in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert Backoff(1, 30).delay(185) == 30


def test_a_longer_retry_after_wins_over_the_backoff_but_not_over_the_cap():
    assert next_step(http_failure(429, 7), 0, 0, POLICY, BACKOFF) == Retry(7)
    assert next_step(http_failure(429, 0.2), 2 - 1, 0, POLICY, BACKOFF) == Retry(2)
    assert Backoff(1, 30).delay(1, retry_after_seconds=3600) == 30


def test_a_retry_after_in_the_past_is_retried_after_the_backoff():
    assert next_step(http_failure(503, -1), 0, 0, POLICY, BACKOFF) == Retry(1)


def test_a_destination_no_request_could_be_made_to_is_dead_lettered_at_once():
    invocation = not_callable(KeyError("the connection's secret is gone"))

    assert next_step(invocation, 0, 0, POLICY, BACKOFF) == DeadLetter(None)
    assert invocation.error_code == "SDK_CLIENT_ERROR"


def test_the_default_retry_policy_is_eventbridges():
    assert RetryPolicy.of({}) == RetryPolicy(185, 86400)
    assert RetryPolicy.of({"RetryPolicy": {"MaximumRetryAttempts": "3"}}) == RetryPolicy(3, 86400)


def test_a_dead_letter_carries_the_attributes_eventbridge_documents():
    attributes = dead_letter_attributes("arn:rule", "arn:destination", UNAVAILABLE, 2, "MaximumRetryAttempts")

    assert attributes == {
        "RULE_ARN": {"DataType": "String", "StringValue": "arn:rule"},
        "TARGET_ARN": {"DataType": "String", "StringValue": "arn:destination"},
        "ERROR_CODE": {"DataType": "String", "StringValue": "SDK_CLIENT_ERROR"},
        "ERROR_MESSAGE": {
            "DataType": "String",
            "StringValue": "Unable to invoke ApiDestination endpoint: The endpoint answered HTTP 503.",
        },
        "RETRY_ATTEMPTS": {"DataType": "String", "StringValue": "2"},
        "EXHAUSTED_RETRY_CONDITION": {"DataType": "String", "StringValue": "MaximumRetryAttempts"},
    }
    assert "EXHAUSTED_RETRY_CONDITION" not in dead_letter_attributes("r", "t", http_failure(400), 0, None)
    assert http_failure(429).error_code == "THROTTLING"


def test_the_rate_limit_spaces_requests_to_one_destination_and_not_another():
    clock = FakeClock()
    limiter = RateLimiter(clock, clock.sleep)

    waits = [limiter.acquire("a", 4) for _ in range(3)] + [limiter.acquire("b", 4)]

    assert waits == [0, 0.25, 0.5, 0]
    assert clock.slept == [0.25, 0.5]
    clock.now += 10
    assert limiter.acquire("a", 4) == 0


# ----- dynamic references ------------------------------------------------------------------------------
ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:partner/key-AbCdEf"


@pytest.mark.parametrize(
    ("reference", "parsed"),
    [
        ("partner/key", ("partner/key", "", "", "")),
        ("partner/key:SecretString:apiKey", ("partner/key", "apiKey", "", "")),
        ("partner/key::apiKey", ("partner/key", "apiKey", "", "")),
        ("partner/key:SecretString:apiKey:AWSPREVIOUS", ("partner/key", "apiKey", "AWSPREVIOUS", "")),
        ("partner/key:SecretString:apiKey::v-1", ("partner/key", "apiKey", "", "v-1")),
        (ARN, (ARN, "", "", "")),
        (f"{ARN}:SecretString:apiKey", (ARN, "apiKey", "", "")),
    ],
)
def test_secret_references_are_read_as_cloudformation_documents_them(reference, parsed):
    assert secret_reference(reference) == parsed


@pytest.mark.parametrize(
    "reference",
    ["", "key:SecretBinary:x", "key:SecretString:k:AWSCURRENT:v-1", "key:SecretString:k:s:v:extra"],
)
def test_a_malformed_secret_reference_is_refused(reference):
    with pytest.raises(DynamicReferenceError):
        secret_reference(reference)


def provision_one(value: str) -> dict[str, Any]:
    """Provision a one-resource template whose property is `value`; the properties its creator was given."""
    given: dict[str, Any] = {}

    def capture(p: Provisioner, logical_id: str, props: dict[str, Any]) -> Provisioned:
        given.update(props)
        return Provisioned(logical_id)

    cfn = {"Resources": {"Thing": {"Type": "Test::Thing", "Properties": {"Value": value, "List": [value]}}}}
    Provisioner(cfn, {}, overrides={"Test::Thing": capture}).provision()
    return given


@mock_aws
def test_a_secret_reference_in_a_property_is_resolved_at_provisioning_as_cloudformation_does():
    secrets = boto3.client("secretsmanager")
    secrets.create_secret(Name="partner/key", SecretString=json.dumps({"apiKey": "s3cret", "n": 5}))
    boto3.client("ssm").put_parameter(Name="/carebus/x", Value="from-ssm", Type="String")

    assert provision_one("Bearer {{resolve:secretsmanager:partner/key:SecretString:apiKey}}") == {
        "Value": "Bearer s3cret",
        "List": ["Bearer s3cret"],
    }
    assert provision_one("{{resolve:secretsmanager:partner/key:SecretString:n}}")["Value"] == "5"
    assert json.loads(provision_one("{{resolve:secretsmanager:partner/key}}")["Value"])["apiKey"] == "s3cret"
    assert provision_one("{{resolve:ssm:/carebus/x}}")["Value"] == "from-ssm"


@mock_aws
def test_a_reference_to_a_missing_secret_or_key_fails_provisioning_by_name():
    boto3.client("secretsmanager").create_secret(Name="plain", SecretString="not json")

    with pytest.raises(DynamicReferenceError, match=r"Thing: .*missing.*ResourceNotFoundException"):
        provision_one("{{resolve:secretsmanager:missing:SecretString:apiKey}}")
    with pytest.raises(DynamicReferenceError, match=r"Thing: .*not a JSON object with the key 'apiKey'"):
        provision_one("{{resolve:secretsmanager:plain:SecretString:apiKey}}")
