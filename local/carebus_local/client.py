"""What the carebus CLI and demo do, without the printing: find a stack, sign in, call its API, trace an
encounter through the stack, and inspect and redrive its dead-letter queues.

A stack is found the same way wherever it runs: CloudFormation DescribeStacks, then its outputs (ApiUrl,
UserPoolClientId, table names, queue URLs, ...). The offline stack publishes its outputs as a
CloudFormation stack on its own endpoint, so nothing here names a resource of the template.
"""

import base64
import http.client
import json
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from http import HTTPStatus
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)

from carebus.adapters.dynamo import from_item
from carebus.messages import ENCOUNTER_ID_PATTERN
from carebus.models import EncounterRequest
from carebus_local.provision import DEFAULT_STACK_NAME
from carebus_local.runtime import LOCAL_CREDENTIALS, OfflineRuntime, RuntimeOptions

LOCAL_ENDPOINT_URL = "http://127.0.0.1:4566"
LOCAL_REGION = "us-east-1"
ENDPOINT_URL_VARIABLE = "CAREBUS_ENDPOINT_URL"
HOME_VARIABLE = "CAREBUS_HOME"
DEAD_LETTER_OUTPUT_SUFFIX = "DeadLetterQueueUrl"
# A request body's members, as the API names them: how a file is recognised as an encounter.
ENCOUNTER_MEMBERS = frozenset(field.alias for field in EncounterRequest.model_fields.values() if field.alias)
REQUIRED_ENCOUNTER_MEMBERS = sorted(
    field.alias for field in EncounterRequest.model_fields.values() if field.alias and field.is_required()
)

_ENCOUNTER_ID = re.compile(ENCOUNTER_ID_PATTERN)
_SIGN_IN_REFUSALS = frozenset(
    {
        "NotAuthorizedException",
        "UserNotFoundException",
        "UserNotConfirmedException",
        "PasswordResetRequiredException",
    }
)
_AWS_CREDENTIAL_REFUSALS = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)
_RECEIVE_LIMIT = 10  # SQS hands out at most ten messages per ReceiveMessage
# Executions started this long before an encounter was submitted cannot belong to it (clock skew aside).
_EXECUTION_CLOCK_SKEW = timedelta(minutes=1)


class ExitCode(IntEnum):
    """What `carebus` exits with; scripts may rely on these."""

    OK = 0
    REFUSED = 1  # the API refused the request (4xx, 5xx), or a check (the demo's expectations) failed
    USAGE = 2  # the command line or an input file is wrong (argparse exits 2 as well)
    UNREACHABLE = 3  # the stack cannot be reached or found
    UNAUTHENTICATED = 4  # sign-in failed, no valid session, or no valid AWS credentials


class CarebusError(Exception):
    """A failure reported as one line (then details such as field errors) with its exit code."""

    exit_code = ExitCode.REFUSED

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.details = tuple(details)


class UsageError(CarebusError):
    exit_code = ExitCode.USAGE


class StackUnreachableError(CarebusError):
    exit_code = ExitCode.UNREACHABLE


class AuthenticationError(CarebusError):
    exit_code = ExitCode.UNAUTHENTICATED


class ApiProblemError(CarebusError):
    """The API answered with an error; its problem details (RFC 9457) say why, field by field."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        title = problem.get("title") or problem.get("message") or _status_phrase(status)
        detail = problem.get("detail")
        listed = problem.get("errors")
        self.field_errors = (
            [error for error in listed if isinstance(error, dict)] if isinstance(listed, list) else []
        )
        # One line, whatever the answer holds (a gateway's validation string may span several).
        summary = " ".join(f"{status} {title}{f': {detail}' if detail else ''}".split())
        super().__init__(
            summary,
            [
                f"{error.get('field')}: {error.get('message')} ({error.get('code')})"
                for error in self.field_errors
            ],
        )
        self.status = status
        self.problem = dict(problem)

    @property
    def error_fields(self) -> set[str]:
        return {str(error.get("field")) for error in self.field_errors}


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# ----- where the stack is --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """Which stack to talk to, through which endpoint, with which credentials.

    Without a stack name it is the offline stack, carebus-local: the local endpoint (unless another is
    configured) and fake credentials. With one it is a deployed stack through the default AWS session,
    and through an endpoint only if one is configured (an emulator, or an offline stack of that name).
    """

    stack_name: str
    endpoint_url: str | None
    region: str
    offline: bool

    @classmethod
    def select(
        cls, stack_name: str | None = None, endpoint_url: str | None = None, region: str | None = None
    ) -> "Target":
        endpoint = endpoint_url or os.environ.get(ENDPOINT_URL_VARIABLE) or None
        if stack_name is None:
            return cls(DEFAULT_STACK_NAME, endpoint or LOCAL_ENDPOINT_URL, region or LOCAL_REGION, True)
        try:
            session_region = region or boto3.Session().region_name
        except ProfileNotFound as error:
            raise AuthenticationError(f"AWS profile problem: {error}") from None
        if not session_region:
            raise UsageError("no AWS region: pass --region or set AWS_REGION")
        return cls(stack_name, endpoint, session_region, False)

    @property
    def location(self) -> str:
        return self.endpoint_url or f"AWS {self.region}"

    @property
    def session_key(self) -> str:
        """Whose ID token a session entry holds: one per stack and place."""
        return f"{self.stack_name}@{self.location}"

    def client(self, service: str) -> Any:
        if self.offline:
            session = boto3.Session(
                aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                aws_session_token=LOCAL_CREDENTIALS["AWS_SESSION_TOKEN"],
                region_name=self.region,
            )
        else:
            try:
                session = boto3.Session(region_name=self.region)
            except ProfileNotFound as error:
                raise AuthenticationError(f"AWS profile problem: {error}") from None
        # Against an endpoint, one retry only: a stopped offline stack is reported at once, not after backoff.
        retries: dict[str, Any] = {"mode": "standard"}
        if self.endpoint_url:
            retries["total_max_attempts"] = 2
        config = Config(connect_timeout=5, read_timeout=30, retries=retries)
        return session.client(service, endpoint_url=self.endpoint_url, config=config)


@contextmanager
def aws_errors(target: Target) -> Iterator[None]:
    """botocore's exceptions as the CLI's: unreachable or unknown stack, bad credentials, refused call."""
    try:
        yield
    except (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError, ReadTimeoutError):
        if target.endpoint_url:
            raise StackUnreachableError(
                f"cannot reach {target.endpoint_url}: is the offline stack running? Start it with "
                "`carebus local up`, or point --endpoint-url at it"
            ) from None
        raise StackUnreachableError(f"cannot reach AWS in {target.region}") from None
    except (NoCredentialsError, PartialCredentialsError):
        raise AuthenticationError(
            "no AWS credentials: configure a profile or environment credentials"
        ) from None
    except NoRegionError:
        raise UsageError("no AWS region: pass --region or set AWS_REGION") from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "")
        if code in _AWS_CREDENTIAL_REFUSALS:
            raise AuthenticationError(f"AWS refused the credentials: {code}: {message}") from None
        if error.operation_name == "DescribeStacks" and code == "ValidationError":
            raise StackUnreachableError(
                f"no stack {target.stack_name} at {target.location}: {message}"
            ) from None
        raise CarebusError(f"{error.operation_name} failed: {code}: {message}") from None
    except BotoCoreError as error:
        raise CarebusError(f"AWS call failed: {error}") from None


class Stack:
    """A carebus stack as its outputs describe it, with clients for its services."""

    def __init__(self, target: Target, outputs: Mapping[str, str]) -> None:
        self.target = target
        self.outputs = dict(outputs)
        self._clients: dict[str, Any] = {}

    @classmethod
    def find(cls, target: Target) -> "Stack":
        with aws_errors(target):
            [description] = target.client("cloudformation").describe_stacks(StackName=target.stack_name)[
                "Stacks"
            ]
        outputs = {output["OutputKey"]: output["OutputValue"] for output in description.get("Outputs", [])}
        return cls(target, outputs)

    @property
    def name(self) -> str:
        return self.target.stack_name

    def output(self, key: str) -> str:
        if key not in self.outputs:
            raise StackUnreachableError(f"stack {self.name} has no output {key}: is it a carebus stack?")
        return self.outputs[key]

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.target.client(service)
        return self._clients[service]

    def api(self, signed_in: "SignedIn") -> "ApiClient":
        return ApiClient(self.output("ApiUrl"), signed_in.id_token)


# ----- signing in ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignedIn:
    """A Cognito sign-in: who, the ID token the API takes, and when it stops working."""

    username: str
    id_token: str
    expires_at: datetime

    @property
    def expired(self) -> bool:
        return datetime.now(UTC) >= self.expires_at


def sign_in(stack: Stack, username: str, password: str) -> SignedIn:
    """USER_PASSWORD_AUTH on the stack's app client; the ID token is what API Gateway's authorizer takes."""
    cognito = stack.client("cognito-idp")
    with aws_errors(stack.target):
        try:
            answer = cognito.initiate_auth(
                ClientId=stack.output("UserPoolClientId"),
                AuthFlow="USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": username, "PASSWORD": password},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _SIGN_IN_REFUSALS:
                message = error.response["Error"].get("Message", "refused")
                raise AuthenticationError(f"sign-in as {username} failed: {message}") from None
            raise
    if "AuthenticationResult" not in answer:
        challenge = answer.get("ChallengeName", "an unknown")
        raise AuthenticationError(f"sign-in as {username} needs the {challenge} challenge answered first")
    result = answer["AuthenticationResult"]
    return SignedIn(
        username=username,
        id_token=result["IdToken"],
        expires_at=datetime.now(UTC) + timedelta(seconds=int(result.get("ExpiresIn", 3600))),
    )


def carebus_home() -> Path:
    """Where carebus keeps its files: $CAREBUS_HOME, by default ~/.carebus."""
    return Path(os.environ.get(HOME_VARIABLE) or Path.home() / ".carebus")


class SessionStore:
    """ID tokens by stack in $CAREBUS_HOME/sessions.json, readable by the owner only."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or carebus_home()
        self.path = self.home / "sessions.json"

    def save(self, target: Target, signed_in: SignedIn) -> None:
        sessions = self._read()
        sessions[target.session_key] = {
            "username": signed_in.username,
            "idToken": signed_in.id_token,
            "expiresAt": signed_in.expires_at.isoformat(),
        }
        self._write(sessions)

    def load(self, target: Target) -> SignedIn:
        entry = self._read().get(target.session_key)
        if not entry:
            raise AuthenticationError(f"not signed in to {target.stack_name}: run `carebus login` first")
        signed_in = SignedIn(entry["username"], entry["idToken"], datetime.fromisoformat(entry["expiresAt"]))
        if signed_in.expired:
            raise AuthenticationError(
                f"the session of {signed_in.username} on {target.stack_name} has expired: "
                "run `carebus login` again"
            )
        return signed_in

    def _read(self) -> dict[str, Any]:
        try:
            sessions = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}  # no file yet, or a damaged one: it only loses its sessions, the next login rewrites it
        return sessions if isinstance(sessions, dict) else {}

    def _write(self, sessions: dict[str, Any]) -> None:
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        staging = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        # 0600 from the start, so the tokens are never readable by others, not even for a moment (fchmod
        # too: a leftover staging file keeps the mode it was created with).
        descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(sessions, file, indent=2)
        os.replace(staging, self.path)


# ----- the API -------------------------------------------------------------------------------------------
class ApiClient:
    """The carebus REST API as one signed-in user sees it; error answers raise ApiProblemError."""

    def __init__(self, api_url: str, id_token: str, timeout_seconds: float = 30) -> None:
        if urllib.parse.urlsplit(api_url).scheme not in ("http", "https"):
            raise StackUnreachableError(f"the stack's ApiUrl is not an http(s) URL: {api_url}")
        self.api_url = api_url.rstrip("/")
        self.id_token = id_token
        self.timeout_seconds = timeout_seconds

    def submit_encounter(self, encounter: Mapping[str, Any], idempotency_key: str) -> Any:
        """POST /encounters; sending the same key again (a retry) answers the same encounter."""
        return self._call("POST", "/encounters", encounter, {"Idempotency-Key": idempotency_key})

    def encounter(self, encounter_id: str) -> Any:
        return self._call("GET", f"/encounters/{_segment(encounter_id)}")

    def approvals(self, status: str = "PENDING") -> list[dict[str, Any]]:
        return self._call("GET", f"/approvals?{urllib.parse.urlencode({'status': status})}")["approvals"]

    def approval(self, approval_id: str) -> Any:
        return self._call("GET", f"/approvals/{_segment(approval_id)}")

    def decide(self, approval_id: str, decision: str, reason: str | None = None) -> Any:
        body = {"decision": decision, **({"reason": reason} if reason else {})}
        return self._call("POST", f"/approvals/{_segment(approval_id)}/decision", body)

    def _call(
        self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> Any:
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.api_url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={
                "Authorization": self.id_token,
                "Accept": "application/json",
                **({"Content-Type": "application/json"} if body is not None else {}),
                **(headers or {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:  # noqa: S310
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", error)
            raise StackUnreachableError(f"cannot reach the API at {self.api_url}: {reason}") from None
        document = _json_or_none(payload)
        if status == HTTPStatus.UNAUTHORIZED:
            raise AuthenticationError("the API did not accept the session (401): run `carebus login` again")
        if status >= HTTPStatus.BAD_REQUEST:
            raise ApiProblemError(status, document if isinstance(document, dict) else {})
        return document


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _json_or_none(payload: bytes) -> Any:
    try:
        return json.loads(payload) if payload else None
    except ValueError:
        return None


@dataclass(frozen=True)
class EncounterFile:
    """What a file to submit holds: the request body, and the Idempotency-Key of an API event file."""

    body: dict[str, Any]
    idempotency_key: str | None


def read_encounter_file(path: Path) -> EncounterFile:
    """The encounter in a file: a bare request body, or an API Gateway event whose "body" is one."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: cannot read it ({error})") from None
    document = _parse_json(text, str(path))
    key = None
    if isinstance(document, dict) and "body" in document and not ENCOUNTER_MEMBERS & document.keys():
        headers = document.get("headers") if isinstance(document.get("headers"), dict) else {}
        key = next((str(value) for name, value in headers.items() if name.lower() == "idempotency-key"), None)
        body = document["body"]
        if isinstance(body, str) and document.get("isBase64Encoded"):
            try:
                body = base64.b64decode(body, validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                raise UsageError(f"{path}: its body is marked base64 but is not base64 text") from None
        document = _parse_json(body, f"{path} (its body)") if isinstance(body, str) else body
    if not isinstance(document, dict) or not ENCOUNTER_MEMBERS & document.keys():
        raise UsageError(
            f"{path}: not an encounter (expected a JSON object with {', '.join(REQUIRED_ENCOUNTER_MEMBERS)}, "
            "or an API event whose body is one)"
        )
    return EncounterFile(document, key)


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise UsageError(f"{source}: not JSON ({error})") from None


# ----- an encounter's path through the stack -------------------------------------------------------------
@dataclass(frozen=True)
class TraceStep:
    """One thing that happened to an encounter; at is None for what has not happened yet."""

    at: datetime | None
    step: str
    detail: str = ""


@dataclass(frozen=True)
class Trace:
    """An encounter's steps, ordered by time, measured from its submission."""

    encounter_id: str
    submitted_at: datetime
    steps: list[TraceStep]

    def since_submission(self, step: TraceStep) -> timedelta | None:
        return None if step.at is None else step.at - self.submitted_at

    def step_names(self) -> list[str]:
        return [step.step for step in self.steps]


def trace_encounter(stack: Stack, encounter_id: str) -> Trace:
    """Where the encounter went: intake, fan-out, the records, the domain events and approval workflows.

    Records are read with projections of ids, statuses and times only: the encounter's PHI stays put.
    """
    if not _ENCOUNTER_ID.match(encounter_id):
        raise UsageError(f"{encounter_id!r} is not an encounter id (a lower-case UUID)")
    with aws_errors(stack.target):
        encounter = _get_record(
            stack, "EncountersTableName", {"encounterId": encounter_id}, ("submittedAt", "publishedAt")
        )
        submitted_at = _timestamp((encounter or {}).get("submittedAt"))
        if encounter is None or submitted_at is None:
            raise CarebusError(f"no encounter {encounter_id} in stack {stack.name}")
        published_at = _timestamp(encounter.get("publishedAt"))
        prescriptions = _query_records(
            stack,
            "PrescriptionsTableName",
            encounter_id,
            ("prescriptionId", "status", "deaSchedule", "createdAt"),
        )
        steps = [
            TraceStep(submitted_at, "API accepted", "stored in the encounters table"),
            TraceStep(
                published_at,
                "published",
                "reference on the encounter topic"
                if published_at
                else "not yet: a retry with the same Idempotency-Key publishes it",
            ),
            *_record_steps(stack, encounter_id, prescriptions),
            *_audit_steps(stack, encounter_id),
            *_workflow_steps(stack, [record["prescriptionId"] for record in prescriptions], submitted_at),
        ]
    ordered = sorted(steps, key=lambda step: (step.at is None, step.at or submitted_at))
    return Trace(encounter_id, submitted_at, ordered)


def _record_steps(stack: Stack, encounter_id: str, prescriptions: list[dict[str, Any]]) -> list[TraceStep]:
    """What the consumers wrote: the claim, the appointment and each prescription, when they were created."""
    steps = []
    claim = _get_record(
        stack,
        "ClaimsTableName",
        {"encounterId": encounter_id},
        ("claimId", "status", "totalCents", "createdAt"),
    )
    if claim:
        total = f"{int(claim.get('totalCents', 0)) / 100:.2f}"
        steps.append(
            TraceStep(
                _timestamp(claim.get("createdAt")),
                "claim",
                f"{claim['claimId']} {claim.get('status')} {total}",
            )
        )
    appointment = _get_record(
        stack,
        "AppointmentsTableName",
        {"pk": f"ENCOUNTER#{encounter_id}", "sk": "APPOINTMENT"},
        ("appointmentId", "status", "start", "reason", "createdAt"),
    )
    if appointment:
        outcome = appointment.get("start") or appointment.get("reason") or ""
        steps.append(
            TraceStep(
                _timestamp(appointment.get("createdAt")),
                "appointment",
                f"{appointment['appointmentId']} {appointment.get('status')} {outcome}".strip(),
            )
        )
    for prescription in prescriptions:
        schedule = prescription.get("deaSchedule")
        steps.append(
            TraceStep(
                _timestamp(prescription.get("createdAt")),
                "prescription",
                f"{prescription['prescriptionId']} {prescription.get('status')}"
                + (f" (schedule {schedule})" if schedule else ""),
            )
        )
    return steps


def _audit_steps(stack: Stack, encounter_id: str) -> list[TraceStep]:
    """The encounter's domain events as the audit log group kept them (each log event is one bus event)."""
    steps = []
    paginator = stack.client("logs").get_paginator("filter_log_events")
    pages = paginator.paginate(
        logGroupName=stack.output("AuditLogGroupName"), filterPattern=f'"{encounter_id}"'
    )
    for page in pages:
        for log_event in page["events"]:
            event = _json_or_none(log_event["message"].encode())
            if not isinstance(event, dict):
                continue
            detail = event.get("detail") or {}
            facts = " ".join(
                f"{name}={value}"
                for name, value in detail.items()
                if name not in ("encounterId", "schemaVersion", "eventId")
            )
            steps.append(
                TraceStep(
                    # CloudWatch Logs stamps each audit entry with the event's time.
                    datetime.fromtimestamp(log_event["timestamp"] / 1000, UTC),
                    f"event {event.get('detail-type')}",
                    f"{event.get('source')} {facts}".strip(),
                )
            )
    return steps


def _workflow_steps(stack: Stack, prescription_ids: list[str], submitted_at: datetime) -> list[TraceStep]:
    """Approval workflow executions whose input names one of the encounter's prescriptions."""
    if not prescription_ids:
        return []
    stepfunctions = stack.client("stepfunctions")
    quoted_ids = [json.dumps(prescription_id) for prescription_id in prescription_ids]
    steps = []
    paginator = stepfunctions.get_paginator("list_executions")
    for page in paginator.paginate(stateMachineArn=stack.output("PrescriptionApprovalStateMachineArn")):
        for execution in page["executions"]:
            # Only executions since the submission can be the encounter's: no need to read the others' input.
            if execution["startDate"] < submitted_at - _EXECUTION_CLOCK_SKEW:
                continue
            described = stepfunctions.describe_execution(executionArn=execution["executionArn"])
            execution_input = described.get("input") or ""
            mentioned = [json.loads(quoted) for quoted in quoted_ids if quoted in execution_input]
            if not mentioned:
                continue
            status = described["status"]
            steps.append(
                TraceStep(
                    described["startDate"].astimezone(UTC),
                    "approval workflow started",
                    f"{mentioned[0]} execution {described['name']}"
                    + (" RUNNING" if status == "RUNNING" else ""),
                )
            )
            if described.get("stopDate"):
                steps.append(
                    TraceStep(
                        described["stopDate"].astimezone(UTC),
                        f"approval workflow {status}",
                        f"execution {described['name']}",
                    )
                )
    return steps


def _projection(attributes: Sequence[str]) -> dict[str, Any]:
    """A projection by placeholder names: some attributes (status, start) are DynamoDB reserved words."""
    names = {f"#a{index}": attribute for index, attribute in enumerate(attributes)}
    return {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}


def _get_record(
    stack: Stack, table_output: str, key: Mapping[str, str], attributes: Sequence[str]
) -> dict[str, Any] | None:
    answer = stack.client("dynamodb").get_item(
        TableName=stack.output(table_output),
        Key={name: {"S": value} for name, value in key.items()},
        ConsistentRead=True,
        **_projection([*key, *attributes]),
    )
    return from_item(answer["Item"]) if "Item" in answer else None


def _query_records(
    stack: Stack, table_output: str, encounter_id: str, attributes: Sequence[str]
) -> list[dict[str, Any]]:
    projection = _projection(attributes)
    paginator = stack.client("dynamodb").get_paginator("query")
    pages = paginator.paginate(
        TableName=stack.output(table_output),
        KeyConditionExpression="#encounter = :encounter",
        ExpressionAttributeValues={":encounter": {"S": encounter_id}},
        ProjectionExpression=projection["ProjectionExpression"],
        ExpressionAttributeNames={**projection["ExpressionAttributeNames"], "#encounter": "encounterId"},
        ConsistentRead=True,
    )
    return [from_item(item) for page in pages for item in page["Items"]]


def _timestamp(value: str | None) -> datetime | None:
    """An ISO time stored by the handlers (UTC); None where a record does not have it."""
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ----- dead-letter queues --------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeadLetterQueue:
    """A dead-letter queue among the stack's outputs, named after its output key (billing, event-delivery)."""

    name: str
    output_key: str
    url: str


@dataclass(frozen=True)
class QueueDepth:
    visible: int
    in_flight: int


@dataclass(frozen=True)
class DeadLetter:
    """A message kept in a dead-letter queue; carebus bodies carry ids only, so they are safe to show."""

    message_id: str
    body: str
    sent_at: datetime | None
    receive_count: int


@dataclass(frozen=True)
class Redrive:
    moved: int
    destination: str


def dead_letter_queues(stack: Stack) -> list[DeadLetterQueue]:
    return [
        DeadLetterQueue(_kebab(key.removesuffix(DEAD_LETTER_OUTPUT_SUFFIX)), key, url)
        for key, url in sorted(stack.outputs.items())
        if key.endswith(DEAD_LETTER_OUTPUT_SUFFIX)
    ]


def find_dead_letter_queue(stack: Stack, name: str) -> DeadLetterQueue:
    """A DLQ by logical name (billing, event-delivery; case and dashes do not matter) or output key."""
    wanted = _squashed(name.removesuffix(DEAD_LETTER_OUTPUT_SUFFIX))
    queues = dead_letter_queues(stack)
    for queue in queues:
        if wanted in (
            _squashed(queue.name),
            _squashed(queue.output_key.removesuffix(DEAD_LETTER_OUTPUT_SUFFIX)),
        ):
            return queue
    known = ", ".join(queue.name for queue in queues)
    raise UsageError(f"stack {stack.name} has no dead-letter queue {name!r} (it has {known})")


def queue_depth(stack: Stack, queue: DeadLetterQueue) -> QueueDepth:
    with aws_errors(stack.target):
        attributes = stack.client("sqs").get_queue_attributes(
            QueueUrl=queue.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
    return QueueDepth(
        int(attributes.get("ApproximateNumberOfMessages", 0)),
        int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
    )


def peek(stack: Stack, queue: DeadLetterQueue, limit: int = 10) -> list[DeadLetter]:
    """Up to limit messages, left in place: received with a visibility timeout of zero."""
    sqs = stack.client("sqs")
    seen: dict[str, DeadLetter] = {}
    with aws_errors(stack.target):
        while len(seen) < limit:
            messages = sqs.receive_message(
                QueueUrl=queue.url,
                MaxNumberOfMessages=min(_RECEIVE_LIMIT, limit - len(seen)),
                VisibilityTimeout=0,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
            ).get("Messages", [])
            fresh = [message for message in messages if message["MessageId"] not in seen]
            if not fresh:
                break
            for message in fresh:
                attributes = message.get("Attributes", {})
                sent = attributes.get("SentTimestamp")
                seen[message["MessageId"]] = DeadLetter(
                    message["MessageId"],
                    message["Body"],
                    datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None,
                    int(attributes.get("ApproximateReceiveCount", 0)),
                )
    return list(seen.values())


def redrive(stack: Stack, queue: DeadLetterQueue, timeout_seconds: float = 60) -> Redrive:
    """Move the queue's messages back to their source queue.

    On AWS that is SQS's own message move task. An emulator behind --endpoint-url (moto has no move task)
    gets the equivalent: receive, send to the source queue, delete, for the messages there now.
    """
    with aws_errors(stack.target):
        if stack.target.endpoint_url:
            return _move_messages_by_hand(stack, queue)
        return _move_messages_by_task(stack, queue, timeout_seconds)


def _move_messages_by_task(stack: Stack, queue: DeadLetterQueue, timeout_seconds: float) -> Redrive:
    sqs = stack.client("sqs")
    arn = _queue_arn(sqs, queue.url)
    sqs.start_message_move_task(SourceArn=arn)
    deadline = time.monotonic() + timeout_seconds
    while True:
        [task] = sqs.list_message_move_tasks(SourceArn=arn, MaxResults=1)["Results"]
        moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
        if task["Status"] == "COMPLETED":
            return Redrive(moved, "their source queues")
        if task["Status"] in ("FAILED", "CANCELLED"):
            raise CarebusError(
                f"the move task of {queue.name} ended {task['Status']} after {moved} messages: "
                f"{task.get('FailureReason', 'no reason given')}"
            )
        if time.monotonic() > deadline:
            raise CarebusError(
                f"the move task of {queue.name} is still running ({moved} messages moved so far)"
            )
        time.sleep(1)


def _move_messages_by_hand(stack: Stack, queue: DeadLetterQueue) -> Redrive:
    sqs = stack.client("sqs")
    source_url = _source_queue_url(sqs, queue)
    # Only what is there now: a message that fails again must not be moved round in circles.
    remaining = queue_depth(stack, queue).visible
    moved = 0
    while remaining > 0:
        messages = sqs.receive_message(
            QueueUrl=queue.url,
            MaxNumberOfMessages=min(_RECEIVE_LIMIT, remaining),
            VisibilityTimeout=30,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            sqs.send_message(
                QueueUrl=source_url,
                MessageBody=message["Body"],
                MessageAttributes=_sendable_attributes(message.get("MessageAttributes", {})),
            )
            sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
        remaining -= len(messages)
    return Redrive(moved, source_url)


def _source_queue_url(sqs: Any, queue: DeadLetterQueue) -> str:
    """The queue whose dead letters these are: the RedriveAllowPolicy's source, else the queue whose
    RedrivePolicy targets this one."""
    # "All" rather than the name: moto refuses RedriveAllowPolicy as an attribute name (and drops it).
    attributes = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"]).get("Attributes", {})
    allowed = json.loads(attributes.get("RedriveAllowPolicy") or "{}").get("sourceQueueArns", [])
    if len(allowed) == 1:
        _, _, _, _, account, name = allowed[0].split(":", 5)
        return sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
    sources = sqs.list_dead_letter_source_queues(QueueUrl=queue.url).get("queueUrls", [])
    if len(sources) == 1:
        return sources[0]
    if not sources:
        raise CarebusError(
            f"{queue.name} has no source queue to redrive to: its messages come from a subscription "
            "or a rule target, not from a queue"
        )
    raise CarebusError(f"{queue.name} is the dead-letter queue of {len(sources)} queues: redrive it on AWS")


def _sendable_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Received message attributes as SendMessage takes them (without the empty list members)."""
    return {
        name: {
            key: value
            for key, value in attribute.items()
            if key in ("DataType", "StringValue", "BinaryValue")
        }
        for name, attribute in attributes.items()
    }


def _queue_arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def _squashed(name: str) -> str:
    return re.sub(r"[-_\s]", "", name).lower()


# ----- running the offline stack -------------------------------------------------------------------------
def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(host: str, preferred: Sequence[int]) -> list[int]:
    """Each preferred port if nothing holds it, else one the system picks; all of them distinct."""
    chosen = []
    with ExitStack() as held:  # every probe stays bound until all are chosen, so none is picked twice
        for port in preferred:
            probe = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                probe.bind((host, port))
            except OSError:
                probe.bind((host, 0))
            chosen.append(int(probe.getsockname()[1]))
    return chosen


@contextmanager
def offline_runtime(options: RuntimeOptions) -> Iterator[OfflineRuntime]:
    """The offline stack, started and stopped, with no AWS account or credentials needed.

    Ports are checked first: moto's threaded server would wait forever for a port it cannot bind. The
    provisioner signs its calls with whatever credentials the process has, so it gets fake ones.
    """
    for port in (options.aws_port, options.api_port):
        if not port_is_free(options.host, port):
            raise UsageError(f"port {port} on {options.host} is in use: choose another (--port, --api-port)")
    saved = {name: os.environ.get(name) for name in (*LOCAL_CREDENTIALS, "AWS_PROFILE")}
    os.environ.update(LOCAL_CREDENTIALS)
    os.environ.pop("AWS_PROFILE", None)
    # moto's web server logs every request it serves; nobody reading this output wants them.
    werkzeug = logging.getLogger("werkzeug")
    werkzeug_level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    runtime = OfflineRuntime(options)
    try:
        runtime.start()
        yield runtime
    finally:
        runtime.stop()
        werkzeug.setLevel(werkzeug_level)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
