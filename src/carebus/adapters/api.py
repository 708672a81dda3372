"""The API edge: who is calling, and the one mapping from domain errors to problem-details answers."""

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from botocore.exceptions import BotoCoreError, ClientError
from botocore.retries.standard import RetryContext, ThrottledRetryableChecker, TransientRetryableChecker
from pydantic import BaseModel, ValidationError

from carebus.auth import Role, groups_from_claims, require_any
from carebus.errors import (
    BodyNotJsonError,
    CarebusError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    UnsupportedMediaTypeError,
)
from carebus.problems import PROBLEM_CONTENT_TYPE, problem, validation_problem
from carebus.requests import parse_request

MAX_BODY_BYTES = 64 * 1024
# How long a client should wait before sending a request again after a 503.
RETRY_AFTER_SECONDS = 2
# botocore's own classification of errors worth retrying (throttles, 5xx, timeouts, dropped connections).
_RETRYABLE = (TransientRetryableChecker(), ThrottledRetryableChecker())


class InvalidRequestError(CarebusError):
    """Parts of the request (headers, body) failed validation; every failure is answered at once."""

    def __init__(self, failures: list[ValidationError], body_not_json: bool = False) -> None:
        super().__init__(f"{len(failures) + body_not_json} part(s) of the request failed validation")
        self.failures = failures
        self.body_not_json = body_not_json


def validate_together(*parts: Callable[[], Any]) -> tuple[Any, ...]:
    """Each part validated (a callable that parses it); one InvalidRequestError naming the failed fields
    of all of them, so a client learns every problem in one round."""
    failures: list[ValidationError] = []
    body_not_json = False
    values: list[Any] = []
    for part in parts:
        try:
            values.append(part())
        except ValidationError as error:
            failures.append(error)
        except BodyNotJsonError:
            body_not_json = True
    if failures or body_not_json:
        raise InvalidRequestError(failures, body_not_json)
    return tuple(values)


@dataclass(frozen=True, slots=True)
class Caller:
    """The signed-in user as API Gateway's Cognito authorizer vouched for them."""

    subject: str
    groups: frozenset[str]

    def require(self, *roles: Role) -> None:
        require_any(self.groups, *roles)

    def has(self, role: Role) -> bool:
        return role in self.groups


def caller_of(app: APIGatewayRestResolver) -> Caller:
    claims = (app.current_event.request_context.authorizer.claims or {}) if app.current_event else {}
    if not claims.get("sub"):
        # API Gateway only calls us with verified claims; without them the route is misconfigured.
        raise ForbiddenError("no verified identity on the request")
    # The headers carry the ID token, whose group list is exact where the claims' string is flattened.
    event = app.current_event
    roles = groups_from_claims(claims, event.get("headers"), event.get("multiValueHeaders"))
    return Caller(subject=claims["sub"], groups=roles)


def _is_json_media_type(content_type: str) -> bool:
    """application/json, with UTF-8 if it names a charset; never a +json type, which the gateway's models
    do not check."""
    media_type, *parameters = (part.strip() for part in content_type.split(";"))
    if media_type.lower() != "application/json":
        return False
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            return False
    return True


def request_body(app: APIGatewayRestResolver) -> bytes:
    """The request's body as it was sent, refusing other media types (415) and large bodies (413)."""
    event = app.current_event
    if not _is_json_media_type(event.headers.get("content-type") or ""):
        raise UnsupportedMediaTypeError("send the body as application/json (UTF-8)")
    body = event.body or ""
    if event.is_base64_encoded:
        try:
            raw = base64.b64decode(body, validate=True)
        except binascii.Error:
            raise BodyNotJsonError("the body is not valid base64") from None
    else:
        # Unpaired surrogates survive as bytes that are not UTF-8, so the parser refuses them.
        raw = body.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"the body is larger than {MAX_BODY_BYTES // 1024} KiB")
    return raw


def parse_body[Model: BaseModel](
    app: APIGatewayRestResolver, model: type[Model], context: Mapping[str, Any] | None = None
) -> Model:
    """The request body as the model, strictly (carebus.requests)."""
    return parse_request(model, request_body(app), context)


class _HttpStatus:
    """Just enough of an HTTP response for botocore's checkers: its status code."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


def _aws_error_in(error: BaseException) -> BaseException:
    """The AWS error itself, or the one that caused it (Powertools wraps its persistence errors)."""
    found: BaseException | None = error
    while found is not None and not isinstance(found, BotoCoreError | ClientError):
        found = found.__cause__
    return found or error


def is_transient(error: BaseException) -> bool:
    """Whether an AWS error (or the AWS error that caused it) is one the SDK would retry: a later attempt
    may succeed."""
    error = _aws_error_in(error)
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        context = RetryContext(
            attempt_number=1,
            parsed_response=error.response,
            http_response=_HttpStatus(status) if status else None,
        )
    elif isinstance(error, BotoCoreError):
        context = RetryContext(attempt_number=1, caught_exception=error)
    else:
        return False
    return any(checker.is_retryable(context) for checker in _RETRYABLE)


def aws_failure_response(error: BaseException, logger: Logger) -> Response:
    """A dependency failed: 503 with Retry-After when a retry may succeed (every write carebus makes is safe
    to repeat), 500 when it will not. Only the error's name is logged: AWS messages can quote the request."""
    cause = _aws_error_in(error)
    code = cause.response["Error"]["Code"] if isinstance(cause, ClientError) else type(cause).__name__
    if is_transient(error):
        logger.warning("A dependency failed transiently", extra={"error": code})
        return unavailable_response("a service carebus depends on did not answer in time; try again")
    logger.error("A dependency refused the request", extra={"error": code})
    return problem_response(
        problem(500, "Internal error", "the request could not be completed", "internal-error")
    )


def unavailable_response(detail: str) -> Response:
    return problem_response(
        problem(503, "Try again", detail, "service-unavailable"),
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=body["status"],
        content_type=PROBLEM_CONTENT_TYPE,
        body=json.dumps(body),
        headers=headers,
    )


def install_problem_answers(app: APIGatewayRestResolver, logger: Logger) -> None:
    """Answer every domain error, unknown route and AWS failure as RFC 9457 problem details."""

    @app.exception_handler(ValidationError)
    def invalid(error: ValidationError) -> Response:
        return problem_response(validation_problem(error))

    @app.exception_handler(InvalidRequestError)
    def invalid_parts(error: InvalidRequestError) -> Response:
        return problem_response(validation_problem(*error.failures, body_not_json=error.body_not_json))

    @app.exception_handler(BodyNotJsonError)
    def not_json(_: BodyNotJsonError) -> Response:
        return problem_response(validation_problem(body_not_json=True))

    @app.exception_handler(ForbiddenError)
    def forbidden(error: ForbiddenError) -> Response:
        return problem_response(problem(403, "Not allowed", str(error), "forbidden"))

    @app.exception_handler(NotFoundError)
    def not_found(error: NotFoundError) -> Response:
        return problem_response(problem(404, "Not found", str(error), "not-found"))

    @app.exception_handler(ConflictError)
    def conflict(error: ConflictError) -> Response:
        extra = {"current": error.current} if error.current is not None else {}
        return problem_response(problem(409, "Conflict", str(error), "conflict", **extra))

    @app.exception_handler(PayloadTooLargeError)
    def too_large(error: PayloadTooLargeError) -> Response:
        return problem_response(problem(413, "Payload too large", str(error), "payload-too-large"))

    @app.exception_handler(UnsupportedMediaTypeError)
    def unsupported(error: UnsupportedMediaTypeError) -> Response:
        return problem_response(problem(415, "Unsupported media type", str(error), "unsupported-media-type"))

    @app.exception_handler(ServiceUnavailableError)
    def unavailable(error: ServiceUnavailableError) -> Response:
        return unavailable_response(str(error))

    @app.exception_handler(ClientError)
    def aws_refused(error: ClientError) -> Response:
        return aws_failure_response(error, logger)

    @app.exception_handler(BotoCoreError)
    def aws_unreachable(error: BotoCoreError) -> Response:
        return aws_failure_response(error, logger)

    @app.not_found
    def no_route(_: Exception) -> Response:
        return problem_response(problem(404, "Not found", "No such route", "not-found"))
