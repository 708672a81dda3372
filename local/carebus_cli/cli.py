"""carebus: the command line of a carebus stack, the offline one or a deployed one.

  carebus local up                      serve the whole stack offline until Ctrl-C
  carebus local env                     export lines for the AWS CLI: eval "$(carebus local env)"
  carebus demo                          run the scripted scenario on a fresh offline stack
  carebus login --as physician          sign in (or --username NAME [--password P] [--mfa-code CODE])
  carebus token                         the signed-in user's ID token, for curl
  carebus submit FILE | --sample        POST /encounters with an encounter body, API event file or sample
  carebus trace ENCOUNTER_ID            one encounter's path through the stack, with times
  carebus queues [--watch SECONDS]      every queue with its visible, in-flight and delayed messages
  carebus send QUEUE BODY               one raw message into a queue
  carebus events [--last MINUTES]       the domain events that reached the bus (the audit log)
  carebus metrics [--last MINUTES]      the functions' metrics: samples, sum, p50/p90/p99/max of durations
  carebus replay --since TIME           replay the bus's archive onto the bus and wait for it
  carebus approvals list|show|approve|reject
  carebus dlq list|show|redrive QUEUE
  carebus partner token|claims|claim    the partner API, as the clearinghouse calls it
  carebus clearinghouse deliveries|fail the offline stand-in clearinghouse

Without --stack every command talks to the offline stack at http://127.0.0.1:4566 (or --endpoint-url,
or $CAREBUS_ENDPOINT_URL). With --stack NAME it finds a deployed stack through the default AWS session.
Sign-ins are kept per stack in $CAREBUS_HOME/sessions.json (default ~/.carebus), readable by you only.

Exit codes (scripts may rely on them):
  0  success
  1  the operation was refused or a check failed (an API error answer, demo expectations not met)
  2  usage error (arguments, or an input file that is missing, not JSON or not an encounter)
  3  the stack cannot be reached or found
  4  authentication failed or missing (wrong password, not signed in, expired session, no AWS credentials)
"""

import argparse
import getpass
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from carebus_cli.lab_commands import add_lab_commands, target_of
from carebus_cli.metrics_command import add_metrics_command
from carebus_cli.partner_commands import add_partner_commands
from carebus_cli.render import fields_table, moment_text, text, trace_table
from carebus_cli.waiting import add_wait_options, show_when_ready
from carebus_client.api import ApiClient, EncounterFile, read_encounter_file
from carebus_client.dead_letters import dead_letter_queues, find_dead_letter_queue, peek, queue_depth, redrive
from carebus_client.errors import CarebusError, ExitCode, UsageError
from carebus_client.output import console
from carebus_client.samples import full_encounter
from carebus_client.stacks import LOCAL_ENDPOINT_URL, SessionStore, Stack, sign_in
from carebus_local.demo_users import DEMO_PASSWORD, DEMO_USERS
from carebus_local.template import TEMPLATE_PATH

EXIT_CODES_HELP = __doc__[__doc__.index("Exit codes") :]

# What a pharmacist sees of each approval in a listing, after its id: field and heading.
APPROVAL_COLUMNS = {
    "drug": "drug",
    "deaSchedule": "schedule",
    "quantity": "quantity",
    "refills": "refills",
    "prescriberNpi": "prescriber NPI",
    "requestedAt": "requested",
    "escalated": "escalated",
}

Command = Callable[[argparse.Namespace, Console], int]
# A lab runs dozens of short commands, each a process of its own: what only one command needs (the offline
# stack, the demo, the trace) is imported by that command.


def _report(error: CarebusError) -> int:
    # Plain prints: one line each, never wrapped or styled, whatever the terminal.
    print(f"carebus: error: {error}", file=sys.stderr)
    for detail in error.details:
        print(f"  {detail}", file=sys.stderr)
    return int(error.exit_code)


# ----- the commands --------------------------------------------------------------------------------------
def _signed_in_api(args: argparse.Namespace) -> ApiClient:
    """The stack's API as the signed-in user; the session is checked before any network call."""
    target = target_of(args)
    signed_in = SessionStore().load(target)
    return Stack.find(target).api(signed_in)


def run_login(args: argparse.Namespace, console: Console) -> int:
    target = target_of(args)
    if args.role:
        if not target.endpoint_url:
            raise UsageError("--as signs in a demo user of an offline stack; on AWS use --username")
        username, password = DEMO_USERS[args.role][0], DEMO_PASSWORD
    else:
        username = args.username
        password = (
            args.password if args.password is not None else getpass.getpass(f"Password for {username}: ")
        )
    stack = Stack.find(target)
    signed_in = sign_in(stack, username, password, args.mfa_code)
    SessionStore().save(target, signed_in)
    console.print(
        f"Signed in to {stack.name} ({target.location}) as {username} "
        f"until {signed_in.expires_at:%Y-%m-%d %H:%M} UTC"
    )
    return ExitCode.OK


def run_submit(args: argparse.Namespace, console: Console) -> int:
    if args.procedures is not None and not args.sample:
        raise UsageError("--procedures shapes the --sample encounter; a file says its own procedures")
    if args.sample:
        # Dated today, its follow-up window ahead: it books a slot whatever the day.
        body = full_encounter(datetime.now(UTC).date())
        if args.procedures is not None:
            # As many billable lines as asked, repeating the sample's (a filter policy routes on the count).
            body["procedures"] = [
                body["procedures"][i % len(body["procedures"])] for i in range(args.procedures)
            ]
        encounter = EncounterFile(body, None)
    else:
        encounter = read_encounter_file(args.file)
    api = _signed_in_api(args)
    # Every submission carries a key: the one given, the one in an API event file, or a new one.
    key = args.idempotency_key or encounter.idempotency_key or str(uuid.uuid4())
    answer = api.submit_encounter(encounter.body, key)
    console.print(f"Encounter {answer['encounterId']} {answer['status']} at {answer['location']} (key {key})")
    # Last, on a line of its own: ENCOUNTER_ID=$(carebus submit --sample | tail -n 1)
    console.print(answer["encounterId"])
    return ExitCode.OK


def run_trace(args: argparse.Namespace, console: Console) -> int:
    from carebus_client.trace import trace_encounter

    stack = Stack.find(target_of(args))
    return show_when_ready(args, console, lambda: trace_table(trace_encounter(stack, args.encounter_id)))


def run_approvals_list(args: argparse.Namespace, console: Console) -> int:
    api = _signed_in_api(args)

    def listing() -> Table:
        approvals = api.approvals(args.status)
        table = Table(title=f"{args.status.title()} approvals ({len(approvals)})", title_justify="left")
        table.add_column("approval", no_wrap=True)
        for heading in APPROVAL_COLUMNS.values():
            table.add_column(heading)
        for approval in approvals:
            table.add_row(
                text(approval.get("approvalId")), *(text(approval.get(name)) for name in APPROVAL_COLUMNS)
            )
        return table

    return show_when_ready(args, console, listing)


def run_approvals_show(args: argparse.Namespace, console: Console) -> int:
    api = _signed_in_api(args)
    console.print(fields_table(api.approval(args.approval_id), f"Approval {args.approval_id}"))
    return ExitCode.OK


def run_approvals_decide(args: argparse.Namespace, console: Console) -> int:
    api = _signed_in_api(args)
    approval = api.decide(args.approval_id, args.decision, args.reason)
    console.print(
        f"Approval {approval['approvalId']} {approval['status']} by {approval.get('decidedBy')} "
        f"at {approval.get('decidedAt')}"
    )
    return ExitCode.OK


def run_dlq_list(args: argparse.Namespace, console: Console) -> int:
    stack = Stack.find(target_of(args))
    table = Table(title=f"Dead-letter queues of {stack.name}", title_justify="left")
    table.add_column("queue")
    table.add_column("output")
    table.add_column("messages", justify="right")
    table.add_column("in flight", justify="right")
    for queue in dead_letter_queues(stack):
        depth = queue_depth(stack, queue)
        table.add_row(queue.name, queue.output_key, str(depth.visible), str(depth.in_flight))
    console.print(table)
    return ExitCode.OK


def run_dlq_show(args: argparse.Namespace, console: Console) -> int:
    stack = Stack.find(target_of(args))
    queue = find_dead_letter_queue(stack, args.queue)

    def dead_letters() -> Table:
        messages = peek(stack, queue, args.limit)
        table = Table(title=f"{queue.name} dead letters ({len(messages)} shown)", title_justify="left")
        for column in ("message", "sent (UTC)", "receives", "body"):
            table.add_column(column, overflow="fold")
        for message in messages:
            table.add_row(
                message.message_id,
                moment_text(message.sent_at),
                str(message.receive_count),
                text(message.body),
            )
        return table

    return show_when_ready(args, console, dead_letters)


def run_dlq_redrive(args: argparse.Namespace, console: Console) -> int:
    stack = Stack.find(target_of(args))
    queue = find_dead_letter_queue(stack, args.queue)
    with console.status(f"Moving the messages of {queue.name} back to their source queue"):
        moved = redrive(stack, queue)
    console.print(f"Moved {moved.moved} message(s) from {queue.name} to {moved.destination}")
    return ExitCode.OK


def run_demo(_args: argparse.Namespace, console: Console) -> int:
    from carebus_cli.demo import run_scenario

    return run_scenario(console)


def run_local_up(args: argparse.Namespace, console: Console) -> int:
    from carebus_cli.local_up import run_local_up as serve

    return serve(args, console)


# ----- parsing -------------------------------------------------------------------------------------------
def _target_options(parser: argparse.ArgumentParser, *, in_subcommand: bool) -> None:
    """--stack, --endpoint-url, --region, --api-url, accepted before or after the command.

    In a subcommand they default to SUPPRESS, so that leaving them out there keeps what was given before.
    """
    default: Any = argparse.SUPPRESS if in_subcommand else None
    group = parser.add_argument_group("stack")
    group.add_argument(
        "--stack", default=default, help="a deployed stack's name (default: the offline stack)"
    )
    group.add_argument(
        "--endpoint-url",
        default=default,
        help=f"AWS endpoint of the offline stack (default: $CAREBUS_ENDPOINT_URL or {LOCAL_ENDPOINT_URL})",
    )
    group.add_argument(
        "--region", default=default, help="AWS region (default: us-east-1 offline, else the AWS session's)"
    )
    group.add_argument(
        "--api-url",
        default=default,
        help="where the stack's API is served (default: $CAREBUS_API_URL, else its ApiUrl output); "
        "an emulator serves it elsewhere, a custom domain may front it",
    )


def _command(
    group: Any, name: str, run: Command, help_text: str, *, on_stack: bool = True
) -> argparse.ArgumentParser:
    """A command that runs: its help, the exit codes in its epilog, and (on a stack) the target options."""
    command = group.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.set_defaults(run=run)
    if on_stack:
        _target_options(command, in_subcommand=True)
    return command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carebus",
        description="Drive a carebus stack: the offline one (carebus local up) or a deployed one (--stack).",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _target_options(parser, in_subcommand=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    local = commands.add_parser("local", help="the offline stack").add_subparsers(
        dest="local_command", required=True, metavar="COMMAND"
    )
    up = _command(local, "up", run_local_up, "serve the whole stack offline until Ctrl-C", on_stack=False)
    up.add_argument(
        "--port", type=int, default=4566, help="AWS endpoint port (default 4566; 0: any free one)"
    )
    up.add_argument(
        "--api-port", type=int, default=3000, help="REST API port (default 3000; 0: any free one)"
    )
    up.add_argument("--env-json", type=Path, default=Path("env.json"), help="where to write env.json")
    up.add_argument(
        "--parameter-overrides",
        nargs="*",
        default=[],
        metavar="Name=Value",
        help="template parameters, as sam deploy takes them (e.g. ApprovalTimeoutSeconds=60)",
    )
    up.add_argument(
        "--retry-after",
        type=int,
        metavar="SECONDS",
        help="lab time: retry a failed message after SECONDS instead of its queue's visibility timeout "
        "(a poison message then reaches its DLQ in about 5 x SECONDS)",
    )
    up.add_argument(
        "--batching-window",
        type=float,
        metavar="SECONDS",
        help="lab time: gather each queue's batch for at most SECONDS instead of its mapping's "
        "MaximumBatchingWindowInSeconds (a message then reaches its consumer without waiting the window)",
    )
    up.add_argument(
        "--template",
        type=Path,
        default=TEMPLATE_PATH,
        help="the SAM template to serve (default: the project's template.yaml); a copy beside it keeps "
        "its CodeUri paths (lab 2 serves one with another filter policy)",
    )

    _command(commands, "demo", run_demo, "run the scripted scenario on a fresh offline stack", on_stack=False)

    login = _command(commands, "login", run_login, "sign in and keep the ID token for this stack")
    who = login.add_mutually_exclusive_group(required=True)
    who.add_argument("--as", dest="role", choices=sorted(DEMO_USERS), help="a demo user of an offline stack")
    who.add_argument("--username", help="a Cognito user of the stack")
    login.add_argument("--password", help="the user's password (asked without echo if left out)")
    login.add_argument(
        "--mfa-code", help="the current code of the user's authenticator app (TOTP), if enrolled"
    )

    submit = _command(
        commands, "submit", run_submit, "submit an encounter (POST /encounters) and print its id last"
    )
    encounter = submit.add_mutually_exclusive_group(required=True)
    encounter.add_argument(
        "file", type=Path, nargs="?", help="a JSON encounter body, or an API event file with a body"
    )
    encounter.add_argument(
        "--sample",
        action="store_true",
        help="a sample encounter dated today (procedures, a follow-up, two prescriptions, one controlled)",
    )
    submit.add_argument(
        "--idempotency-key",
        help="sent as Idempotency-Key (default: the file's, for an API event, or a new one): "
        "a retry with the same key answers the same encounter",
    )
    submit.add_argument(
        "--procedures",
        type=int,
        choices=range(51),
        metavar="N",
        help="with --sample: N billable procedures (0-50) instead of the sample's two",
    )

    trace = _command(commands, "trace", run_trace, "one encounter's path through the stack, with times")
    trace.add_argument("encounter_id")
    add_wait_options(trace, "the trace")

    add_lab_commands(commands, local, _command)
    add_partner_commands(commands, up, _command)
    add_metrics_command(commands, _command)

    approvals = commands.add_parser("approvals", help="controlled-substance approvals, as a pharmacist")
    approval_commands = approvals.add_subparsers(dest="approvals_command", required=True, metavar="COMMAND")
    listing = _command(approval_commands, "list", run_approvals_list, "approvals with a status")
    listing.add_argument(
        "--status", default="PENDING", choices=("PENDING", "APPROVED", "REJECTED", "EXPIRED")
    )
    add_wait_options(listing, "the list")
    _command(approval_commands, "show", run_approvals_show, "one approval").add_argument("approval_id")
    approve = _command(approval_commands, "approve", run_approvals_decide, "approve a pending prescription")
    approve.set_defaults(decision="APPROVE")
    approve.add_argument("approval_id")
    approve.add_argument("--reason", help="an optional note kept with the decision")
    reject = _command(approval_commands, "reject", run_approvals_decide, "reject a pending prescription")
    reject.set_defaults(decision="REJECT")
    reject.add_argument("approval_id")
    reject.add_argument("--reason", required=True, help="why (required, at most 500 characters)")

    dlq = commands.add_parser("dlq", help="the stack's dead-letter queues")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")
    _command(dlq_commands, "list", run_dlq_list, "every dead-letter queue of the stack with its depth")
    show_command = _command(
        dlq_commands, "show", run_dlq_show, "peek at a queue's messages (they stay where they are)"
    )
    show_command.add_argument("--limit", type=int, default=10, help="at most this many messages (default 10)")
    add_wait_options(show_command, "the messages")
    redrive_command = _command(
        dlq_commands, "redrive", run_dlq_redrive, "move a queue's messages back to their source"
    )
    for queue_command in (show_command, redrive_command):
        queue_command.add_argument(
            "queue", help="billing, scheduling, ... or an output key (BillingDeadLetterQueueUrl)"
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # --help (0) or a usage error (2), already printed by argparse
        return int(exit_request.code or 0)
    output = console()
    try:
        return int(args.run(args, output))
    except CarebusError as error:
        return _report(error)
    except KeyboardInterrupt:
        print("carebus: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
