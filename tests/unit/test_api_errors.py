"""Which AWS failures the API answers as a retryable 503, by botocore's own classification."""

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError, ReadTimeoutError

from carebus.adapters.api import is_transient


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


@pytest.mark.parametrize(
    "error",
    [
        client_error("ThrottlingException"),
        client_error("ProvisionedThroughputExceededException"),
        client_error("Throttling"),
        client_error("InternalServerError", 500),
        client_error("ServiceUnavailable", 503),
        ReadTimeoutError(endpoint_url="https://dynamodb"),
        EndpointConnectionError(endpoint_url="https://dynamodb"),
    ],
    ids=["throttling", "ddb-throughput", "sns-throttling", "500", "503", "read-timeout", "no-connection"],
)
def test_throttles_server_errors_and_lost_connections_are_transient(error):
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        client_error("AccessDeniedException"),
        client_error("ValidationException"),
        client_error("ResourceNotFoundException"),
        ParamValidationError(report="bad"),
        ValueError("not an AWS error"),
    ],
    ids=["access-denied", "validation", "not-found", "param-validation", "not-aws"],
)
def test_refusals_no_retry_fixes_are_not(error):
    assert not is_transient(error)


def test_an_aws_error_wrapped_by_a_library_is_judged_by_its_cause():
    def wrapped() -> None:
        try:
            raise client_error("ProvisionedThroughputExceededException")
        except ClientError as cause:
            raise RuntimeError("persistence failed") from cause

    with pytest.raises(RuntimeError) as caught:
        wrapped()

    assert is_transient(caught.value)
