"""Finding a carebus stack (offline, rehearsed or deployed) through its CloudFormation outputs, and
signing in to it.

A stack is found the same way wherever it runs: CloudFormation DescribeStacks, then its outputs (ApiUrl,
UserPoolClientId, table names, queue URLs, ...). The offline stack publishes its outputs as a
CloudFormation stack on its own endpoint, so nothing here names a resource of the template.
"""

import functools
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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

from carebus_client.api import ApiClient
from carebus_client.errors import (
    AuthenticationError,
    CarebusError,
    StackUnreachableError,
    UsageError,
)

# The offline stack, as every client finds it unless told otherwise: its name, where it listens, and the
# fake credentials it accepts (they make clear in any error message that nothing reached AWS).
DEFAULT_STACK_NAME = "carebus-local"
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "carebus-local",
    "AWS_SECRET_ACCESS_KEY": "carebus-local",
    "AWS_SESSION_TOKEN": "carebus-local",
}
LOCAL_ENDPOINT_URL = "http://127.0.0.1:4566"
LOCAL_REGION = "us-east-1"
ENDPOINT_URL_VARIABLE = "CAREBUS_ENDPOINT_URL"
API_URL_VARIABLE = "CAREBUS_API_URL"
HOME_VARIABLE = "CAREBUS_HOME"

_SIGN_IN_REFUSALS = frozenset(
    {
        "NotAuthorizedException",
        "UserNotFoundException",
        "UserNotConfirmedException",
        "PasswordResetRequiredException",
        "CodeMismatchException",
        "ExpiredCodeException",
    }
)
# What a user must do before Cognito hands out tokens, by the challenge it answered with.
_CHALLENGE_HINTS = {
    "SOFTWARE_TOKEN_MFA": "the current code of the user's authenticator app is needed",
    "MFA_SETUP": "the pool requires MFA: the user must enrol an authenticator app first (docs/security.md)",
}
_AWS_CREDENTIAL_REFUSALS = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)


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
    # Where the API is served when not at the ApiUrl output: an emulator serves it elsewhere, and a custom
    # domain may front it.
    api_url: str | None = None

    @classmethod
    def select(
        cls,
        stack_name: str | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        api_url: str | None = None,
    ) -> "Target":
        endpoint = endpoint_url or os.environ.get(ENDPOINT_URL_VARIABLE) or None
        api = api_url or os.environ.get(API_URL_VARIABLE) or None
        if stack_name is None:
            return cls(DEFAULT_STACK_NAME, endpoint or LOCAL_ENDPOINT_URL, region or LOCAL_REGION, True, api)
        try:
            session_region = region or boto3.Session().region_name
        except ProfileNotFound as error:
            raise AuthenticationError(f"AWS profile problem: {error}") from None
        if not session_region:
            raise UsageError("no AWS region: pass --region or set AWS_REGION")
        return cls(stack_name, endpoint, session_region, False, api)

    @property
    def location(self) -> str:
        return self.endpoint_url or f"AWS {self.region}"

    @property
    def session_key(self) -> str:
        """Whose ID token a session entry holds: one per stack and place."""
        return f"{self.stack_name}@{self.location}"

    def client(self, service: str) -> Any:
        if self.offline:
            session = _offline_session(self.region)
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


@functools.cache
def _offline_session(region: str) -> boto3.Session:
    """One session for every client of the offline stack in this process: a session loads each service's
    model anew, a tenth of a second for a command's second client otherwise. Its credentials are fixed,
    whatever the environment says (an AWS session is made afresh each time: it reads the environment)."""
    return boto3.Session(
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=LOCAL_CREDENTIALS["AWS_SESSION_TOKEN"],
        region_name=region,
    )


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

    def api(self, signed_in: "SignedIn", timeout_seconds: float = 30) -> "ApiClient":
        return ApiClient(self.target.api_url or self.output("ApiUrl"), signed_in.id_token, timeout_seconds)


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


def sign_in(stack: Stack, username: str, password: str, mfa_code: str | None = None) -> SignedIn:
    """USER_PASSWORD_AUTH on the stack's app client; the ID token is what API Gateway's authorizer takes.
    A user with a TOTP authenticator answers the SOFTWARE_TOKEN_MFA challenge with its current code."""
    cognito = stack.client("cognito-idp")
    client_id = stack.output("UserPoolClientId")
    with aws_errors(stack.target):
        try:
            answer = cognito.initiate_auth(
                ClientId=client_id,
                AuthFlow="USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": username, "PASSWORD": password},
            )
            if answer.get("ChallengeName") == "SOFTWARE_TOKEN_MFA" and mfa_code:
                answer = cognito.respond_to_auth_challenge(
                    ClientId=client_id,
                    ChallengeName="SOFTWARE_TOKEN_MFA",
                    Session=answer["Session"],
                    ChallengeResponses={
                        "USERNAME": answer.get("ChallengeParameters", {}).get("USER_ID_FOR_SRP", username),
                        "SOFTWARE_TOKEN_MFA_CODE": mfa_code,
                    },
                )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _SIGN_IN_REFUSALS:
                message = error.response["Error"].get("Message", "refused")
                raise AuthenticationError(f"sign-in as {username} failed: {message}") from None
            raise
    if "AuthenticationResult" not in answer:
        challenge = answer.get("ChallengeName", "an unknown")
        hint = _CHALLENGE_HINTS.get(challenge, f"the {challenge} challenge must be answered first")
        raise AuthenticationError(f"sign-in as {username} is not complete: {hint}")
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
