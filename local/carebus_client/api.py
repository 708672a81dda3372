"""The carebus REST API as a signed-in user calls it, and the files a user submits."""

import base64
import functools
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from carebus_client.errors import (
    ApiProblemError,
    AuthenticationError,
    StackUnreachableError,
    UsageError,
)


@functools.cache
def encounter_members() -> tuple[frozenset[str], list[str]]:
    """A request body's members, as the API names them, and the required ones: how a file is recognised
    as an encounter. Read from the model when a file is read (pydantic is a tenth of a second of every
    command's start otherwise)."""
    from carebus.models import EncounterRequest

    fields = EncounterRequest.model_fields.values()
    members = frozenset(field.alias for field in fields if field.alias)
    return members, sorted(field.alias for field in fields if field.alias and field.is_required())


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
        document = json_or_none(payload)
        if status == HTTPStatus.UNAUTHORIZED:
            raise AuthenticationError("the API did not accept the session (401): run `carebus login` again")
        if status >= HTTPStatus.BAD_REQUEST:
            raise ApiProblemError(status, document if isinstance(document, dict) else {})
        return document


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def json_or_none(payload: bytes) -> Any:
    """A JSON payload, or None if it is empty or not JSON."""
    try:
        return json.loads(payload) if payload else None
    except ValueError:
        return None


@dataclass(frozen=True)
class EncounterFile:
    """What a file to submit holds: the request body, and the Idempotency-Key of an API event file."""

    body: dict[str, Any]
    idempotency_key: str | None


def read_input_file(path: Path) -> str:
    """A file the user named, as text; a UsageError in one line when it cannot be read."""
    try:
        return path.read_text()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: cannot read it ({error})") from None


def read_encounter_file(path: Path) -> EncounterFile:
    """The encounter in a file: a bare request body, or an API Gateway event whose "body" is one."""
    document = _parse_json(read_input_file(path), str(path))
    members, required = encounter_members()
    key = None
    if isinstance(document, dict) and "body" in document and not members & document.keys():
        headers = document.get("headers") if isinstance(document.get("headers"), dict) else {}
        key = next((str(value) for name, value in headers.items() if name.lower() == "idempotency-key"), None)
        body = document["body"]
        if isinstance(body, str) and document.get("isBase64Encoded"):
            try:
                body = base64.b64decode(body, validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                raise UsageError(f"{path}: its body is marked base64 but is not base64 text") from None
        document = _parse_json(body, f"{path} (its body)") if isinstance(body, str) else body
    if not isinstance(document, dict) or not members & document.keys():
        raise UsageError(
            f"{path}: not an encounter (expected a JSON object with {', '.join(required)}, "
            "or an API event whose body is one)"
        )
    return EncounterFile(document, key)


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise UsageError(f"{source}: not JSON ({error})") from None
