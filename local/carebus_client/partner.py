"""The partner's side of carebus: the partner API called as a partner calls it (an access token from the
client-credentials grant, and its API key), and the offline stack's stand-in clearinghouse.

A partner gets its client id, secret and API key from whoever runs the stack; here they are read from the
stack itself (its outputs, then DescribeUserPoolClient and GetApiKey), as that operator would. The answers
are returned as they came, status and all: a lab shows a partner what a refusal looks like.
"""

import base64
import http.client
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from carebus_client.api import json_or_none
from carebus_client.errors import StackUnreachableError
from carebus_client.stacks import Stack

PARTNER_SCOPE_OUTPUT = "PartnerScope"
DEFAULT_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class HttpAnswer:
    """One HTTP answer: its status, its headers (names in lower case) and its body (JSON, else text)."""

    status: int
    headers: dict[str, str]
    body: Any

    @property
    def problem_type(self) -> str | None:
        """The last part of a problem's type (throttled, quota-exceeded, ...), if the body is a problem."""
        kind = self.body.get("type") if isinstance(self.body, dict) else None
        return kind.rstrip("/").rsplit("/", 1)[-1] if isinstance(kind, str) else None


@dataclass(frozen=True)
class PartnerCredentials:
    """What a partner is given to call the partner API."""

    api_url: str
    token_url: str
    client_id: str
    client_secret: str
    api_key: str
    scope: str


# Where an emulator serves the partner API and the token endpoint, when not where the outputs say (MiniStack
# serves every REST API and the token endpoint on its own port): set by `make rehearse`.
PARTNER_API_URL_VARIABLE = "CAREBUS_PARTNER_API_URL"
PARTNER_TOKEN_URL_VARIABLE = "CAREBUS_PARTNER_TOKEN_URL"  # noqa: S105 - a variable's name


def partner_credentials(stack: Stack) -> PartnerCredentials:
    """The clearinghouse's credentials, as the stack's operator hands them over."""
    client = stack.client("cognito-idp").describe_user_pool_client(
        UserPoolId=stack.output("UserPoolId"), ClientId=stack.output("ClearinghouseClientId")
    )["UserPoolClient"]
    key = stack.client("apigateway").get_api_key(
        apiKey=stack.output("ClearinghouseApiKeyId"), includeValue=True
    )
    return PartnerCredentials(
        api_url=(os.environ.get(PARTNER_API_URL_VARIABLE) or stack.output("PartnerApiUrl")).rstrip("/"),
        token_url=os.environ.get(PARTNER_TOKEN_URL_VARIABLE) or stack.output("PartnerTokenUrl"),
        client_id=client["ClientId"],
        client_secret=client.get("ClientSecret", ""),
        api_key=key["value"],
        scope=stack.output(PARTNER_SCOPE_OUTPUT),
    )


def request_token(credentials: PartnerCredentials, scope: str | None = None) -> HttpAnswer:
    """POST the token endpoint with the client-credentials grant (client id and secret as HTTP Basic)."""
    basic = base64.b64encode(f"{credentials.client_id}:{credentials.client_secret}".encode()).decode()
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope is not None else {})}
    return _exchange(
        credentials.token_url,
        "POST",
        {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        urllib.parse.urlencode(form).encode(),
    )


def access_token(credentials: PartnerCredentials, scope: str | None = None) -> str:
    answer = request_token(credentials, scope)
    if answer.status != 200 or not isinstance(answer.body, dict) or "access_token" not in answer.body:
        raise StackUnreachableError(f"the token endpoint answered {answer.status}: {answer.body}")
    return str(answer.body["access_token"])


def call_partner_api(
    credentials: PartnerCredentials, path: str, *, token: str | None, send_key: bool = True
) -> HttpAnswer:
    """GET a partner API path (with its query), with the token and the API key a partner sends."""
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if send_key:
        headers["x-api-key"] = credentials.api_key
    return _exchange(credentials.api_url + path, "GET", headers)


def claims_path(since: str, limit: int | None = None, page_token: str | None = None) -> str:
    query = {
        "since": since,
        **({"limit": str(limit)} if limit else {}),
        **({"pageToken": page_token} if page_token else {}),
    }
    return "/claims?" + urllib.parse.urlencode(query)


def claim_path(claim_id: str) -> str:
    return "/claims/" + urllib.parse.quote(claim_id, safe="")


# ----- the stand-in clearinghouse (offline only) ---------------------------------------------------------
def _standin(stack: Stack) -> tuple[str, ssl.SSLContext]:
    if "ClearinghouseUrl" not in stack.outputs:
        raise StackUnreachableError(
            f"stack {stack.name} has no stand-in clearinghouse (carebus local up --clearinghouse starts one)"
        )
    return stack.outputs["ClearinghouseUrl"].rstrip("/"), ssl.create_default_context(
        cafile=stack.output("ClearinghouseCaFile")
    )


def clearinghouse_deliveries(stack: Stack) -> list[dict[str, Any]]:
    """Every request the stand-in received, oldest first."""
    url, context = _standin(stack)
    answer = _exchange(f"{url}/_standin/deliveries", "GET", {"Accept": "application/json"}, context=context)
    return list(answer.body["deliveries"]) if isinstance(answer.body, dict) else []


def fail_clearinghouse(stack: Stack, status: int, count: int) -> HttpAnswer:
    """Make the stand-in answer its next `count` claim requests with `status`."""
    url, context = _standin(stack)
    body = json.dumps({"status": status, "count": count}).encode()
    return _exchange(
        f"{url}/_standin/failures", "POST", {"Content-Type": "application/json"}, body, context=context
    )


def _exchange(
    url: str,
    method: str,
    headers: dict[str, str],
    body: bytes | None = None,
    *,
    context: ssl.SSLContext | None = None,
) -> HttpAnswer:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise StackUnreachableError(f"not an http(s) URL: {url}")
    request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=DEFAULT_TIMEOUT_SECONDS, context=context) as answer:  # noqa: S310
            status, answer_headers, payload = answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, payload = error.code, error.headers, error.read()
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise StackUnreachableError(f"cannot reach {url}: {getattr(error, 'reason', error)}") from None
    document = json_or_none(payload)
    return HttpAnswer(
        status,
        {name.lower(): value for name, value in answer_headers.items()},
        document if document is not None else payload.decode("utf-8", errors="replace"),
    )
