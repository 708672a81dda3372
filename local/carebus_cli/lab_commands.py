"""The commands a workshop lab runs between its steps, offline or with --stack:

  carebus local env              export lines that point the AWS CLI and boto3 at the offline stack
  carebus token                  the signed-in user's ID token, for curl's Authorization header
  carebus queues [--watch S]     every queue of the stack's outputs with its message counts
  carebus send QUEUE BODY        one raw message into a queue (a poison message, say)
  carebus events [--last M]      the domain events that reached the bus, from the audit log
  carebus replay --since TIME    the bus's archive replayed onto the bus, waited for
  carebus logs ID                every function's log lines that mention an id

They print plain text, one fact a line, so that a lab's "what you should see" can be matched line by
line: what varies (ids, counts, times) stands in a fixed place or on a line of its own. Plain prints, not
the console: a token or an event line must never be wrapped.
"""

import argparse
import json
import os
import re
import shlex
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from carebus_cli.waiting import add_wait_options, show_when_ready
from carebus_client.api import read_input_file
from carebus_client.bus import BusEvent, audit_events, start_replay, wait_for_replay
from carebus_client.errors import ExitCode, UsageError
from carebus_client.logs import describe, encounter_log_lines
from carebus_client.queues import QueueCounts, find_queue, queue_counts, send_message
from carebus_client.stacks import (
    API_URL_VARIABLE,
    ENDPOINT_URL_VARIABLE,
    LOCAL_ENDPOINT_URL,
    LOCAL_REGION,
    SessionStore,
    Stack,
    Target,
)
from carebus_local.template import load_template

CommandFactory = Callable[..., argparse.ArgumentParser]

# moto takes any credentials; these are the ones its documentation uses. A session token too, so that a
# real one left in the shell is not sent along with them.
OFFLINE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
DEFAULT_EVENTS_MINUTES = 60
DEFAULT_REPLAY_TIMEOUT_SECONDS = 300
# Detail members every event carries that say nothing of this one: the schema, and the eventId that
# repeats the detail type and the subject's id.
_ENVELOPE_DETAIL = ("schemaVersion", "eventId")


def target_of(args: argparse.Namespace) -> Target:
    return Target.select(args.stack, args.endpoint_url, args.region, args.api_url)


# ----- carebus local env ---------------------------------------------------------------------------------
def run_local_env(args: argparse.Namespace, _console: Console) -> int:
    if args.stack:
        raise UsageError("local env points at the offline stack; a deployed one needs no endpoint")
    endpoint = args.endpoint_url or os.environ.get(ENDPOINT_URL_VARIABLE) or LOCAL_ENDPOINT_URL
    api = args.api_url or os.environ.get(API_URL_VARIABLE) or offline_api_url()
    variables = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": LOCAL_REGION,
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        **OFFLINE_CREDENTIALS,
        ENDPOINT_URL_VARIABLE: endpoint,
        API_URL_VARIABLE: api,
    }
    for name, value in variables.items():
        print(f"export {name}={shlex.quote(value)}")
    return ExitCode.OK


def offline_api_url() -> str:
    """Where `carebus local up` serves the API by default: its host and port, and the template's stage
    (read from the template: the stack need not be running)."""
    from carebus_local.runtime import RuntimeOptions  # the offline stack's whole runtime: only here

    options = RuntimeOptions()
    # The staff API's stage; the partner API has its own (PartnerApiUrl).
    stage = load_template(options.template_path)["Resources"]["CarebusApi"]["Properties"]["StageName"]
    return f"http://{options.host}:{options.api_port}/{stage}"


# ----- carebus token -------------------------------------------------------------------------------------
def run_token(args: argparse.Namespace, _console: Console) -> int:
    print(SessionStore().load(target_of(args)).id_token)
    return ExitCode.OK


# ----- carebus queues, carebus send ----------------------------------------------------------------------
def run_queues(args: argparse.Namespace, console: Console) -> int:
    stack = Stack.find(target_of(args))
    if args.wait_for:
        return show_when_ready(
            args, console, lambda: Text("\n".join(queue_line(counts) for counts in queue_counts(stack)))
        )
    if args.watch is None:
        _print_queue_counts(stack)
        return ExitCode.OK
    try:
        while True:
            print(f"# {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}")
            _print_queue_counts(stack)
            time.sleep(args.watch)
    except KeyboardInterrupt:  # the way out of --watch, not a failure
        return ExitCode.OK


def _print_queue_counts(stack: Stack) -> None:
    for counts in queue_counts(stack):
        print(queue_line(counts), flush=True)


def queue_line(counts: QueueCounts) -> str:
    return (
        f"{counts.queue.name} {counts.queue.queue_name} "
        f"visible={counts.visible} in-flight={counts.in_flight} delayed={counts.delayed}"
    )


def run_send(args: argparse.Namespace, _console: Console) -> int:
    body = _message_body(args.body, raw=args.raw)
    stack = Stack.find(target_of(args))
    queue = find_queue(stack, args.queue)
    message_id = send_message(stack, queue, body)
    print(f"Sent {message_id} to {queue.name} ({queue.queue_name})")
    # Last, on a line of its own, as submit prints the encounter's id.
    print(message_id)
    return ExitCode.OK


def _message_body(given: str, *, raw: bool) -> str:
    """BODY as given, or the content of @FILE; JSON unless --raw (a quoting slip in the shell is caught)."""
    body = read_input_file(Path(given[1:])) if given.startswith("@") else given
    if not raw:
        try:
            json.loads(body)
        except ValueError as error:
            raise UsageError(
                f"the message body is not JSON ({error}): pass --raw to send it as it is"
            ) from None
    return body


# ----- carebus events ------------------------------------------------------------------------------------
def run_events(args: argparse.Namespace, _console: Console) -> int:
    stack = Stack.find(target_of(args))
    since = window_start(args, datetime.now(UTC), DEFAULT_EVENTS_MINUTES)
    for event in audit_events(stack, since, detail_types=args.detail_type):
        print(event_line(event))
    return ExitCode.OK


def event_line(event: BusEvent) -> str:
    """time detail-type source, then the detail's members as name=value (encounterId first), then the
    replay's name for a replayed event."""
    members = {name: value for name, value in event.detail.items() if name not in _ENVELOPE_DETAIL}
    ordered = sorted(members, key=lambda name: (name != "encounterId", name))
    facts = [f"{name}={_value_text(members[name])}" for name in ordered]
    if event.replay_name:
        facts.append(f"replay={event.replay_name}")
    return " ".join([event.time, event.detail_type, event.source, *facts])


def _value_text(value: Any) -> str:
    """A plain word as it is; anything else (spaces, quotes, empty, a number, null) as JSON."""
    if isinstance(value, str) and re.fullmatch(r"[^\s\"=]+", value):
        return value
    return json.dumps(value)


# ----- carebus replay ------------------------------------------------------------------------------------
def run_replay(args: argparse.Namespace, _console: Console) -> int:
    stack = Stack.find(target_of(args))
    now = datetime.now(UTC)
    since = args.since or now - timedelta(minutes=args.last)
    replay = start_replay(stack, since, args.until or now, args.archive)
    for label, value in (
        ("archive", replay.archive),
        ("bus", replay.bus),
        ("since", moment_text(replay.since)),
        ("until", moment_text(replay.until)),
    ):
        print(f"{label} {value}")
    # One line a state, the replay's name always second: "Replay <name> COMPLETED" is the one to wait for.
    wait_for_replay(
        stack,
        replay,
        args.timeout,
        lambda state: print(f"Replay {replay.name} {state}", flush=True),
    )
    return ExitCode.OK


def moment_text(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


# ----- parsing -------------------------------------------------------------------------------------------
def moment(text: str) -> datetime:
    """An ISO 8601 time; without an offset it is UTC."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (e.g. 2026-12-01T09:30:00Z)"
        ) from None
    return parsed if parsed.utcoffset() is not None else parsed.replace(tzinfo=UTC)


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def add_window_options(parser: argparse.ArgumentParser, default_minutes: int) -> None:
    """--since TIME or --last MINUTES: where a command's time window starts (window_start reads them)."""
    window = parser.add_mutually_exclusive_group()
    window.add_argument(
        "--since", type=moment, metavar="TIME", help="from this ISO 8601 time (UTC if no offset)"
    )
    window.add_argument(
        "--last",
        type=positive,
        metavar="MINUTES",
        help=f"from this many minutes ago (default {default_minutes})",
    )


def window_start(args: argparse.Namespace, until: datetime, default_minutes: int) -> datetime:
    """The start of the window add_window_options asked for, ending at until."""
    return args.since or until - timedelta(minutes=args.last or default_minutes)


def run_logs(args: argparse.Namespace, console: Console) -> int:
    lines = encounter_log_lines(Stack.find(target_of(args)), args.id)
    for line in lines:
        print(describe(line))
    if not lines:
        print(f"carebus: no log line mentions {args.id}", file=sys.stderr)
        return ExitCode.REFUSED
    return ExitCode.OK


def add_lab_commands(commands: Any, local_commands: Any, command: CommandFactory) -> None:
    """The lab commands, in the CLI's command groups; command() makes each one as the CLI's others."""
    env = command(
        local_commands,
        "env",
        run_local_env,
        'export lines for the AWS CLI and boto3 to use the offline stack: eval "$(carebus local env)"',
        on_stack=False,
    )
    env.add_argument(
        "--endpoint-url",
        default=argparse.SUPPRESS,
        help=f"the offline stack's AWS endpoint (default: ${ENDPOINT_URL_VARIABLE} or {LOCAL_ENDPOINT_URL})",
    )
    env.add_argument(
        "--api-url",
        default=argparse.SUPPRESS,
        help=f"its REST API (default: ${API_URL_VARIABLE} or where `carebus local up` serves it)",
    )

    command(
        commands,
        "token",
        run_token,
        'the signed-in user\'s ID token on one line: curl -H "Authorization: $(carebus token)" ...',
    )

    queues = command(
        commands,
        "queues",
        run_queues,
        "every queue of the stack with its visible, in-flight and delayed messages",
    )
    queues.add_argument(
        "--watch", type=positive, metavar="SECONDS", help="print the counts again every SECONDS until Ctrl-C"
    )
    add_wait_options(queues, "the counts")

    send = command(
        commands, "send", run_send, "send one raw message to a queue (SendMessage) and print its id"
    )
    send.add_argument("queue", help="billing, scheduling, prescriptions, ... or the queue's name")
    send.add_argument("body", help="the message body: a JSON text, or @FILE for a file's content")
    send.add_argument("--raw", action="store_true", help="send BODY as it is, even if it is not JSON")

    events = command(
        commands,
        "events",
        run_events,
        "the domain events that reached the bus (its audit log), in time order",
    )
    add_window_options(events, DEFAULT_EVENTS_MINUTES)
    events.add_argument(
        "--detail-type",
        action="append",
        default=[],
        metavar="TYPE",
        help="only events of this detail type (ClaimSubmitted, ...); may be repeated",
    )

    logs = command(
        commands,
        "logs",
        run_logs,
        "every function's log lines that mention an id (CloudWatch Logs; offline, the handler log)",
    )
    logs.add_argument("id", help="an encounter's id, or a prescription's or an approval's")

    replay = command(
        commands,
        "replay",
        run_replay,
        "replay the bus's archive onto the bus (StartReplay) and wait until it has completed",
    )
    window = replay.add_mutually_exclusive_group(required=True)
    window.add_argument(
        "--since", type=moment, metavar="TIME", help="events from this ISO 8601 time (UTC if no offset)"
    )
    window.add_argument("--last", type=positive, metavar="MINUTES", help="events of the last MINUTES")
    replay.add_argument("--until", type=moment, metavar="TIME", help="events until this time (default: now)")
    replay.add_argument("--archive", help="the archive to replay, if the bus has more than one")
    replay.add_argument(
        "--timeout",
        type=positive,
        default=DEFAULT_REPLAY_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"stop waiting after SECONDS (default {DEFAULT_REPLAY_TIMEOUT_SECONDS}); the replay goes on",
    )
