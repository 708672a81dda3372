"""Serving the offline stack from a command: free ports, fake credentials, started and stopped."""

import logging
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

from carebus_client.errors import UsageError
from carebus_client.stacks import LOCAL_CREDENTIALS
from carebus_local.runtime import OfflineRuntime, RuntimeOptions


def _probe() -> socket.socket:
    """A socket to try a port with, as the servers bind theirs: a port that only TIME-WAIT connections of
    a stopped server still hold is free for them, so it is free here too."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return probe


def port_is_free(host: str, port: int) -> bool:
    with _probe() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(host: str, preferred: Sequence[int]) -> list[int]:
    """Each preferred port if nothing holds it, else one the system picks; all of them distinct."""
    chosen = []
    with ExitStack() as held:  # every probe stays bound until all are chosen, so none is picked twice
        for port in preferred:
            probe = held.enter_context(_probe())
            try:
                probe.bind((host, port))
            except OSError:
                probe.bind((host, 0))
            chosen.append(int(probe.getsockname()[1]))
    return chosen


@contextmanager
def offline_runtime(options: RuntimeOptions) -> Iterator[OfflineRuntime]:
    """The offline stack, started and stopped, with no AWS account or credentials needed.

    Ports are checked first, so that a taken one is refused with the options that choose another (moto's
    process would only exit). The provisioner signs its calls with whatever credentials the process has,
    so it gets fake ones.
    """
    for port in (options.aws_port, options.api_port):
        if not port_is_free(options.host, port):
            raise UsageError(f"port {port} on {options.host} is in use: choose another (--port, --api-port)")
    saved = {name: os.environ.get(name) for name in (*LOCAL_CREDENTIALS, "AWS_PROFILE")}
    os.environ.update(LOCAL_CREDENTIALS)
    os.environ.pop("AWS_PROFILE", None)
    # moto's web server logs every request it serves; nobody reading this output wants them.
    werkzeug = logging.getLogger("werkzeug")
    werkzeug_level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    runtime = OfflineRuntime(options)
    try:
        runtime.start()
        yield runtime
    finally:
        runtime.stop()
        werkzeug.setLevel(werkzeug_level)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
