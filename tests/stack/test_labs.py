"""Every workshop lab in docs/labs/ runs as written, offline, within its stated time (tests/labbook.py says
how a lab's blocks become steps and checkpoints). A lab whose step stops working fails here."""

import os
import queue
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from labbook import Lab, ServerStart, missing_lines, parse_lab, with_words

from carebus_local.template import PROJECT_ROOT

pytestmark = pytest.mark.slow

LABS_DIR = PROJECT_ROOT / "docs" / "labs"
LAB_FILES = sorted(LABS_DIR.glob("[0-9][0-9]-*.md"))
_BANNER_ENDPOINT = "export CAREBUS_ENDPOINT_URL="
_BANNER_API = "REST API"
_SERVER_START_SECONDS = 120
_STOP_SECONDS = 30


def _lines(stream, into: "queue.Queue[str | None]") -> None:
    for line in iter(stream.readline, ""):
        into.put(line)
    into.put(None)


def _lines_until(lines: "queue.Queue[str | None]", deadline: float) -> Iterator[str]:
    """The process's lines as they come, until it ends or the deadline (time.monotonic()) passes."""
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            return
        if line is None:
            return
        yield line


def _spawn(
    arguments: list[str], env: dict[str, str], stdin: int
) -> tuple[subprocess.Popen[str], "queue.Queue[str | None]"]:
    """A process of its own group (stopped with its children), its output read line by line."""
    process = subprocess.Popen(  # noqa: S603 - the lab's own commands, from the repository's docs
        arguments,
        cwd=PROJECT_ROOT,
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True).start()
    return process, lines


class LabServer:
    """The lab's `carebus local up`, on free ports, stopped by Ctrl-C (SIGINT to its process group)."""

    def __init__(self, command: str, env: dict[str, str], env_json: Path) -> None:
        arguments = [*shlex.split(command), "--port", "0", "--api-port", "0", "--env-json", str(env_json)]
        self.process, self._lines = _spawn(arguments, env, subprocess.DEVNULL)
        self.output: list[str] = []
        self.api_url = ""
        self.endpoint_url = self._wait_for_banner()

    def _wait_for_banner(self) -> str:
        for line in _lines_until(self._lines, time.monotonic() + _SERVER_START_SECONDS):
            self.output.append(line)
            if line.strip().startswith(_BANNER_API):
                self.api_url = line.split()[-1]
            if _BANNER_ENDPOINT in line:
                return line.split(_BANNER_ENDPOINT, 1)[1].split()[0]
        self.stop()
        raise AssertionError("the offline stack did not start:\n" + "".join(self.output[-40:]))

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(_STOP_SECONDS)


class LabShell:
    """One bash for a whole lab, as an attendee's terminal: each command's output and exit status."""

    def __init__(self, env: dict[str, str]) -> None:
        # The attendee's shell, found on PATH as theirs is.
        self.process, self._lines = _spawn(["bash", "--norc", "--noprofile"], env, subprocess.PIPE)
        self._count = 0

    def run(self, command: str, timeout: float) -> tuple[str, int]:
        self._count += 1
        marker = f"@@carebus-lab-step-{self._count}@@"
        assert self.process.stdin is not None
        # The command reads no input (a prompt would wait forever); its status comes on a line of its own.
        self.process.stdin.write(f"{{ {command}\n}} < /dev/null 2>&1; printf '\\n{marker} %d\\n' $?\n")
        self.process.stdin.flush()
        output: list[str] = []
        for line in _lines_until(self._lines, time.monotonic() + timeout):
            if line.startswith(marker):
                return "".join(output).removesuffix("\n"), int(line.split()[1])
            output.append(line)
        ended = "the lab's shell ended" if self.process.poll() is not None else "out of the lab's time"
        raise AssertionError(f"{ended} while running {command!r}:\n" + "".join(output[-40:]))

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(_STOP_SECONDS)


@pytest.fixture
def lab_environment(tmp_path: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "CAREBUS_"))  # the machine's own settings stay out of the lab
    }
    env |= {"CAREBUS_HOME": str(tmp_path / "carebus-home"), "LAB_TMP": str(tmp_path), "COLUMNS": "200"}
    return env


def run_lab(lab: Lab, env: dict[str, str], tmp_path: Path) -> list[str]:
    """Run the lab's parts in order; the report of what it printed, or a failure naming the step."""
    deadline = time.monotonic() + lab.minutes * 60
    shell, server = LabShell(env), None
    report: list[str] = []
    bound: dict[str, str] = {}
    try:
        for part in lab.parts:
            if isinstance(part, ServerStart):
                if server is not None:
                    server.stop()
                server = LabServer(part.command, env, tmp_path / "env.json")
                # As `eval "$(carebus local env)"` would in an attendee's shell, for the ports it took.
                shell.run(
                    f"export CAREBUS_ENDPOINT_URL={server.endpoint_url} CAREBUS_API_URL={server.api_url}", 10
                )
                continue
            output, status = shell.run(with_words(part.command, bound), deadline - time.monotonic())
            report.append(f"$ {part.command}  (exit {status})\n{output}")
            missing = missing_lines(part.expected, output, bound)
            if missing:
                raise AssertionError(
                    f"{lab.path.name}:{part.line}: `{part.command}` (exit {status}) did not show:\n  "
                    + "\n  ".join(missing)
                    + f"\nit printed:\n{output[-4000:]}"
                )
    finally:
        shell.close()
        if server is not None:
            server.stop()
    return report


# Labs share nothing (each starts its own stack, on free ports, with a home of its own): each is a group of
# its own for pytest-xdist, so that the labs run side by side on the workers.
@pytest.mark.parametrize(
    "lab_file",
    [pytest.param(path, id=path.stem, marks=pytest.mark.xdist_group(path.stem)) for path in LAB_FILES],
)
def test_the_lab_runs_as_written_within_its_time(lab_file: Path, lab_environment, tmp_path: Path) -> None:
    lab = parse_lab(lab_file)
    started = time.monotonic()

    report = run_lab(lab, lab_environment, tmp_path)

    assert lab.steps, "a lab has steps to run"
    print(f"{lab.title}: {len(lab.steps)} steps in {time.monotonic() - started:.0f} s\n" + "\n".join(report))


def test_every_lab_is_in_the_index_with_its_time() -> None:
    index = (LABS_DIR / "README.md").read_text()
    assert len(LAB_FILES) >= 9
    for path in LAB_FILES:
        lab = parse_lab(path)
        assert f"]({path.name})" in index, f"{path.name} is not linked from docs/labs/README.md"
        assert f"{lab.minutes} min" in index, f"the index does not give {path.name}'s time"
