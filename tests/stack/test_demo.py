"""`make demo` beside `make local` and beside another demo: ports and handler logs of their own.

Running two demos at once takes two offline stacks on two shared cores; the functions that name a run's
resources are tested instead, and one real demo run shows its log is its own.
"""

import os
import re
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from carebus_cli.demo import demo_ports, handler_log_path
from carebus_local.runtime import RuntimeOptions
from carebus_local.serve import port_is_free

HOST = RuntimeOptions().host
LOCAL_UP_PORTS = {RuntimeOptions().aws_port, RuntimeOptions().api_port}  # what `make local` listens on


def listening(port: int) -> socket.socket:
    """A socket holding the port as a running server does."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((HOST, port))
    server.listen()
    return server


def test_a_demo_never_takes_the_ports_make_local_listens_on():
    chosen = [port for _ in range(20) for port in demo_ports(HOST)]

    assert LOCAL_UP_PORTS.isdisjoint(chosen)


def test_a_second_demo_takes_other_ports_than_a_running_one():
    first = demo_ports(HOST)
    servers = [listening(port) for port in first]
    try:
        second = demo_ports(HOST)
    finally:
        for server in servers:
            server.close()

    assert len(set(first)) == 2
    assert len(set(second)) == 2
    assert set(first).isdisjoint(second)
    assert all(port_is_free(HOST, port) for port in second)


def test_each_run_has_a_handler_log_of_its_own(tmp_path):
    started = datetime(2026, 12, 1, 9, 30, 5, tzinfo=UTC)

    same_second_other_process = {handler_log_path(tmp_path, started, pid) for pid in (4100, 4101)}
    same_process_later = handler_log_path(tmp_path, started.replace(second=6), 4100)

    assert len(same_second_other_process | {same_process_later}) == 3
    assert (
        handler_log_path(tmp_path, started, 4100)
        == tmp_path / "demo-logs" / "handlers-20261201-093005-4100.log"
    )


@pytest.mark.slow
def test_a_demo_writes_its_own_handler_log_and_leaves_other_runs_logs_alone(tmp_path):
    home = tmp_path / "carebus-home"
    earlier = handler_log_path(home, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), os.getpid())
    earlier.parent.mkdir(parents=True)
    earlier.write_text("an earlier run's handlers\n")
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "CAREBUS_"))},
        "CAREBUS_HOME": str(home),
        "COLUMNS": "200",
    }

    ran = subprocess.run(
        [sys.executable, "-m", "carebus_cli.cli", "demo"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=180,
        check=False,
    )

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Demo passed: 12 of 12 expected steps" in ran.stdout
    assert "failed" not in ran.stdout
    assert ran.stdout.count("approval workflow SUCCEEDED") == 1
    printed = re.search(r"The handlers' logs: (\S+)", ran.stdout)
    assert printed, ran.stdout
    log = Path(printed[1])
    assert log.parent == earlier.parent
    assert log != earlier
    assert '"level"' in log.read_text()  # the handlers' JSON logs went there, not to the demo's output
    assert earlier.read_text() == "an earlier run's handlers\n"
    endpoint = re.search(r"AWS http://127\.0\.0\.1:(\d+), API http://127\.0\.0\.1:(\d+)", ran.stdout)
    assert endpoint, ran.stdout
    assert LOCAL_UP_PORTS.isdisjoint({int(endpoint[1]), int(endpoint[2])})
