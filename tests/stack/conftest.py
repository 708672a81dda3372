"""Fixtures of the CLI tests (tests/stack/test_cli*.py): one offline runtime per test module that asks,
and `carebus ARGS` in-process against it (a module asks: `pytestmark = usefixtures("carebus_home")`)."""

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import STACK, Cli, Ran

from carebus_cli.cli import main
from carebus_local.moto_process import MotoProcessError
from carebus_local.runtime import OfflineRuntime, RuntimeOptions
from carebus_local.serve import free_ports


def _started_on_free_ports(attempts: int = 3) -> OfflineRuntime:
    """A port the system picked as free can be taken before the stack binds it (as the source port of
    one of the many connections the other workers' stacks open): then the stack starts on others."""
    for attempt in range(1, attempts + 1):
        aws_port, api_port = free_ports("127.0.0.1", (0, 0))
        options = RuntimeOptions(
            aws_port=aws_port,
            api_port=api_port,
            stack_name=STACK,
            retry_failed_after_seconds=0,
            batching_window_seconds=0,
        )
        try:
            return OfflineRuntime(options).start()
        except (OSError, MotoProcessError) as error:
            taken = isinstance(error, MotoProcessError) or error.errno == errno.EADDRINUSE
            if not taken or attempt == attempts:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def runtime() -> Iterator[OfflineRuntime]:
    """The module's offline stack (its own moto process), in lab time: no batching window, no retry delay."""
    started = _started_on_free_ports()
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
