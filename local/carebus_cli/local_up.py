"""`carebus local up` (what `make local` runs): the offline stack served until Ctrl-C, for labs and tests."""

import argparse
import io
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, redirect_stdout
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.table import Table

from carebus_cli.render import text
from carebus_client.errors import ExitCode, UsageError
from carebus_client.stacks import LOCAL_ENDPOINT_URL, carebus_home
from carebus_local.demo_users import DEMO_PASSWORD, DEMO_USERS
from carebus_local.runtime import OfflineRuntime, RuntimeOptions
from carebus_local.serve import free_ports, offline_runtime
from carebus_local.template import TEMPLATE_PATH


def run_local_up(args: argparse.Namespace, console: Console) -> int:
    host = RuntimeOptions().host
    # Port 0: any free one (the banner says which).
    aws_port, api_port = (
        free_ports(host, (port,))[0] if port == 0 else port for port in (args.port, args.api_port)
    )
    handler_log = local_log_path(carebus_home(), datetime.now(UTC), os.getpid())
    options = RuntimeOptions(
        aws_port=aws_port,
        api_port=api_port,
        env_json_path=args.env_json,
        parameters=_parameter_overrides(args.parameter_overrides),
        retry_failed_after_seconds=args.retry_after,
        batching_window_seconds=args.batching_window,
        template_path=args.template,
        handler_log_path=handler_log,
        clearinghouse=args.clearinghouse,
    )
    with ExitStack() as resources:
        handler_log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The handlers' JSON lines stay on this terminal, as a lab wants to watch them, and go to a file
        # too, which `carebus logs` reads (on AWS it reads CloudWatch Logs).
        log_file = resources.enter_context(handler_log.open("x"))
        resources.enter_context(redirect_stdout(_Tee(sys.stdout, log_file)))
        with console.status("Starting the offline stack (template.yaml on moto)"):
            runtime = resources.enter_context(offline_runtime(options))
        with _until_stopped() as stopped:
            # Printed once Ctrl-C and SIGTERM are handled: whoever waits for this line may stop it at once.
            _print_local_stack(console, runtime, options)
            while not stopped.wait(0.5):  # short steps keep Ctrl-C prompt on every platform
                pass
        console.print("Stopping the offline stack")
    return ExitCode.OK


def local_log_path(home: Path, started_at: datetime, pid: int) -> Path:
    """One offline stack's handler log, named by its start and its process: never another run's file."""
    return home / "local-logs" / f"handlers-{started_at:%Y%m%d-%H%M%S}-{pid}.log"


class _Tee(io.TextIOBase):
    """Writes to the terminal and to the handler log alike."""

    def __init__(self, terminal: io.TextIOBase | Any, file: io.TextIOBase | Any) -> None:
        self.terminal, self.file = terminal, file

    def write(self, text: str) -> int:
        self.terminal.write(text)
        self.file.write(text)
        return len(text)

    def flush(self) -> None:
        self.terminal.flush()
        self.file.flush()

    def isatty(self) -> bool:
        return self.terminal.isatty()


def _parameter_overrides(pairs: Sequence[str]) -> dict[str, str]:
    """Name=Value pairs, as sam deploy --parameter-overrides takes them."""
    overrides = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise UsageError(f"--parameter-overrides takes Name=Value pairs, not {pair!r}")
        overrides[name] = value
    return overrides


def _print_local_stack(console: Console, runtime: OfflineRuntime, options: RuntimeOptions) -> None:
    assert runtime.stack is not None
    outputs, endpoint_url = runtime.stack.outputs, runtime.endpoint_url
    console.print(f"[bold]carebus offline stack[/] {runtime.stack.name}")
    console.print(f"  AWS endpoint  {endpoint_url}")
    console.print(f"  REST API      {outputs['ApiUrl']}")
    console.print(f"  partner API   {outputs['PartnerApiUrl']} (tokens: {outputs['PartnerTokenUrl']})")
    if "ClearinghouseUrl" in outputs:
        console.print(
            f"  clearinghouse {outputs['ClearinghouseUrl']} (stand-in: carebus clearinghouse deliveries)"
        )
    console.print(
        f"  env.json      {options.env_json_path} (sam local invoke --env-vars {options.env_json_path})"
    )
    if options.template_path != TEMPLATE_PATH:
        console.print(f"  template      {options.template_path}")
    if options.handler_log_path is not None:
        console.print(f"  handler log   {options.handler_log_path} (carebus logs ENCOUNTER_ID)")
    for name, value in sorted(options.parameters.items()):
        console.print(f"  parameter     {name}={value}")
    if options.retry_failed_after_seconds is not None:
        console.print(
            f"  lab time      a failed message is retried after {options.retry_failed_after_seconds} s "
            "(not after its queue's visibility timeout)"
        )
    if options.batching_window_seconds is not None:
        console.print(
            f"  lab time      a queue's batch is gathered for at most {options.batching_window_seconds:g} s "
            "(not its mapping's MaximumBatchingWindowInSeconds)"
        )
    if endpoint_url != LOCAL_ENDPOINT_URL:
        console.print(f"  other shells  export CAREBUS_ENDPOINT_URL={endpoint_url}")
    users = Table(title=f"Demo users (password {DEMO_PASSWORD})", title_justify="left")
    users.add_column("role")
    users.add_column("username")
    users.add_column("groups")
    users.add_column("sign in")
    for role, (username, groups) in DEMO_USERS.items():
        users.add_row(role, username, ", ".join(groups), f"carebus login --as {role}")
    console.print(users)
    table = Table(title="Stack outputs", title_justify="left")
    table.add_column("output")
    table.add_column("value", overflow="fold")
    for name, value in sorted(outputs.items()):
        table.add_row(name, text(value))
    console.print(table)
    console.print("Serving until Ctrl-C")


@contextmanager
def _until_stopped() -> Iterator[threading.Event]:
    """An event set by Ctrl-C or SIGTERM while inside."""
    stopped = threading.Event()

    def stop(_signal: int, _frame: FrameType | None) -> None:
        stopped.set()

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopped
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
