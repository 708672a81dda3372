"""`make chaos`: N encounters through the offline API under injected faults, then the ledger and a verdict.

The run, on a fresh offline stack (lab-time clocks: a failed message returns after RETRY_AFTER_SECONDS,
each approval wait lasts --approval-wait seconds):
1. physicians submit every encounter concurrently, each under its own Idempotency-Key, sending it again
   after any answer the API documents as safe to retry; every queue gets poison of several kinds; some
   encounters' references are published twice at once (an exact duplicate delivery);
2. pharmacists decide the approvals as they appear: several at once on most (conflicting decisions),
   one on some, a late one on a few (after the escalation), none on the rest (they expire);
3. once the stack is at rest, some idempotency records are deleted and some references delivered again
   (late duplicates), and the stack is left to come to rest again;
4. the ledger reads the tables, the audit log, the executions and the queues and judges them.

Throughout 1-3 a share of the handlers' AWS calls fails: at the HTTP attempt level (throttles and lost
replies that the SDK retries by itself, its retry of a lost reply being sent after the first took effect)
and, rarer, at the call level (what is left when the SDK's retries ran out).
"""

import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from carebus.messages import reference_body, routing_attributes
from carebus_chaos.actors import Answer, Decision, Pharmacist, Physician
from carebus_chaos.faults import Fault, FaultInjector, at_rate
from carebus_chaos.ledger import Ledger, judge
from carebus_chaos.observe import StackView, scan
from carebus_chaos.workload import PlannedEncounter, Poison, encounter_mix, misrouted_poison, poison_for
from carebus_client.api import ApiClient
from carebus_client.stacks import Stack, Target, sign_in
from carebus_client.users import create_user
from carebus_local.runtime import OfflineRuntime, RuntimeOptions
from carebus_local.serve import offline_runtime

RETRY_AFTER_SECONDS = 2
PASSWORD = "Chaos-Run-2026!"  # noqa: S105 - users of a throwaway offline stack


@dataclass(frozen=True)
class ChaosOptions:
    encounters: int = 1000
    clients: int = 8
    pharmacists: int = 3
    practitioners: int = 25
    seed: int = 7
    attempt_fault_rate: float = 0.04
    call_fault_rate: float = 0.005
    approval_wait_seconds: int = 8
    duplicate_share: float = 0.05
    late_duplicate_share: float = 0.05
    deleted_idempotency_share: float = 0.05
    rest_timeout_seconds: float = 240.0


@dataclass
class Phase:
    name: str
    seconds: float


@dataclass
class ChaosRun:
    """What a run did and what it found."""

    options: ChaosOptions
    submissions: list[tuple[PlannedEncounter, Answer]] = field(default_factory=list)
    decisions: dict[str, list[Decision]] = field(default_factory=dict)
    poison: list[Poison] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    # What else the run did to the stack besides faults, counted.
    disturbances: Counter[str] = field(default_factory=Counter)
    ledger: Ledger | None = None


class _Clock:
    def __init__(self, run: ChaosRun) -> None:
        self.run = run

    def phase(self, name: str, work: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            return work()
        finally:
            self.run.phases.append(Phase(name, time.monotonic() - started))


def _staff(stack: Stack, role: str, group: str, count: int) -> list[tuple[str, ApiClient]]:
    """count signed-in users of a group: (subject, their API)."""
    staff = []
    for number in range(count):
        user = create_user(stack, f"chaos-{role}-{number}@carebus.local", PASSWORD, group)
        staff.append((user.subject, stack.api(sign_in(stack, user.username, PASSWORD), timeout_seconds=60)))
    return staff


# Consumers that refuse a reference their queue's filter policy would never have routed to them, and what
# about an encounter makes it one: billing has nothing to bill, scheduling no follow-up to book.
_MISROUTED: dict[str, Callable[[PlannedEncounter], bool]] = {
    "BillingFunction": lambda plan: not plan.request.procedures,
    "SchedulingFunction": lambda plan: plan.request.follow_up is None,
}


class _Scenario:
    """Steps 1-3 of the run against one started runtime."""

    def __init__(self, runtime: OfflineRuntime, run: ChaosRun) -> None:
        assert runtime.stack is not None
        self.runtime = runtime
        self.run = run
        self.options = run.options
        self.view = StackView(runtime.stack, runtime.client)
        self.sqs = runtime.client("sqs")
        self.sns = runtime.client("sns")
        self.topic = runtime.stack.outputs["EncounterTopicArn"]
        stack = Stack.find(
            Target(runtime.stack.name, runtime.endpoint_url, runtime.stack.region, offline=True)
        )
        self.physicians = [
            Physician(api, self.options.seed + number)
            for number, (_, api) in enumerate(_staff(stack, "physician", "physicians", self.options.clients))
        ]
        self.pharmacists = {
            subject: Pharmacist(subject, api, self.options.seed + number)
            for number, (subject, api) in enumerate(
                _staff(stack, "pharmacist", "pharmacists", self.options.pharmacists)
            )
        }

    def _chance(self, share: float, *salt: str) -> bool:
        """A seeded coin per subject: the same run decides the same."""
        return random.Random("-".join((str(self.options.seed), *salt))).random() < share  # noqa: S311

    # ----- 1 and 2: submissions, poison, exact duplicates, decisions ----------------------------------
    def submit_and_decide(self) -> None:
        planned = encounter_mix(
            self.options.encounters, self.options.seed, datetime.now(UTC).date(), self.options.practitioners
        )
        self._send(poison_for(self.view.reference_queues, self.view.token_queues))
        deadline = time.monotonic() + 120 + self.options.encounters * 0.5
        with (
            ThreadPoolExecutor(len(self.physicians), thread_name_prefix="physician") as physicians,
            ThreadPoolExecutor(4 * len(self.pharmacists), thread_name_prefix="pharmacist") as pharmacists,
        ):
            futures = [
                physicians.submit(
                    self._submit, self.physicians[number % len(self.physicians)], plan, deadline, pharmacists
                )
                for number, plan in enumerate(planned)
            ]
            self.run.submissions = [future.result() for future in futures]
            self._send(self._misrouted())

    def _submit(
        self, physician: Physician, plan: PlannedEncounter, deadline: float, pharmacists: ThreadPoolExecutor
    ) -> tuple[PlannedEncounter, Answer]:
        answer = physician.submit(plan.body, plan.key, deadline)
        encounter_id = answer.body.get("encounterId") if answer.status == 202 else None
        if encounter_id:
            if self._chance(self.options.duplicate_share, plan.key):
                self._deliver_again(plan, encounter_id)
                self.run.disturbances["references delivered twice at once"] += 1
            for number, approval_id in enumerate(plan.approval_ids(encounter_id)):
                for decision, delay in self._decisions(approval_id, f"{plan.key}-{number}"):
                    pharmacists.submit(self._decide, approval_id, decision, delay)
        return plan, answer

    def _decisions(self, approval_id: str, salt: str) -> list[tuple[Decision, float]]:
        """Who decides this approval, what, and after how long: several at once (conflicting), one, a late
        one after the escalation, or nobody (it expires). Seeded by the submission: the same run decides
        the same."""
        generator = random.Random(f"{self.options.seed}-{salt}")  # noqa: S311
        roll = generator.random()
        if roll < 0.15:
            self.run.disturbances["approvals nobody decides (they expire)"] += 1
            return []
        count = generator.choice((2, 3)) if roll < 0.70 else 1
        late = 0.70 <= roll < 0.78
        delay = 1.2 * self.options.approval_wait_seconds if late else 0.0
        kind = "decided after the escalation" if late else "contested" if count > 1 else "decided by one"
        self.run.disturbances[f"approvals {kind}"] += 1
        decisions = []
        for subject in generator.sample(sorted(self.pharmacists), k=min(count, len(self.pharmacists))):
            verdict = generator.choice(("APPROVE", "REJECT"))
            reason = f"chaos rejection {generator.randrange(10**6)}" if verdict == "REJECT" else None
            decision = Decision(subject, verdict, reason)
            self.run.decisions.setdefault(approval_id, []).append(decision)
            decisions.append((decision, delay))
        return decisions

    def _decide(self, approval_id: str, decision: Decision, delay: float) -> None:
        time.sleep(delay)
        deadline = time.monotonic() + 3 * self.options.approval_wait_seconds + 60
        self.pharmacists[decision.pharmacist].decide(approval_id, decision, deadline)

    def _misrouted(self) -> list[Poison]:
        accepted = [
            (plan, answer.body["encounterId"])
            for plan, answer in self.run.submissions
            if answer.status == 202
        ]
        poison = []
        for queue, function in self.view.consumer_of.items():
            unwanted = _MISROUTED.get(function)
            found = next(
                (encounter_id for plan, encounter_id in accepted if unwanted and unwanted(plan)), None
            )
            if found is not None:
                poison.append(misrouted_poison(queue, found, reference_body(found)))
        return poison

    def _send(self, poison: list[Poison]) -> None:
        self.run.poison += poison
        self.run.disturbances["poison messages"] += len(poison)
        for item in poison:
            self.sqs.send_message(QueueUrl=self.view.url(item.queue), MessageBody=item.body)

    def _deliver_again(self, plan: PlannedEncounter, encounter_id: str) -> None:
        """The reference again through the topic, as a duplicate fan-out delivers it."""
        self.sns.publish(
            TopicArn=self.topic,
            Message=reference_body(encounter_id),
            MessageAttributes=routing_attributes(encounter_id, plan.request),
        )

    # ----- 3: late duplicates, some of them after their idempotency record was deleted ---------------------
    def deliver_late_duplicates(self) -> None:
        dynamodb = self.runtime.client("dynamodb")
        table = self.view.stack.ref("IdempotencyTable")
        for record in scan(dynamodb, table):
            if self._chance(self.options.deleted_idempotency_share, record["id"]):
                dynamodb.delete_item(TableName=table, Key={"id": {"S": record["id"]}})
                self.run.disturbances["idempotency records deleted"] += 1
        for plan, answer in self.run.submissions:
            if answer.status == 202 and self._chance(self.options.late_duplicate_share, "late", plan.key):
                self._deliver_again(plan, answer.body["encounterId"])
                self.run.disturbances["references delivered again late"] += 1

    # ----- rest ---------------------------------------------------------------------------------------
    def wait_for_rest(self, seconds: float) -> None:
        """Until nothing is queued or running, three times in a row (or the time is up)."""
        deadline = time.monotonic() + seconds
        quiet = 0
        while quiet < 3 and time.monotonic() < deadline:
            busy = any(self.view.busy_queues().values()) or self.view.running_executions()
            quiet = 0 if busy else quiet + 1
            time.sleep(0.5)


def run_chaos(options: ChaosOptions, runtime_options: RuntimeOptions) -> ChaosRun:
    """One whole run on a fresh offline stack, judged; the runtime is stopped whatever happens."""
    run = ChaosRun(options)
    clock = _Clock(run)
    wait = str(options.approval_wait_seconds)
    runtime_options.parameters.update(ApprovalTimeoutSeconds=wait, ApprovalHeartbeatSeconds=wait)
    runtime_options.retry_failed_after_seconds = RETRY_AFTER_SECONDS
    attempts = FaultInjector(
        at_rate(options.attempt_fault_rate, options.seed, (Fault.THROTTLED, Fault.REPLY_LOST)),
        level="attempt",
    )
    calls = FaultInjector(at_rate(options.call_fault_rate, options.seed + 1), level="call")
    with offline_runtime(runtime_options) as runtime:
        scenario = clock.phase("users", lambda: _Scenario(runtime, run))
        with attempts.active(), calls.active():
            clock.phase("submissions and decisions", scenario.submit_and_decide)
            clock.phase("first rest", lambda: scenario.wait_for_rest(options.rest_timeout_seconds))
            clock.phase("late duplicates", scenario.deliver_late_duplicates)
            clock.phase("second rest", lambda: scenario.wait_for_rest(options.rest_timeout_seconds))
        run.faults = {
            "handler HTTP attempts": sum(attempts.calls.values()),
            **{f"attempt {kind}": attempts.total(kind) for kind in (Fault.THROTTLED, Fault.REPLY_LOST)},
            "handler calls": sum(calls.calls.values()),
            **{f"call {kind}": calls.total(kind) for kind in Fault},
        }
        view = scenario.view
        run.ledger = clock.phase(
            "ledger",
            lambda: judge(
                view.state(), run.submissions, run.decisions, run.poison, view.dead_letter_queue_of
            ),
        )
    return run
