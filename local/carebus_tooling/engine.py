"""MiniStack, the independent engine of the deploy rehearsal: started on 127.0.0.1 on a free port in its
own venv, asked what it can create, given the Powertools layer it cannot download, and stopped by PID.

Facts of MiniStack 1.5.33 this relies on (read in its source): it binds every interface unless BIND_HOST
says otherwise, and its IoT listener binds 0.0.0.0:8883 unless IOT_MTLS_ENABLED=0; LAMBDA_EXECUTOR=local
runs functions as processes of its own interpreter; it keeps Cognito keys under STATE_DIR; a public layer
it does not hold deploys as an empty one.
"""

import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import boto3

HEALTH_PATH: Final = "/_ministack/health"
REGION: Final = "us-east-1"
# Credentials that no account accepts: the rehearsal can never reach AWS, whatever else is configured.
DUMMY_CREDENTIALS: Final = {
    "AWS_ACCESS_KEY_ID": "carebus-rehearsal",
    "AWS_SECRET_ACCESS_KEY": "carebus-rehearsal",
}
_START_SECONDS: Final = 60
_STOP_SECONDS: Final = 15
# What the Lambda runtime (or here, the engine's interpreter) provides: never shipped in the layer, where
# a second botocore would shadow the runtime's.
_RUNTIME_PROVIDED: Final = (
    "boto3",
    "botocore",
    "s3transfer",
    "urllib3",
    "dateutil",
    "python_dateutil",
    "six",
)
# Powertools' own dependencies (for the parser and tracer extras), at the versions the tests ran with.
_POWERTOOLS_DEPENDENCIES: Final = (
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-extensions",
    "typing-inspection",
    "aws-xray-sdk",
    "wrapt",
    "jmespath",
)
# What the engine is asked, in its own interpreter: the resource types its CloudFormation creates, and
# whether it creates an alarm on metric math.
_CAPABILITIES_PROBE: Final = """
import json
from ministack.services.cloudformation import provisioners
try:
    provisioners._cw_metric_alarm_record("probe", {"Metrics": [{"Id": "m", "Expression": "1"}],
                                                   "ComparisonOperator": "GreaterThanThreshold"})
    metric_math = True
except ValueError:
    metric_math = False
print(json.dumps({"types": sorted(provisioners._RESOURCE_HANDLERS), "metric_math": metric_math}))
"""


@dataclass(frozen=True)
class EngineCapabilities:
    resource_types: frozenset[str]
    metric_math_alarms: bool


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def isolated_aws_environment(run_dir: Path, endpoint_url: str) -> dict[str, str]:
    """The environment of every AWS client of the rehearsal: dummy credentials, the engine's endpoint,
    and no profile, config or credentials file of the user's."""
    empty = run_dir / "aws-empty"
    empty.write_text("")
    inherited = {
        name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "CAREBUS_"))
    }
    return {
        **inherited,
        **DUMMY_CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "SAM_CLI_TELEMETRY": "0",
    }


class Engine:
    """One MiniStack process for one rehearsal."""

    def __init__(self, python: Path, run_dir: Path) -> None:
        self.python = python
        self.run_dir = run_dir
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.log = run_dir / "ministack.log"
        self.process: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        for folder in ("state", "tmp"):
            (self.run_dir / folder).mkdir(exist_ok=True)
        return {
            **isolated_aws_environment(self.run_dir, self.endpoint_url),
            "GATEWAY_PORT": str(self.port),
            "BIND_HOST": "127.0.0.1",
            "IOT_MTLS_ENABLED": "0",
            "SFTP_ENABLED": "0",
            "LAMBDA_EXECUTOR": "local",
            "STATE_DIR": str(self.run_dir / "state"),
            "TMPDIR": str(self.run_dir / "tmp"),
        }

    @contextmanager
    def running(self) -> Iterator["Engine"]:
        """Started and healthy inside; stopped, with its function processes, whatever happens."""
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - the engine venv's interpreter, fixed arguments
                [str(self.python), "-m", "ministack"],
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: its Lambda workers stop with it
            )
            try:
                self._wait_until_healthy()
                yield self
            finally:
                self._stop()

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + _START_SECONDS
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"MiniStack exited with {self.process.returncode}: see {self.log}")
            try:
                with urllib.request.urlopen(self.endpoint_url + HEALTH_PATH, timeout=2):  # noqa: S310 - loopback
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"MiniStack was not healthy within {_START_SECONDS} s: see {self.log}")

    def _stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        group = os.getpgid(self.process.pid)
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait()

    def capabilities(self) -> EngineCapabilities:
        answer = subprocess.run(  # noqa: S603 - the engine venv's interpreter, a fixed script
            [str(self.python), "-c", _CAPABILITIES_PROBE],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        probed = json.loads(answer.stdout)
        return EngineCapabilities(frozenset(probed["types"]), bool(probed["metric_math"]))

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )


def powertools_pins() -> dict[str, str]:
    """Powertools and its dependencies, at the versions installed here (what pyproject pins and the tests
    ran): the layer the rehearsal publishes ships exactly these."""
    return {
        name: importlib.metadata.version(name)
        for name in ("aws-lambda-powertools", *_POWERTOOLS_DEPENDENCIES)
    }


def build_powertools_layer(python: Path, folder: Path, pins: Mapping[str, str]) -> Path:
    """A layer zip of those versions for the engine's interpreter (python/ at its top, as Lambda wants)."""
    target = folder / "python"
    shutil.rmtree(folder, ignore_errors=True)
    target.mkdir(parents=True)
    requirements = [f"aws-lambda-powertools[parser,tracer]=={pins['aws-lambda-powertools']}"]
    requirements += [
        f"{name}=={version}" for name, version in pins.items() if name != "aws-lambda-powertools"
    ]
    subprocess.run(  # noqa: S603 - the engine venv's pip, pinned requirements
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            "--target",
            str(target),
            *requirements,
        ],
        check=True,
        timeout=600,
        capture_output=True,
    )
    for installed in target.iterdir():
        # pip's console scripts (bin/) are of no use in a layer either.
        if installed.name == "bin" or installed.name.split("-")[0].removesuffix(".py") in _RUNTIME_PROVIDED:
            shutil.rmtree(installed) if installed.is_dir() else installed.unlink()
    archive = folder.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as layer:
        for path in sorted(target.rglob("*")):
            layer.write(path, path.relative_to(folder))
    return archive


def publish_layer(engine: Engine, archive: Path, version: str) -> str:
    answer = engine.client("lambda").publish_layer_version(
        LayerName="carebus-powertools-python313",
        Description=f"Powertools for AWS Lambda (Python) {version}, as the public layer ships it",
        Content={"ZipFile": archive.read_bytes()},
        CompatibleRuntimes=["python3.13"],
        CompatibleArchitectures=["arm64", "x86_64"],
    )
    return str(answer["LayerVersionArn"])
