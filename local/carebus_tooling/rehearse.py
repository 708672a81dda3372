"""`make rehearse`: what a user does to deploy carebus, against MiniStack instead of AWS.

The real `sam build`, then `sam deploy --config-env rehearsal` of the built template (less what the engine
cannot create), the end-to-end suite against the deployed stack, `sam delete`, the same deploy again under
the same name, and `sam delete` again; the engine runs on 127.0.0.1 on a free port with dummy credentials
that can never reach an AWS account, and is stopped by PID whatever happens. Every wait is bounded.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.table import Table

from carebus_client.e2e.targets import STACK_VARIABLE, TARGET_VARIABLE
from carebus_client.output import console as screen
from carebus_client.partner import PARTNER_API_URL_VARIABLE, PARTNER_TOKEN_URL_VARIABLE
from carebus_client.stacks import API_URL_VARIABLE, ENDPOINT_URL_VARIABLE
from carebus_tooling.engine import (
    Engine,
    build_powertools_layer,
    isolated_aws_environment,
    powertools_pins,
    publish_layer,
)
from carebus_tooling.rehearsal_template import NOT_ENFORCED, rehearsal_copy

PROJECT_ROOT: Final = Path(__file__).resolve().parents[2]
STACK_NAME: Final = "carebus-rehearsal"
CONFIG_ENV: Final = "rehearsal"
E2E_SUITE: Final = PROJECT_ROOT / "local" / "carebus_client" / "e2e"
# A failed message returns after this long on the rehearsal (MiniStack reads a queue's visibility timeout
# on every receive): a poison message reaches its DLQ in seconds, not in 5 x 120 s.
REHEARSAL_VISIBILITY_SECONDS: Final = 2
_COMMAND_SECONDS: Final = 600
SAM_POLL_SECONDS: Final = 0.5


@dataclass
class Rehearsal:
    phases: list[tuple[str, float]] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    resources: int = 0
    e2e_summary: str = ""


class RehearsalFailedError(Exception):
    """A phase failed; the message says which and where to look."""


def _run(command: Sequence[str], environment: dict[str, str], what: str, log: Path) -> str:
    """A command to completion within its bound; its output goes to the log; a failure names both."""
    with log.open("a") as output:
        output.write(f"\n$ {' '.join(command)}\n")
        output.flush()
        try:
            done = subprocess.run(  # noqa: S603 - our own tools, fixed arguments
                list(command),
                env=environment,
                cwd=PROJECT_ROOT,
                capture_output=True,
                text=True,
                timeout=_COMMAND_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise RehearsalFailedError(f"{what}: no answer within {_COMMAND_SECONDS} s (see {log})") from None
        output.write(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RehearsalFailedError(f"{what} failed ({done.returncode}); see {log}:\n{tail}")
    return done.stdout


class Rehearser:
    def __init__(self, engine_python: Path, run_dir: Path, console: Console) -> None:
        self.run_dir = run_dir
        self.console = console
        self.engine = Engine(engine_python, run_dir)
        self.log = run_dir / "rehearsal.log"
        self.environment = isolated_aws_environment(run_dir, self.engine.endpoint_url)
        # sam build finds python3.13 and sam through PATH: the project venv's, as `make build` does.
        self.environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        # sam deploy asks for the change set and the stack's events every 5 s by default, a pace meant for
        # CloudFormation's rate limits: the engine on this machine answers at once, so ask every half second.
        self.environment["SAM_CLI_POLL_DELAY"] = str(SAM_POLL_SECONDS)
        self.sam = str(Path(sys.executable).parent / "sam")
        self.result = Rehearsal()

    def phase(self, name: str, work: Callable[[], Any]) -> Any:
        started = time.monotonic()
        with self.console.status(name):
            value = work()
        self.result.phases.append((name, time.monotonic() - started))
        self.console.print(f"  [green]✓[/] {name} ({time.monotonic() - started:.1f} s)")
        return value

    def rehearse(self) -> Rehearsal:
        started = time.monotonic()
        with self.engine.running():
            self.result.phases.append(("engine up (MiniStack on 127.0.0.1)", time.monotonic() - started))
            self.phase("sam build", self.build)
            layer = self.phase("Powertools layer published in the engine", self.publish_powertools)
            template = self.phase("rehearsal copy of the built template", self.copy_template)
            self.phase("sam deploy", lambda: self.deploy(template, layer))
            self.phase("end-to-end suite", self.run_e2e)
            self.phase("sam delete", self.delete)
            self.phase("sam deploy again, same name", lambda: self.deploy(template, layer))
            self.phase("sam delete again", self.delete)
        return self.result

    def build(self) -> None:
        _run([self.sam, "build", "--template", "template.yaml"], self.environment, "sam build", self.log)

    def publish_powertools(self) -> str:
        pins = powertools_pins()
        archive = build_powertools_layer(self.engine.python, self.run_dir / "powertools-layer", pins)
        return publish_layer(self.engine, archive, pins["aws-lambda-powertools"])

    def copy_template(self) -> Path:
        copy = rehearsal_copy(
            PROJECT_ROOT / ".aws-sam" / "build" / "template.yaml", self.engine.capabilities()
        )
        self.result.left_out = copy.left_out
        return copy.path

    def deploy(self, template: Path, layer: str) -> None:
        command = [self.sam, "deploy", "--template-file", str(template), "--config-env", CONFIG_ENV]
        command += ["--config-file", str(PROJECT_ROOT / "samconfig.toml"), "--stack-name", STACK_NAME]
        command += ["--parameter-overrides", f"Environment=dev PowertoolsLayerArn={layer}"]
        _run(command, self.environment, "sam deploy", self.log)
        cloudformation = self.engine.client("cloudformation")
        [stack] = cloudformation.describe_stacks(StackName=STACK_NAME)["Stacks"]
        if stack["StackStatus"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
            raise RehearsalFailedError(f"the stack is {stack['StackStatus']} (see {self.log})")
        pages = cloudformation.get_paginator("list_stack_resources").paginate(StackName=STACK_NAME)
        self.result.resources = sum(len(page["StackResourceSummaries"]) for page in pages)
        self.shorten_retries()

    def shorten_retries(self) -> None:
        """Lab time for the consumed queues (the event source mappings' sources, as the template names
        them): a failed message is retried after REHEARSAL_VISIBILITY_SECONDS."""
        cloudformation, sqs = self.engine.client("cloudformation"), self.engine.client("sqs")
        resources = {
            resource["LogicalResourceId"]: resource
            for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=STACK_NAME)
            for resource in page["StackResourceSummaries"]
        }
        template = cloudformation.get_template(StackName=STACK_NAME, TemplateStage="Processed")[
            "TemplateBody"
        ]
        body = template if isinstance(template, dict) else json.loads(template)
        for resource in body["Resources"].values():
            if resource["Type"] == "AWS::Lambda::EventSourceMapping":
                queue = resource["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]
                sqs.set_queue_attributes(
                    QueueUrl=resources[queue]["PhysicalResourceId"],
                    Attributes={"VisibilityTimeout": str(REHEARSAL_VISIBILITY_SECONDS)},
                )

    def api_url(self, output: str = "ApiUrl") -> str:
        """Where MiniStack serves one of the stack's APIs: the output names AWS's hostname."""
        [stack] = self.engine.client("cloudformation").describe_stacks(StackName=STACK_NAME)["Stacks"]
        outputs = {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}
        parsed = urllib.parse.urlsplit(outputs[output])
        api_id = parsed.hostname.split(".", 1)[0] if parsed.hostname else ""
        return f"{self.engine.endpoint_url}/_aws/execute-api/{api_id}{parsed.path}"

    def run_e2e(self) -> None:
        environment = {
            **self.environment,
            TARGET_VARIABLE: "rehearsal",
            STACK_VARIABLE: STACK_NAME,
            ENDPOINT_URL_VARIABLE: self.engine.endpoint_url,
            API_URL_VARIABLE: self.api_url(),
            PARTNER_API_URL_VARIABLE: self.api_url("PartnerApiUrl"),
            # MiniStack answers the user pool domain's token endpoint at its own root.
            PARTNER_TOKEN_URL_VARIABLE: f"{self.engine.endpoint_url}/oauth2/token",
        }
        pytest = str(Path(sys.executable).parent / "pytest")
        output = _run(
            [pytest, str(E2E_SUITE), "-q", "-ra", "-p", "no:cacheprovider", "-p", "no:randomly"],
            environment,
            "the end-to-end suite",
            self.log,
        )
        lines = output.strip().splitlines()
        self.result.e2e_summary = lines[-1] if lines else ""
        skipped = [line for line in lines if line.startswith("SKIPPED")]
        for line in skipped:
            self.console.print(f"    {line}", highlight=False)

    def delete(self) -> None:
        command = [self.sam, "delete", "--stack-name", STACK_NAME, "--no-prompts", "--region", "us-east-1"]
        command += ["--config-file", str(PROJECT_ROOT / "samconfig.toml"), "--config-env", CONFIG_ENV]
        _run(command, self.environment, "sam delete", self.log)


def report(result: Rehearsal, console: Console, seconds: float) -> None:
    phases = Table(title="Rehearsal", title_justify="left")
    phases.add_column("phase")
    phases.add_column("seconds", justify="right")
    for name, taken in result.phases:
        phases.add_row(name, f"{taken:.1f}")
    console.print(phases)
    console.print("[bold]Not rehearsed[/] (left out of the rehearsal's copy of the built template):")
    for name, why in result.left_out.items():
        console.print(f"  - {name}: {why}", highlight=False)
    console.print("[bold]Deployed but not enforced by the engine[/] (the rehearsal is no more than this):")
    for item in NOT_ENFORCED:
        console.print(f"  - {item}", highlight=False)
    console.print(
        f"Rehearsal passed: {result.resources} resources deployed twice under {STACK_NAME} and deleted, "
        f"end-to-end suite: {result.e2e_summary} ({seconds:.0f} s)",
        highlight=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m carebus_tooling.rehearse", description=__doc__)
    parser.add_argument("--engine-python", type=Path, required=True, help="the engine venv's python3.13")
    args = parser.parse_args(argv)
    console = screen()
    started = time.monotonic()
    (PROJECT_ROOT / ".aws-sam").mkdir(exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="rehearsal-", dir=PROJECT_ROOT / ".aws-sam"))
    console.print(f"Rehearsing `sam deploy` into MiniStack (logs in {run_dir})")
    try:
        rehearser = Rehearser(args.engine_python, run_dir, console)
        result = rehearser.rehearse()
    except RehearsalFailedError as failure:
        console.print(f"[red]Rehearsal FAILED[/]: {failure}", highlight=False)
        return 1
    report(result, console, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
