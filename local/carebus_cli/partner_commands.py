"""What a partner does, and what the stand-in clearinghouse saw (lab 10):

  carebus partner token [--scope S]          an access token by the client-credentials grant
  carebus partner claims [--last M] [...]     GET /claims as the clearinghouse, its answers as they come
  carebus partner claim CLAIM_ID [...]        GET /claims/{claimId}
  carebus clearinghouse deliveries            what the offline stand-in clearinghouse received
  carebus clearinghouse fail --status N       its next claim requests answer N

Every partner API answer is printed as `HTTP <status>` (and the problem's type on a refusal) followed by
what it holds, one fact a line, so that a lab can match it; a refusal is not an error of the command.
"""

import argparse
import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.text import Text

from carebus_cli.lab_commands import add_window_options, moment_text, target_of, window_start
from carebus_cli.waiting import add_wait_options, show_when_ready
from carebus_client.errors import ExitCode, UsageError
from carebus_client.partner import (
    HttpAnswer,
    PartnerCredentials,
    access_token,
    call_partner_api,
    claim_path,
    claims_path,
    clearinghouse_deliveries,
    fail_clearinghouse,
    partner_credentials,
    request_token,
)
from carebus_client.stacks import Stack

CommandFactory = Callable[..., argparse.ArgumentParser]
DEFAULT_CLAIMS_MINUTES = 60


def add_partner_commands(commands: Any, local_up: argparse.ArgumentParser, command: CommandFactory) -> None:
    local_up.add_argument(
        "--clearinghouse",
        action="store_true",
        help="start a stand-in clearinghouse on loopback and send it every submitted claim "
        "(the template's API destination, offline)",
    )
    partner = commands.add_parser("partner", help="the partner API, as the clearinghouse calls it")
    partner_commands = partner.add_subparsers(dest="partner_command", required=True, metavar="COMMAND")
    token = command(partner_commands, "token", run_partner_token, "an access token (client credentials)")
    token.add_argument("--scope", help="the scope to ask for (default: every scope the client is allowed)")
    claims = command(partner_commands, "claims", run_partner_claims, "claims submitted since a time")
    add_window_options(claims, DEFAULT_CLAIMS_MINUTES)
    claims.add_argument("--limit", type=int, help="claims per page (1-100; default 50)")
    claims.add_argument("--page-token", help="the nextPageToken of the page before")
    claim = command(partner_commands, "claim", run_partner_claim, "one claim, lines and totals included")
    claim.add_argument("claim_id")
    for call in (claims, claim):
        call.add_argument("--scope", help="ask the token for this scope instead")
        call.add_argument("--without-token", action="store_true", help="send no access token")
        call.add_argument("--without-key", action="store_true", help="send no API key")
        call.add_argument("--times", type=int, default=1, help="send the request this many times (default 1)")
        call.add_argument(
            "--pause", type=float, default=0.0, metavar="SECONDS", help="wait this long between the requests"
        )

    clearinghouse = commands.add_parser("clearinghouse", help="the offline stand-in clearinghouse")
    clearinghouse_commands = clearinghouse.add_subparsers(
        dest="clearinghouse_command", required=True, metavar="COMMAND"
    )
    deliveries = command(
        clearinghouse_commands, "deliveries", run_clearinghouse_deliveries, "every request it received"
    )
    add_wait_options(deliveries, "the deliveries")
    fail = command(
        clearinghouse_commands, "fail", run_clearinghouse_fail, "answer its next claims with an error"
    )
    fail.add_argument(
        "--status", type=int, required=True, help="the HTTP status to answer (503, 429, 400...)"
    )
    fail.add_argument("--times", type=int, default=1, help="for this many claim requests (default 1)")


# ----- the partner API -----------------------------------------------------------------------------------
def run_partner_token(args: argparse.Namespace, _console: Console) -> int:
    credentials = partner_credentials(Stack.find(target_of(args)))
    answer = request_token(credentials, args.scope)
    if answer.status != 200 or not isinstance(answer.body, dict):
        print(f"HTTP {answer.status} {json.dumps(answer.body)}")
        return ExitCode.REFUSED
    print(f"HTTP 200 {answer.body.get('token_type')} token for client {credentials.client_id}")
    print(f"scope {_token_claims(answer.body['access_token']).get('scope')}")
    print(f"expires in {answer.body.get('expires_in')} s")
    # Last, on a line of its own: TOKEN=$(carebus partner token | tail -n 1)
    print(answer.body["access_token"])
    return ExitCode.OK


def run_partner_claims(args: argparse.Namespace, _console: Console) -> int:
    since = window_start(args, datetime.now(UTC), DEFAULT_CLAIMS_MINUTES)
    return _call_repeatedly(args, claims_path(moment_text(since), args.limit, args.page_token))


def run_partner_claim(args: argparse.Namespace, _console: Console) -> int:
    return _call_repeatedly(args, claim_path(args.claim_id))


def _call_repeatedly(args: argparse.Namespace, path: str) -> int:
    if args.times < 1:
        raise UsageError("--times takes 1 or more")
    credentials = partner_credentials(Stack.find(target_of(args)))
    token = None if args.without_token else access_token(credentials, args.scope)
    for number in range(args.times):
        if number and args.pause:
            time.sleep(args.pause)
        _print_answer(_call(credentials, path, token, args))
    return ExitCode.OK


def _call(
    credentials: PartnerCredentials, path: str, token: str | None, args: argparse.Namespace
) -> HttpAnswer:
    return call_partner_api(credentials, path, token=token, send_key=not args.without_key)


def _print_answer(answer: HttpAnswer) -> None:
    if answer.problem_type is not None:
        detail = answer.body.get("detail") if isinstance(answer.body, dict) else None
        print(f"HTTP {answer.status} {answer.problem_type}: {detail}", flush=True)
        for error in answer.body.get("errors") or []:
            print(f"  {error.get('field')}: {error.get('message')} ({error.get('code')})")
        return
    print(f"HTTP {answer.status}", flush=True)
    body = answer.body if isinstance(answer.body, dict) else {}
    for claim in body.get("claims", [body] if "claimId" in body else []):
        print(
            f"claim {claim['claimId']} total={claim['totalCents']} {claim['currency']} "
            f"lines={len(claim['lines'])} submitted={claim['submittedAt']}"
        )
        for line in claim["lines"]:
            code = f"{line['system']} {line['code']}"
            print(f"  line {line['lineNumber']} {code} x{line['units']} = {line['amountCents']}")
    if "claims" in body:
        print(f"next page {body['nextPageToken'] or 'none'}")


def _token_claims(token: str) -> dict[str, Any]:
    """What an access token says of itself (unverified: API Gateway verifies it; this only reads it)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# ----- the stand-in clearinghouse ------------------------------------------------------------------------
def run_clearinghouse_deliveries(args: argparse.Namespace, console: Console) -> int:
    stack = Stack.find(target_of(args))

    def view() -> str:
        return "\n".join(_delivery_lines(clearinghouse_deliveries(stack))) or "no deliveries yet"

    if args.wait_for:
        return show_when_ready(args, console, lambda: Text(view()))
    print(view())
    return ExitCode.OK


def _delivery_lines(deliveries: list[dict[str, Any]]) -> list[str]:
    lines = []
    for delivery in deliveries:
        body = delivery["body"] if isinstance(delivery["body"], dict) else {}
        key = "ok" if delivery["key_matched"] else "wrong"
        repeat = " duplicate" if delivery["duplicate"] else ""
        lines.append(f"{delivery['status']} {body.get('claimId', '-')} key={key}{repeat}")
        lines.append(f"  fields {' '.join(sorted(body))}")
    return lines


def run_clearinghouse_fail(args: argparse.Namespace, _console: Console) -> int:
    if args.times < 0:
        raise UsageError("--times takes 0 (stop failing) or more")
    answer = fail_clearinghouse(Stack.find(target_of(args)), args.status, args.times)
    if answer.status >= 300:
        print(f"HTTP {answer.status} {json.dumps(answer.body)}")
        return ExitCode.REFUSED
    print(f"The next {args.times} claim request(s) get HTTP {args.status}")
    return ExitCode.OK
