"""The ledger of a chaos run: what the stack holds after it, against what it was asked and answered.

Read from the stack itself (its tables, the bus's audit log, the workflow executions, the queues), judged
with the domain's own ids and rules. Every finding names its category; the verdict counts them.
"""

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Final

from carebus.approvals import ApprovalStatus
from carebus.billing import claim_id_for
from carebus.events import (
    APPOINTMENT_BOOKED,
    APPOINTMENT_WAITLISTED,
    CLAIM_SUBMITTED,
    PRESCRIPTION_APPROVAL_REQUESTED,
    PRESCRIPTION_APPROVED,
    PRESCRIPTION_EXPIRED,
    PRESCRIPTION_REJECTED,
    PRESCRIPTION_RELEASED,
    event_id,
)
from carebus.prescribing import PrescriptionStatus
from carebus.scheduling import appointment_id_for, slot_key
from carebus.submission import body_hash
from carebus_chaos.actors import Answer, Decision
from carebus_chaos.workload import PlannedEncounter, Poison

LOST: Final = "lost"
DUPLICATED: Final = "duplicated"
CONTRADICTION: Final = "contradiction"
IN_FLIGHT: Final = "in flight"
POISON_MISSING: Final = "poison not in its DLQ"
VALID_IN_DLQ: Final = "valid in a DLQ"
UNCONFIRMED: Final = "unconfirmed"
CATEGORIES: Final = (LOST, DUPLICATED, CONTRADICTION, IN_FLIGHT, POISON_MISSING, VALID_IN_DLQ, UNCONFIRMED)
_OUTCOME_EVENTS: Final = {
    ApprovalStatus.APPROVED: PRESCRIPTION_APPROVED,
    ApprovalStatus.REJECTED: PRESCRIPTION_REJECTED,
    ApprovalStatus.EXPIRED: PRESCRIPTION_EXPIRED,
}


@dataclass(frozen=True, slots=True)
class Finding:
    category: str
    subject: str
    detail: str


@dataclass
class StackState:
    """Everything the ledger reads, gathered once after the run."""

    encounters: dict[str, dict[str, Any]]
    claims: dict[str, dict[str, Any]]
    appointments: dict[str, dict[str, Any]]
    slots: list[dict[str, Any]]
    prescriptions: dict[str, dict[str, Any]]
    approvals: dict[str, dict[str, Any]]
    audit: Counter[str]
    executions: dict[str, list[dict[str, Any]]]  # by prescription id: status and whether it recorded
    depths: dict[str, int]  # queues that must be empty once the run is over
    dead_letters: dict[str, list[str]]  # dead-letter queue -> message bodies


@dataclass
class Ledger:
    accepted: int = 0
    submitted: int = 0
    approvals: int = 0
    decisions: int = 0
    poison: int = 0
    poison_found: int = 0
    event_deliveries: int = 0
    distinct_events: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)

    def add(self, category: str, subject: str, detail: str) -> None:
        self.findings.append(Finding(category, subject, detail))

    def count(self, category: str) -> int:
        return sum(finding.category == category for finding in self.findings)

    @property
    def clean(self) -> bool:
        return not self.findings

    def verdict(self) -> str:
        return (
            f"{self.accepted} accepted, {self.count(LOST)} lost, {self.count(DUPLICATED)} duplicated, "
            f"{self.poison_found}/{self.poison} poison in DLQ, {self.count(VALID_IN_DLQ)} valid in DLQ, "
            f"{self.count(CONTRADICTION)} contradictions, {self.count(IN_FLIGHT)} in flight, "
            f"{self.count(UNCONFIRMED)} unconfirmed"
        )


def judge(
    state: StackState,
    submissions: Iterable[tuple[PlannedEncounter, Answer]],
    decisions: Mapping[str, list[Decision]],
    poison: Iterable[Poison],
    dead_letter_queue_of: Mapping[str, str],
) -> Ledger:
    """The ledger of the run: each accepted encounter, each approval, each poison message, the queues."""
    ledger = Ledger(event_deliveries=sum(state.audit.values()), distinct_events=len(state.audit))
    known: set[str] = set()
    for planned, answer in submissions:
        ledger.submitted += 1
        encounter_id = answer.body.get("encounterId") if answer.status == 202 else None
        if encounter_id is None:
            ledger.add(UNCONFIRMED, planned.key, f"answered {answer.status} after {answer.attempts} attempts")
            continue
        ledger.accepted += 1
        known.add(encounter_id)
        _judge_encounter(ledger, state, planned, encounter_id)
        for approval_id in planned.approval_ids(encounter_id):
            ledger.approvals += 1
            _judge_approval(ledger, state, approval_id, decisions.get(approval_id, []))
    for encounter_id in state.encounters.keys() - known:
        ledger.add(DUPLICATED, encounter_id, "an encounter no answered submission names")
    _judge_slots(ledger, state)
    ledger.decisions = sum(len(made) for made in decisions.values())
    _judge_queues(ledger, state, list(poison), dead_letter_queue_of)
    return ledger


def _expect_event(ledger: Ledger, state: StackState, detail_type: str, subject_id: str, owner: str) -> None:
    if not state.audit[event_id(detail_type, subject_id)]:
        ledger.add(LOST, owner, f"no {detail_type} event for {subject_id} in the audit log")


def _judge_encounter(ledger: Ledger, state: StackState, planned: PlannedEncounter, encounter_id: str) -> None:
    request = planned.request
    stored = state.encounters.get(encounter_id)
    if stored is None:
        ledger.add(LOST, encounter_id, "accepted, but no encounter record")
    elif stored.get("bodyHash") != body_hash(request):
        ledger.add(
            CONTRADICTION, encounter_id, f"{planned.key} was answered with an encounter of another body"
        )
    claim = state.claims.get(encounter_id)
    if request.procedures:
        if claim is None or claim.get("claimId") != claim_id_for(encounter_id):
            ledger.add(LOST, encounter_id, "no claim")
        _expect_event(ledger, state, CLAIM_SUBMITTED, claim_id_for(encounter_id), encounter_id)
    elif claim is not None:
        ledger.add(DUPLICATED, encounter_id, "a claim for an encounter with nothing to bill")
    appointment = state.appointments.get(encounter_id)
    appointment_id = appointment_id_for(encounter_id)
    if request.follow_up is None:
        if appointment is not None:
            ledger.add(DUPLICATED, encounter_id, "an appointment nobody asked for")
    elif appointment is None or appointment.get("status") not in ("BOOKED", "WAITLISTED"):
        ledger.add(LOST, encounter_id, f"no appointment ({appointment and appointment.get('status')})")
    else:
        booked = appointment["status"] == "BOOKED"
        _expect_event(
            ledger,
            state,
            APPOINTMENT_BOOKED if booked else APPOINTMENT_WAITLISTED,
            appointment_id,
            encounter_id,
        )
    expected = planned.prescription_ids(encounter_id)
    written = {rx for rx, record in state.prescriptions.items() if record["encounterId"] == encounter_id}
    for prescription_id in sorted(written - set(expected)):
        ledger.add(DUPLICATED, prescription_id, "a prescription the encounter did not ask for")
    for prescription_id, asked in zip(expected, request.prescriptions, strict=True):
        record = state.prescriptions.get(prescription_id)
        if record is None:
            ledger.add(LOST, prescription_id, "no prescription record")
        elif not asked.is_controlled and record.get("status") != PrescriptionStatus.RELEASED:
            ledger.add(CONTRADICTION, prescription_id, f"uncontrolled but {record.get('status')}")
        kind = PRESCRIPTION_APPROVAL_REQUESTED if asked.is_controlled else PRESCRIPTION_RELEASED
        _expect_event(ledger, state, kind, prescription_id, encounter_id)


def _judge_approval(ledger: Ledger, state: StackState, approval_id: str, decisions: list[Decision]) -> None:
    prescription_id = approval_id.removeprefix("apr-")
    record = state.approvals.get(approval_id)
    prescription = state.prescriptions.get(prescription_id) or {}
    if record is None:
        ledger.add(LOST, approval_id, "a controlled prescription without an approval")
        return
    status = record.get("status")
    ledger.outcomes[str(status)] += 1
    if status not in _OUTCOME_EVENTS:
        category = IN_FLIGHT if status == ApprovalStatus.PENDING else CONTRADICTION
        ledger.add(category, approval_id, f"the approval is {status}")
        return
    if prescription.get("status") != status:
        ledger.add(
            CONTRADICTION, approval_id, f"approval {status}, prescription {prescription.get('status')}"
        )
    _expect_event(ledger, state, _OUTCOME_EVENTS[status], approval_id, approval_id)
    executions = state.executions.get(prescription_id, [])
    recorded = [execution for execution in executions if execution["recorded"]]
    if len(recorded) != 1:
        ledger.add(DUPLICATED if recorded else LOST, approval_id, f"{len(recorded)} workflows own it")
    for execution in recorded:
        if execution["status"] != "SUCCEEDED":
            ledger.add(CONTRADICTION, approval_id, f"approval {status}, workflow {execution['status']}")
    decided = (record.get("decidedBy"), record.get("decision"))
    confirmed = False
    for made in decisions:
        answer = made.answer
        if answer.status == 200:
            if status == ApprovalStatus.EXPIRED or (made.pharmacist, made.decision) != decided:
                ledger.add(
                    CONTRADICTION,
                    approval_id,
                    f"{made.pharmacist} answered 200 for {made.decision}, "
                    f"the approval is {status} by {decided[0]}",
                )
            confirmed = True
        elif answer.status == 409:
            current = answer.body.get("current") or {}
            if current.get("status") in ("APPROVED", "REJECTED") and current.get("decidedBy") != decided[0]:
                ledger.add(
                    CONTRADICTION, approval_id, f"a 409 named {current.get('decidedBy')}, not {decided[0]}"
                )
        elif answer.status != 403:
            ledger.add(UNCONFIRMED, approval_id, f"{made.pharmacist}'s decision answered {answer.status}")
    if status != ApprovalStatus.EXPIRED and not confirmed:
        ledger.add(UNCONFIRMED, approval_id, f"{status} by {decided[0]}, but nobody was answered 200")


def _judge_slots(ledger: Ledger, state: StackState) -> None:
    booked: Counter[tuple[str, str]] = Counter()
    for encounter_id, appointment in state.appointments.items():
        if appointment.get("status") != "BOOKED":
            continue
        start = datetime.fromisoformat(appointment["start"])
        key = slot_key(appointment["practitionerNpi"], start)
        booked[(appointment["practitionerNpi"], key)] += 1
        holders = [slot for slot in state.slots if slot["sk"] == key]
        if [slot.get("encounterId") for slot in holders] != [encounter_id]:
            ledger.add(CONTRADICTION, encounter_id, f"booked at {start}, but its slot is held by {holders}")
    for (npi, key), count in booked.items():
        if count > 1:
            ledger.add(DUPLICATED, key, f"{count} appointments of {npi} in one slot")
    holders_by_encounter = {
        encounter_id for encounter_id, a in state.appointments.items() if a.get("status") == "BOOKED"
    }
    for slot in state.slots:
        if slot.get("encounterId") not in holders_by_encounter:
            ledger.add(DUPLICATED, slot["sk"], "a slot taken by no booked appointment")


def _judge_queues(
    ledger: Ledger, state: StackState, poison: list[Poison], dead_letter_queue_of: Mapping[str, str]
) -> None:
    for queue, depth in state.depths.items():
        if depth:
            ledger.add(IN_FLIGHT, queue, f"{depth} message(s) still on the queue")
    for prescription_id, executions in state.executions.items():
        for execution in executions:
            if execution["status"] == "RUNNING":
                ledger.add(IN_FLIGHT, prescription_id, "a workflow still running")
    expected: dict[str, Counter[str]] = defaultdict(Counter)
    for item in poison:
        expected[dead_letter_queue_of[item.queue]][item.body] += 1
    ledger.poison = len(poison)
    for dead_letter_queue in sorted(set(state.dead_letters) | set(expected)):
        found = Counter(state.dead_letters.get(dead_letter_queue, []))
        for body, count in expected[dead_letter_queue].items():
            ledger.poison_found += min(found[body], count)
            if found[body] != count:
                ledger.add(POISON_MISSING, dead_letter_queue, f"{found[body]} of {count}: {body[:80]}")
        for body, count in (found - expected[dead_letter_queue]).items():
            ledger.add(VALID_IN_DLQ, dead_letter_queue, f"{count} x {body[:80]}")


def describe(ledger: Ledger) -> list[tuple[str, str]]:
    """The ledger as rows: what was checked and what was found."""
    rows = [
        ("submissions", f"{ledger.submitted} sent, {ledger.accepted} accepted"),
        ("approvals", f"{ledger.approvals} requested, {ledger.decisions} decisions sent"),
        (
            "approval outcomes",
            ", ".join(f"{count} {status}" for status, count in sorted(ledger.outcomes.items())),
        ),
        ("poison", f"{ledger.poison_found} of {ledger.poison} in their own dead-letter queue"),
        (
            "events",
            f"{ledger.distinct_events} distinct in the audit log, {ledger.event_deliveries} deliveries "
            f"({ledger.event_deliveries - ledger.distinct_events} repeats, deduped on eventId)",
        ),
    ]
    rows += [(category, str(ledger.count(category))) for category in CATEGORIES]
    return rows


def as_json(ledger: Ledger) -> str:
    return json.dumps(
        {
            "verdict": ledger.verdict(),
            "clean": ledger.clean,
            "counts": dict(describe(ledger)),
            "findings": [asdict(finding) for finding in ledger.findings[:200]],
        },
        indent=2,
    )
