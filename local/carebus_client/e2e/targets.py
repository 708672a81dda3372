"""The stacks the end-to-end suite runs against, what each of them can show, and how the offline one is
started for it.

- offline: the offline stack, started by the suite with `carebus local up` (lab-time retries) unless
  CAREBUS_ENDPOINT_URL names one already running; what `make test` runs.
- rehearsal: the built template deployed into MiniStack by `make rehearse` (CAREBUS_STACK,
  CAREBUS_ENDPOINT_URL and CAREBUS_API_URL set by it).
- aws: a deployed stack, `CAREBUS_STACK=carebus-dev make e2e`, with the AWS session's credentials.
"""

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from carebus_client.stacks import API_URL_VARIABLE, ENDPOINT_URL_VARIABLE, Target

TARGET_VARIABLE: Final = "CAREBUS_E2E_TARGET"
STACK_VARIABLE: Final = "CAREBUS_STACK"
SLOW_VARIABLE: Final = "CAREBUS_E2E_SLOW"
# A failed message returns after this many seconds on the offline stack the suite starts itself, and a
# queue's batch is handed over without waiting out the mapping's batching window (lab time: the suite
# checks what reaches each consumer, not how batches fill).
OFFLINE_RETRY_AFTER_SECONDS: Final = 1
OFFLINE_BATCHING_WINDOW_SECONDS: Final = 0
_READY_LINE: Final = "Serving until Ctrl-C"
_STARTUP_SECONDS: Final = 120


@dataclass(frozen=True)
class Capability:
    name: str
    why_missing: dict[str, str]  # target kind -> why it lacks this


AUDIT_LOG = Capability(
    "the audit log",
    {"rehearsal": "MiniStack delivers no EventBridge target to CloudWatch Logs"},
)
REQUEST_MODELS = Capability(
    "request models checked by the gateway",
    {"rehearsal": "MiniStack ignores the models and validators of a REST API imported from SAM"},
)
MESSAGE_MOVE_TASK = Capability(
    "SQS message move tasks (StartMessageMoveTask)",
    {
        "offline": "moto has no StartMessageMoveTask (the client moves the messages itself)",
        "rehearsal": "MiniStack has no StartMessageMoveTask (the client moves the messages itself)",
    },
)
QUICK_RETRIES = Capability(
    "retries within seconds",
    {
        "aws": f"a poison message takes 5 x the queue's 120 s visibility timeout to reach its DLQ on AWS; "
        f"set {SLOW_VARIABLE}=1 to wait for it",
    },
)


@dataclass(frozen=True)
class E2ETarget:
    kind: str  # offline, rehearsal or aws
    target: Target

    def lacks(self, capability: Capability) -> str | None:
        """Why this target cannot show the capability, or None if it can."""
        if capability is QUICK_RETRIES and os.environ.get(SLOW_VARIABLE):
            return None
        return capability.why_missing.get(self.kind)


def target_from_environment() -> E2ETarget | None:
    """The target the environment names, or None: then the suite starts an offline stack itself."""
    stack = os.environ.get(STACK_VARIABLE)
    kind = os.environ.get(TARGET_VARIABLE) or ("aws" if stack else "offline")
    if kind not in ("offline", "rehearsal", "aws"):
        raise ValueError(f"{TARGET_VARIABLE} is offline, rehearsal or aws, not {kind!r}")
    if kind == "offline" and not os.environ.get(ENDPOINT_URL_VARIABLE):
        return None
    return E2ETarget(kind, Target.select(stack if kind != "offline" else None))


@contextmanager
def offline_stack(home: Path) -> Iterator[E2ETarget]:
    """`carebus local up` on free ports in a process of its own, until the suite is done; stopped by its
    PID whatever happens."""
    command = [sys.executable, "-m", "carebus_cli.cli", "local", "up", "--port", "0", "--api-port", "0"]
    command += ["--env-json", str(home / "env.json"), "--retry-after", str(OFFLINE_RETRY_AFTER_SECONDS)]
    command += ["--batching-window", str(OFFLINE_BATCHING_WINDOW_SECONDS)]
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "CAREBUS_"))},
        "PYTHONUNBUFFERED": "1",
        "CAREBUS_HOME": str(home),
        "COLUMNS": "200",
    }
    log = home / "local-up.log"
    with (
        log.open("w") as output,
        subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
        ) as served,
    ):
        assert served.stdout is not None
        lines: list[str] = []
        started = threading.Event()

        def read() -> None:
            # Every line to the log, until the process ends: its pipe never fills up.
            for line in served.stdout:  # type: ignore[union-attr]
                output.write(line)
                lines.append(line)
                if _READY_LINE in line:
                    started.set()
            started.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            if not started.wait(_STARTUP_SECONDS) or served.poll() is not None:
                raise RuntimeError(f"the offline stack did not start within {_STARTUP_SECONDS} s: see {log}")
            endpoint = next(line.split()[-1] for line in lines if line.strip().startswith("AWS endpoint"))
            yield E2ETarget("offline", Target.select(endpoint_url=endpoint))
        finally:
            if served.poll() is None:
                served.send_signal(signal.SIGINT)
                try:
                    served.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    served.kill()
                    served.wait()
            reader.join(timeout=10)


def environment_for(target: E2ETarget) -> dict[str, str]:
    """What another process needs to reach the same target (the CLI, for one)."""
    variables = {TARGET_VARIABLE: target.kind}
    if target.target.endpoint_url:
        variables[ENDPOINT_URL_VARIABLE] = target.target.endpoint_url
    if target.target.api_url:
        variables[API_URL_VARIABLE] = target.target.api_url
    if not target.target.offline:
        variables[STACK_VARIABLE] = target.target.stack_name
    return variables
