"""`carebus metrics` on the offline stack as `carebus local up` serves it: the sample encounter submitted
through the CLI, then the figures of every metric the handlers printed (EMF) into the stack's handler log."""

import io
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from carebus.business_metrics import CONSUMER_LATENCY
from carebus_cli.cli import main

pytestmark = pytest.mark.slow

_START_SECONDS = 120
_STOP_SECONDS = 30
# The sample's consumers announce these once their work is stored; their metrics are printed as they return.
_SAMPLE_EVENTS = (
    "ClaimSubmitted",
    "AppointmentBooked",
    "PrescriptionReleased",
    "PrescriptionApprovalRequested",
)
_COLUMNS = ("namespace", "metric", "dimensions", "unit", "samples", "sum", "p50", "p90", "p99", "max")


@dataclass(frozen=True)
class Served:
    endpoint_url: str
    handler_log: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`carebus local up` in a process of its own (as a lab runs it), on free ports, until Ctrl-C."""
    home = tmp_path_factory.mktemp("carebus-metrics-home")
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "CAREBUS_"))
    }
    environment |= {"PYTHONUNBUFFERED": "1", "CAREBUS_HOME": str(home), "COLUMNS": "200"}
    command = [sys.executable, "-m", "carebus_cli.cli", "local", "up", "--port", "0", "--api-port", "0"]
    # Lab time: each queue hands its message over at once rather than after its batching window.
    command += ["--env-json", str(home / "env.json"), "--batching-window", "0"]
    with subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
    ) as process:
        watchdog = threading.Timer(_START_SECONDS, process.kill)  # a start that never ends fails, not hangs
        watchdog.start()
        assert process.stdout is not None
        banner = []
        for line in process.stdout:
            banner.append(line)
            if "Serving until Ctrl-C" in line:
                break
        watchdog.cancel()
        startup = "".join(banner)
        endpoint = re.search(r"AWS endpoint\s+(http://\S+)", startup)
        handler_log = re.search(r"handler log\s+(\S+)", startup)
        try:
            assert endpoint, startup
            assert handler_log, startup
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("CAREBUS_HOME", str(home))
                patch.setenv("CAREBUS_ENDPOINT_URL", endpoint[1])
                yield Served(endpoint[1], Path(handler_log[1]))
        finally:
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=_STOP_SECONDS)


def carebus(*argv: str) -> tuple[int, str]:
    """`carebus ARGV...` in-process, with what it printed (the handlers print elsewhere: the served stack)."""
    printed = io.StringIO()
    with redirect_stdout(printed), redirect_stderr(printed):
        code = main(list(argv))
    return code, printed.getvalue()


def metric_rows(out: str) -> dict[tuple[str, str], dict[str, str]]:
    """The table's rows by (metric, dimensions), each by column."""
    rows = {}
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == len(_COLUMNS) and cells[0] != "namespace":
            row = dict(zip(_COLUMNS, cells, strict=True))
            rows[row["metric"], row["dimensions"]] = row
    return rows


def emitted_metric_names(handler_log: Path) -> set[str]:
    """The names in every EMF directive of the handler log, found by their text alone (as Powertools
    prints them), not by the command's reading of it."""
    directives = re.findall(r'"Metrics":\[([^\]]*)\]', handler_log.read_text())
    return {name for directive in directives for name in re.findall(r'"Name":"([^"]+)"', directive)}


@pytest.fixture(scope="module")
def sample_metrics(served: Served) -> str:
    """What `carebus metrics` printed once the sample encounter had gone through every consumer."""
    assert carebus("login", "--as", "physician")[0] == 0
    code, out = carebus("submit", "--sample")
    assert code == 0, out
    encounter_id = out.split()[-1]
    waits = [option for event in _SAMPLE_EVENTS for option in ("--wait-for", f"event {event}")]
    code, out = carebus("trace", encounter_id, *waits)
    assert code == 0, out
    # Each consumer prints its metrics as it returns, just after it announced its events.
    latencies = [option for name in CONSUMER_LATENCY.values() for option in ("--wait-for", name)]
    code, out = carebus("metrics", *latencies)
    assert code == 0, out
    return out


def test_metrics_prints_every_metric_the_handlers_emitted_for_the_sample(served, sample_metrics):
    rows = metric_rows(sample_metrics)

    assert {name for name, _ in rows} == emitted_metric_names(served.handler_log)
    for name, service in (
        ("EncountersAccepted", "intake"),
        ("ClaimsSubmitted", "billing"),
        ("AppointmentsBooked", "scheduling"),
        ("PrescriptionsReleased", "prescriptions"),
        ("PrescriptionsPendingApproval", "prescriptions"),
    ):
        row = rows[name, f"service={service}"]
        assert (row["unit"], row["samples"], row["sum"], row["p50"], row["max"]) == (
            "Count",
            "1",
            "1",
            "-",
            "-",
        )
    for service, name in CONSUMER_LATENCY.items():
        row = rows[name, f"service={service}"]
        distribution = [float(row[column]) for column in ("p50", "p90", "p99", "max")]
        assert row["unit"] == "Milliseconds"
        assert (
            0 < distribution[0] <= distribution[1] <= distribution[2] <= distribution[3] <= float(row["sum"])
        )
    # One sample a prescription: the sample has two.
    assert rows[CONSUMER_LATENCY["prescriptions"], "service=prescriptions"]["samples"] == "2"
    assert f"Source: every EMF sample in the handler log {served.handler_log}\n" in sample_metrics


def test_metrics_by_name_shows_only_those_and_none_matching_exits_1(served, sample_metrics):
    code, out = carebus("metrics", "--name", "Encounter*")
    none_code, none_out = carebus("metrics", "--name", "NoSuchMetric")

    assert code == 0, out
    assert metric_rows(out)
    assert all(name.startswith("Encounter") for name, _ in metric_rows(out))
    assert none_code == 1
    assert f"No metric named NoSuchMetric in {served.handler_log}" in none_out
