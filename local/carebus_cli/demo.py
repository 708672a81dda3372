"""`carebus demo` (what `make demo` runs): a fresh offline stack and a scripted scenario through it.

The scenario uses the CLI's own client code: a physician submits two encounters and an invalid one, the
fan-out produces a claim, an appointment and prescriptions, a pharmacist approves the controlled
prescription, and each encounter's trace shows its path. Every expected step is checked and summed up;
the demo exits 0 only if all of them happened. No AWS account or credentials are needed.
"""

import os
import time
import uuid
import warnings
from collections.abc import Callable
from contextlib import ExitStack, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from carebus_cli.render import trace_table
from carebus_client.api import ApiClient
from carebus_client.errors import ApiProblemError, CarebusError, ExitCode
from carebus_client.samples import billing_only_encounter, full_encounter, invalid_encounter
from carebus_client.stacks import Stack, Target, carebus_home, sign_in
from carebus_client.trace import trace_encounter
from carebus_local.demo_users import DEMO_PASSWORD, DEMO_USERS
from carebus_local.runtime import RuntimeOptions
from carebus_local.serve import free_ports, offline_runtime

WAIT_SECONDS = 20.0  # the hard limit of every wait; the whole scenario takes a few seconds offline
POLL_SECONDS = 0.25
# What each encounter's trace must show once the scenario is through.
ENCOUNTER_ONE_TRACE = (
    "event ClaimSubmitted",
    "event AppointmentBooked",
    "event PrescriptionReleased",
    "event PrescriptionApprovalRequested",
    "event PrescriptionApproved",
    "approval workflow SUCCEEDED",
)
ENCOUNTER_TWO_TRACE = ("event ClaimSubmitted", "event PrescriptionReleased")


class StepFailedError(Exception):
    """An expected step did not happen; the message says what was seen instead."""


@dataclass
class StepOutcome:
    name: str
    passed: bool | None = None  # None: not reached, because an earlier step failed
    note: str = ""


# ----- the scenario --------------------------------------------------------------------------------------
class Scenario:
    """The scripted steps against one stack; each step returns a note or raises StepFailedError."""

    def __init__(self, stack: Stack, today: date) -> None:
        self.stack = stack
        self.today = today
        self.run_id = uuid.uuid4().hex[:8]
        self.physician: ApiClient | None = None
        self.pharmacist: ApiClient | None = None
        self.encounter_ids: dict[str, str] = {}
        self.controlled_prescription_id = ""
        self.approval_id = ""
        self.steps: list[tuple[str, Callable[[], str]]] = [
            ("physician signs in", lambda: self._sign_in("physician")),
            ("pharmacist signs in", lambda: self._sign_in("pharmacist")),
            (
                "encounter 1 accepted (procedures, follow-up, 2 prescriptions)",
                lambda: self._submit("1", full_encounter),
            ),
            (
                "encounter 2 accepted (procedures, 1 prescription)",
                lambda: self._submit("2", billing_only_encounter),
            ),
            ("invalid encounter refused: 400 with field errors", self._submit_invalid),
            ("encounter 1: claim, appointment booked, prescriptions released and pending", self._fan_out_one),
            ("encounter 2: claim, no appointment, prescription released", self._fan_out_two),
            ("controlled prescription pending approval", self._find_pending_approval),
            ("pharmacist approves it", self._approve),
            ("prescription APPROVED", self._wait_until_approved),
            (
                "encounter 1 traced: events audited, workflow succeeded",
                lambda: self._trace("1", ENCOUNTER_ONE_TRACE),
            ),
            ("encounter 2 traced: events audited", lambda: self._trace("2", ENCOUNTER_TWO_TRACE)),
        ]

    def run(self, progress: Progress) -> list[StepOutcome]:
        """Every step in order, each shown while it runs; the first failure ends the run."""
        outcomes = [StepOutcome(name) for name, _ in self.steps]
        for outcome, (name, step) in zip(outcomes, self.steps, strict=True):
            task = progress.add_task(name, total=1)
            try:
                outcome.note = step()
                outcome.passed = True
            except (StepFailedError, CarebusError) as error:
                outcome.passed, outcome.note = False, str(error)
            mark = "[green]✓[/]" if outcome.passed else "[red]✗[/]"
            progress.update(task, description=f"{mark} {name}", completed=1)
            progress.stop_task(task)
            if not outcome.passed:
                break
        return outcomes

    def _wait(self, check: Callable[[], tuple[bool, str]]) -> str:
        """Poll check until it reports done; what it saw last is the note, or the reason for failing."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            done, seen = check()
            if done:
                return seen
            if time.monotonic() > deadline:
                raise StepFailedError(f"not within {WAIT_SECONDS:.0f} s; last seen: {seen}")
            time.sleep(POLL_SECONDS)

    # ----- steps -------------------------------------------------------------------------------------------
    def _sign_in(self, role: str) -> str:
        username, _groups = DEMO_USERS[role]
        api = self.stack.api(sign_in(self.stack, username, DEMO_PASSWORD))
        if role == "physician":
            self.physician = api
        else:
            self.pharmacist = api
        return username

    def _submit(self, number: str, build: Callable[[date], dict[str, Any]]) -> str:
        encounter = build(self.today)
        answer = self._as_physician().submit_encounter(encounter, f"demo-{self.run_id}-{number}")
        if answer.get("status") != "ACCEPTED":
            raise StepFailedError(f"answered {answer}")
        self.encounter_ids[number] = answer["encounterId"]
        return f"202 {answer['encounterId']}"

    def _submit_invalid(self) -> str:
        try:
            answer = self._as_physician().submit_encounter(
                invalid_encounter(self.today), f"demo-{self.run_id}-invalid"
            )
        except ApiProblemError as problem:
            expected = {"practitionerNpi", "encounterDate"}
            if problem.status == 400 and expected <= problem.error_fields:
                return f"400, errors on {', '.join(sorted(problem.error_fields))}"
            raise StepFailedError(f"{problem}; errors on {sorted(problem.error_fields)}") from None
        raise StepFailedError(f"accepted as {answer.get('encounterId')}")

    def _fan_out_one(self) -> str:
        def check() -> tuple[bool, str]:
            state = self._as_physician().encounter(self.encounter_ids["1"])
            seen = _downstream(state)
            controlled = [rx for rx in state.get("prescriptions", []) if rx.get("deaSchedule")]
            if controlled:
                self.controlled_prescription_id = controlled[0]["prescriptionId"]
            done = seen == "claim SUBMITTED, appointment BOOKED, prescriptions PENDING_APPROVAL RELEASED"
            return done, seen

        return self._wait(check)

    def _fan_out_two(self) -> str:
        def check() -> tuple[bool, str]:
            seen = _downstream(self._as_physician().encounter(self.encounter_ids["2"]))
            return seen == "claim SUBMITTED, appointment -, prescriptions RELEASED", seen

        return self._wait(check)

    def _find_pending_approval(self) -> str:
        def check() -> tuple[bool, str]:
            pending = self._as_pharmacist().approvals("PENDING")
            mine = [a for a in pending if a.get("prescriptionId") == self.controlled_prescription_id]
            if mine:
                self.approval_id = mine[0]["approvalId"]
                return True, f"{self.approval_id} (schedule {mine[0].get('deaSchedule')})"
            return False, f"{len(pending)} pending, none for {self.controlled_prescription_id}"

        return self._wait(check)

    def _approve(self) -> str:
        def check() -> tuple[bool, str]:
            try:
                approval = self._as_pharmacist().decide(self.approval_id, "APPROVE")
            except ApiProblemError as problem:
                # 409 while the workflow has not yet handed over its wait: the approval is not decidable yet.
                current = problem.problem.get("current") or {}
                if problem.status == 409 and current.get("status") == "PENDING":
                    return False, str(problem)
                raise
            status = approval.get("status")
            return status == "APPROVED", f"{status} at {approval.get('decidedAt')}"

        return self._wait(check)

    def _wait_until_approved(self) -> str:
        def check() -> tuple[bool, str]:
            state = self._as_physician().encounter(self.encounter_ids["1"])
            statuses = {rx.get("prescriptionId"): rx.get("status") for rx in state.get("prescriptions", [])}
            status = statuses.get(self.controlled_prescription_id)
            return status == "APPROVED", f"{self.controlled_prescription_id} {status}"

        return self._wait(check)

    def _trace(self, number: str, expected: tuple[str, ...]) -> str:
        def check() -> tuple[bool, str]:
            trace = trace_encounter(self.stack, self.encounter_ids[number])
            missing = [step for step in expected if step not in trace.step_names()]
            if missing:
                return False, f"missing {', '.join(missing)}"
            return True, f"{len(trace.steps)} steps"

        return self._wait(check)

    def _as_physician(self) -> ApiClient:
        if self.physician is None:
            raise StepFailedError("the physician is not signed in")
        return self.physician

    def _as_pharmacist(self) -> ApiClient:
        if self.pharmacist is None:
            raise StepFailedError("the pharmacist is not signed in")
        return self.pharmacist


def _downstream(state: dict[str, Any]) -> str:
    """An encounter's downstream state in a few words: claim, appointment and prescription statuses."""
    claim = (state.get("claim") or {}).get("status") or "-"
    appointment = (state.get("appointment") or {}).get("status") or "-"
    prescriptions = " ".join(sorted(rx.get("status", "?") for rx in state.get("prescriptions", []))) or "-"
    return f"claim {claim}, appointment {appointment}, prescriptions {prescriptions}"


def summary_table(outcomes: list[StepOutcome]) -> Table:
    table = Table(title="Demo summary", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("expected step")
    table.add_column("result")
    table.add_column("seen", overflow="fold")
    labels = {True: "[green]passed[/]", False: "[red]failed[/]", None: "[yellow]not reached[/]"}
    for number, outcome in enumerate(outcomes, start=1):
        table.add_row(str(number), outcome.name, labels[outcome.passed], Text(outcome.note))
    return table


def demo_ports(host: str) -> tuple[int, int]:
    """The AWS and API ports of one demo run: whichever the system picks, never the ones `carebus local up`
    defaults to, so that `make local` can start while a demo runs and two demos never share a port."""
    aws_port, api_port = free_ports(host, (0, 0))
    return aws_port, api_port


def handler_log_path(home: Path, started_at: datetime, pid: int) -> Path:
    """One demo run's own handler log, named by its start and its process: a run started at the same time
    (or later) writes another file, so every run's log stays readable after it."""
    return home / "demo-logs" / f"handlers-{started_at:%Y%m%d-%H%M%S}-{pid}.log"


def run_scenario(console: Console) -> int:
    """Start an offline stack on free ports, run the scenario, print traces and the summary, stop."""
    started = time.monotonic()
    defaults = RuntimeOptions()
    aws_port, api_port = demo_ports(defaults.host)
    # Failed messages are retried after a second, not after the queue's two-minute visibility timeout.
    options = RuntimeOptions(aws_port=aws_port, api_port=api_port, retry_failed_after_seconds=1)
    home = carebus_home()
    handler_log = handler_log_path(home, datetime.now(UTC), os.getpid())
    # mkdir's mode applies to the last directory only: the home (sessions live there) is made private first.
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    handler_log.parent.mkdir(mode=0o700, exist_ok=True)
    with ExitStack() as resources:
        # The handlers print JSON logs and metrics to stdout as on Lambda; they go to a file rather than
        # through the scenario's output (the console keeps the real stdout).
        # "x": never another run's file, even if the names ever met.
        resources.enter_context(redirect_stdout(resources.enter_context(handler_log.open("x"))))
        resources.enter_context(warnings.catch_warnings())
        # Powertools warns whenever an invocation had no business metric to flush: nothing to act on here.
        warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)
        with console.status(f"Starting the offline stack (AWS on :{aws_port}, API on :{api_port})"):
            runtime = resources.enter_context(offline_runtime(options))
        console.print(
            f"Offline stack up in {time.monotonic() - started:.1f} s: "
            f"AWS {runtime.endpoint_url}, API {runtime.api_url}"
        )
        # The demo's own stack, whatever CAREBUS_ENDPOINT_URL points at.
        stack = Stack.find(Target(options.stack_name, runtime.endpoint_url, options.region, offline=True))
        scenario = Scenario(stack, datetime.now(UTC).date())
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        # Not redirecting stdout: the handlers' prints must keep going to their file.
        with Progress(*columns, console=console, redirect_stdout=False, redirect_stderr=False) as progress:
            outcomes = scenario.run(progress)
        for encounter_id in scenario.encounter_ids.values():
            try:
                console.print(trace_table(trace_encounter(stack, encounter_id)))
            except CarebusError as error:
                console.print(Text(f"No trace of {encounter_id}: {error}"))
        console.print(summary_table(outcomes))
    elapsed = time.monotonic() - started
    passed = sum(outcome.passed is True for outcome in outcomes)
    verdict = "[green]passed[/]" if passed == len(outcomes) else "[red]FAILED[/]"
    console.print(f"Demo {verdict}: {passed} of {len(outcomes)} expected steps in {elapsed:.1f} s")
    console.print(Text(f"The handlers' logs: {handler_log}"))
    return ExitCode.OK if passed == len(outcomes) else ExitCode.REFUSED
