"""Fixtures of the CLI tests (tests/stack/test_cli*.py): one offline runtime per test module that asks,
and `carebus ARGS` in-process against it (a module asks: `pytestmark = usefixtures("carebus_home")`)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import STACK, Cli, Ran, started_on_free_ports

from carebus_cli.cli import main
from carebus_local.runtime import OfflineRuntime


@pytest.fixture(scope="module")
def runtime() -> Iterator[OfflineRuntime]:
    """The module's offline stack (its own moto process), in lab time: no batching window, no retry delay."""
    started = started_on_free_ports(stack_name=STACK, retry_failed_after_seconds=0, batching_window_seconds=0)
    # Imported now, each handler's logger writes to the session's output, not to one test's capsys.
    for function in started.functions.values():
        function.warm()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def carebus_home(runtime: OfflineRuntime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Sessions in a temporary home; every command reaches the runtime through CAREBUS_ENDPOINT_URL."""
    home = tmp_path_factory.mktemp("carebus-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CAREBUS_HOME", str(home))
        patch.setenv("CAREBUS_ENDPOINT_URL", runtime.endpoint_url)
        yield home


@pytest.fixture
def carebus(capsys: pytest.CaptureFixture[str]) -> Cli:
    """`carebus ARGS...` in-process, against the runtime's stack.

    Commands name the module's stack with --stack; without it they would look for carebus-local on
    CAREBUS_ENDPOINT_URL.
    """

    def run(*argv: str, stack: str | None = STACK) -> Ran:
        code = main([*(["--stack", stack] if stack else []), *argv])
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run
