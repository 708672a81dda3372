"""moto served from a process of its own, on the machine's other core.

The offline runtime runs the handlers, their SDK calls, the pollers and the API in one interpreter; with moto
in it too, all of them take turns on one GIL, and moto's share of the work (answering every call the others
make) is as large as theirs. In its own process moto gets a core of its own. The runtime starts it, waits
until it answers, and stops it by its PID; it also stops by itself once the runtime's process is gone (its
stdin closes), so that a killed runtime never leaves a server holding the port.

    python -m carebus_local.moto_process --host 127.0.0.1 --port 4566
"""

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from carebus_local.fidelity import make_moto_behave_like_aws
from carebus_local.moto_caches import make_moto_cheaper

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 5.0


class MotoProcessError(Exception):
    """moto's process did not start, or ended before it answered."""


class MotoProcess:
    """The server process, seen from the runtime: started, checked, configured, stopped."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.url = f"http://{host}:{port}"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout_seconds: float = START_TIMEOUT_SECONDS) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - this interpreter, this module
            [sys.executable, "-m", __name__, "--host", self.host, "--port", str(self.port)],
            # Held open for its whole life: the server ends when this process does, however it ends.
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_seconds
        while not self._answers():
            if self._process.poll() is not None:
                raise MotoProcessError(
                    f"moto's process exited with {self._process.returncode} before serving"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise MotoProcessError(f"moto did not answer on {self.url} within {timeout_seconds:.0f} s")
            # Not time.sleep: a test may patch that for the code it is testing.
            threading.Event().wait(0.05)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/config", timeout=2):  # noqa: S310 - local
                return True
        except (urllib.error.URLError, OSError):
            return False

    def configure(self, config: dict[str, Any]) -> None:
        """moto's own settings (POST /moto-api/config), as `mock_aws(config=...)` takes them."""
        request = urllib.request.Request(  # noqa: S310 - our own local server
            f"{self.url}/moto-api/config",
            data=json.dumps(config).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass

    def stop(self, timeout_seconds: float = STOP_TIMEOUT_SECONDS) -> None:
        """SIGTERM, then SIGKILL if it has not ended within the timeout: never waits longer than twice it."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_seconds)
        if process.stdin:
            process.stdin.close()


def _until_stdin_closes(stopping: threading.Event) -> None:
    # The file descriptor, not sys.stdin: a thread blocked in a buffered read holds its lock, which the
    # interpreter then cannot take at exit.
    while os.read(sys.stdin.fileno(), 1024):
        pass
    stopping.set()


def serve(host: str, port: int) -> None:
    """Serve moto, patched to behave like AWS, until SIGTERM or until stdin closes."""
    # moto's Step Functions engine calls the other services through MOTO_PORT.
    os.environ["MOTO_PORT"] = str(port)
    make_moto_behave_like_aws()
    make_moto_cheaper()
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    # werkzeug logs every request it serves; nobody reading the runtime's output wants them.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    # Ctrl-C reaches the whole process group; the runtime stops moto after its own threads have stopped.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Binding here, not in a thread: a port that is taken ends the process with an error at once.
    server = make_server(
        host,
        port,
        DomainDispatcherApplication(create_backend_app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )
    threading.Thread(target=_until_stdin_closes, args=(stopping,), daemon=True).start()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    while not stopping.wait(1):  # in slices: a signal handler runs between them
        pass
    server.shutdown()
    server.server_close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m carebus_local.moto_process", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
