"""The harness of the CLI tests (tests/stack/test_cli*.py and those that start `carebus local up`): what a
command did, the sample files, and `carebus local up` in a process of its own (the fixtures are in
tests/stack/conftest.py)."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from carebus_local.demo_users import DEMO_USERS
from carebus_testing import EVENTS_DIR, sample_body

if TYPE_CHECKING:
    from carebus_local.runtime import OfflineRuntime

STACK = f"carebus-cli-{uuid.uuid4().hex[:6]}"
SAMPLE_EVENT = EVENTS_DIR / "intake" / "submit_encounter.json"
INVALID_EVENT = EVENTS_DIR / "intake" / "submit_invalid_encounter.json"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# What `submit` prints; stdout also carries what the handlers print (logs with their own ids).
ACCEPTED = re.compile(rf"Encounter ({UUID}) ACCEPTED")
PHYSICIAN, _ = DEMO_USERS["physician"]


@dataclass
class Ran:
    """What one command did: its exit code and what it wrote."""

    code: int
    out: str
    err: str

    def error_lines(self) -> list[str]:
        return self.err.splitlines()


Cli = Callable[..., Ran]


def submitted(carebus: Cli, path: Path, *options: str) -> str:
    ran = carebus("submit", str(path), *options)
    assert ran.code == 0, ran.err
    match = ACCEPTED.search(ran.out)
    assert match, ran.out
    return match.group(1)


def body_file(tmp_path: Path, body: dict[str, Any] | None = None) -> Path:
    path = tmp_path / f"encounter-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(body or sample_body()))
    return path


def assert_one_line_without_traceback(ran: Ran) -> None:
    assert len(ran.error_lines()) == 1, ran.err
    assert ran.err.startswith("carebus: error: ")
    assert "Traceback" not in ran.err


def printed(out: str) -> list[str]:
    """The lines the command printed: in-process, stdout also carries the handlers' JSON logs and metrics."""
    return [line for line in out.splitlines() if not line.startswith("{")]


def signed_in_with(carebus: Cli, home: Path, **changes: str) -> None:
    """Signed in as the physician, then the stored session changed (a token forged, an expiry passed)."""
    carebus("login", "--as", "physician")
    sessions = home / "sessions.json"
    stored = json.loads(sessions.read_text())
    for entry in stored.values():
        entry.update(changes)
    sessions.write_text(json.dumps(stored))


def without_aws_configuration() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "CAREBUS_"))}


@dataclass
class Served:
    process: subprocess.Popen[str]
    startup: str  # what it printed up to the ready line


@contextmanager
def local_up(tmp_path: Path, *options: str, stop_with: int = signal.SIGINT) -> Iterator[Served]:
    """`carebus local up` in a process of its own, until its ready line; stopped with a signal after."""
    command = [sys.executable, "-m", "carebus_cli.cli", "local", "up", *options]
    environment = {**without_aws_configuration(), "PYTHONUNBUFFERED": "1", "CAREBUS_HOME": str(tmp_path)}
    environment["COLUMNS"] = "200"
    errors = tmp_path / "stderr.txt"
    with (
        errors.open("w") as stderr,
        subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=environment
        ) as process,
    ):
        # A start-up that never finishes fails the test rather than hanging it.
        watchdog = threading.Timer(120, process.kill)
        watchdog.start()
        assert process.stdout is not None
        printed = []
        for line in process.stdout:
            printed.append(line)
            if "Serving until Ctrl-C" in line:
                break
        try:
            yield Served(process, "".join(printed))
        finally:
            process.send_signal(stop_with)
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                pytest.fail(f"carebus local up did not stop within 30 s of signal {stop_with}")
            finally:
                watchdog.cancel()
    assert process.returncode == 0, errors.read_text()
    assert "Traceback" not in errors.read_text()


def started_on_free_ports(attempts: int = 3, **options: Any) -> "OfflineRuntime":
    """An offline runtime started on free ports (RuntimeOptions from `options`). A port the system picked as
    free can be taken before the stack binds it (as the source port of one of the many connections the
    other workers' stacks open): then it starts on others."""
    from carebus_local.moto_process import MotoProcessError
    from carebus_local.runtime import OfflineRuntime, RuntimeOptions
    from carebus_local.serve import free_ports

    for attempt in range(1, attempts + 1):
        aws_port, api_port = free_ports("127.0.0.1", (0, 0))
        try:
            return OfflineRuntime(RuntimeOptions(aws_port=aws_port, api_port=api_port, **options)).start()
        except (OSError, MotoProcessError) as error:
            taken = isinstance(error, MotoProcessError) or error.errno == errno.EADDRINUSE
            if not taken or attempt == attempts:
                raise
    raise AssertionError("unreachable")
