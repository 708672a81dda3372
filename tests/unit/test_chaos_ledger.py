"""The chaos ledger finds what it is there to find: each kind of loss, duplicate and contradiction."""

from collections import Counter
from datetime import date, datetime
from typing import Any

import pytest

from carebus.billing import claim_id_for
from carebus.events import event_id
from carebus.scheduling import appointment_id_for, slot_key
from carebus.submission import body_hash
from carebus_chaos.actors import Answer, Decision
from carebus_chaos.ledger import (
    CONTRADICTION,
    DUPLICATED,
    IN_FLIGHT,
    LOST,
    POISON_MISSING,
    UNCONFIRMED,
    VALID_IN_DLQ,
    StackState,
    judge,
)
from carebus_chaos.workload import Poison, encounter_mix

TODAY = date(2026, 12, 1)
ENCOUNTER = "5f51a656-9daa-559d-8d95-7aa5a75d9b03"
PHARMACIST, OTHER = "pharmacist-1", "pharmacist-2"
START = "2026-12-03T09:00:00+00:00"


def full_plan():
    """A planned encounter with procedures, a follow-up and a controlled prescription."""
    return next(
        plan
        for plan in encounter_mix(200, 3, TODAY, 2)
        if plan.body["procedures"]
        and "followUp" in plan.body
        and plan.body["followUp"]["earliest"] > TODAY.isoformat()
        and len(plan.body["prescriptions"]) == 2
    )


PLAN = full_plan()
APPROVAL = PLAN.approval_ids(ENCOUNTER)[0]
RELEASED, CONTROLLED = PLAN.prescription_ids(ENCOUNTER)


def healthy_state() -> StackState:
    """The stack as it should be after the plan was accepted and its approval approved."""
    npi = PLAN.body["practitionerNpi"]
    key = slot_key(npi, datetime.fromisoformat(START))
    events = [
        event_id("ClaimSubmitted", claim_id_for(ENCOUNTER)),
        event_id("AppointmentBooked", appointment_id_for(ENCOUNTER)),
        event_id("PrescriptionReleased", RELEASED),
        event_id("PrescriptionApprovalRequested", CONTROLLED),
        event_id("PrescriptionApproved", APPROVAL),
    ]
    return StackState(
        encounters={ENCOUNTER: {"encounterId": ENCOUNTER, "bodyHash": body_hash(PLAN.request)}},
        claims={ENCOUNTER: {"encounterId": ENCOUNTER, "claimId": claim_id_for(ENCOUNTER)}},
        appointments={ENCOUNTER: {"status": "BOOKED", "start": START, "practitionerNpi": npi}},
        slots=[{"sk": key, "encounterId": ENCOUNTER}],
        prescriptions={
            RELEASED: {"encounterId": ENCOUNTER, "status": "RELEASED"},
            CONTROLLED: {"encounterId": ENCOUNTER, "status": "APPROVED"},
        },
        approvals={APPROVAL: {"status": "APPROVED", "decidedBy": PHARMACIST, "decision": "APPROVE"}},
        audit=Counter(events),
        executions={CONTROLLED: [{"status": "SUCCEEDED", "recorded": True}]},
        depths={"BillingQueue": 0},
        dead_letters={},
    )


def answered(status: int, **body: Any) -> Answer:
    return Answer(status=status, body=body, attempts=1)


def winning_decisions() -> dict[str, list[Decision]]:
    return {
        APPROVAL: [
            Decision(PHARMACIST, "APPROVE", None, answered(200)),
            Decision(
                OTHER,
                "REJECT",
                "no",
                answered(409, current={"status": "APPROVED", "decidedBy": PHARMACIST}),
            ),
        ]
    }


def findings(state: StackState | None = None, **overrides: Any) -> list[tuple[str, str]]:
    arguments = {
        "submissions": [(PLAN, answered(202, encounterId=ENCOUNTER))],
        "decisions": winning_decisions(),
        "poison": [],
        "dead_letter_queue_of": {"BillingQueue": "BillingDeadLetterQueue"},
    } | overrides
    ledger = judge(state or healthy_state(), **arguments)
    return [(finding.category, finding.subject) for finding in ledger.findings]


def test_a_healthy_stack_has_a_clean_ledger():
    assert findings() == []


@pytest.mark.parametrize(
    ("break_it", "category"),
    [
        (lambda state: state.claims.clear(), LOST),
        (lambda state: state.appointments.clear(), LOST),
        (lambda state: state.prescriptions.pop(RELEASED), LOST),
        (lambda state: state.audit.pop(event_id("ClaimSubmitted", claim_id_for(ENCOUNTER))), LOST),
        (lambda state: state.encounters.update({"stranger": {}}), DUPLICATED),
        (lambda state: state.encounters[ENCOUNTER].update(bodyHash="another"), CONTRADICTION),
        (lambda state: state.slots.append({"sk": "SLOT#x", "encounterId": "nobody"}), DUPLICATED),
        (
            lambda state: state.executions[CONTROLLED].append({"status": "SUCCEEDED", "recorded": True}),
            DUPLICATED,
        ),
        (lambda state: state.prescriptions[CONTROLLED].update(status="REJECTED"), CONTRADICTION),
        (lambda state: state.approvals[APPROVAL].update(status="FAILED"), CONTRADICTION),
        (lambda state: state.approvals[APPROVAL].update(status="PENDING"), IN_FLIGHT),
        (lambda state: state.depths.update(BillingQueue=1), IN_FLIGHT),
        (lambda state: state.dead_letters.update(BillingDeadLetterQueue=["a valid message"]), VALID_IN_DLQ),
    ],
    ids=[
        "no-claim",
        "no-appointment",
        "no-prescription",
        "no-event",
        "unknown-encounter",
        "another-body",
        "orphan-slot",
        "two-workflows",
        "prescription-disagrees",
        "approval-failed",
        "approval-stuck",
        "queue-not-empty",
        "valid-in-dlq",
    ],
)
def test_each_kind_of_damage_is_found(break_it, category):
    state = healthy_state()
    break_it(state)

    assert category in [found for found, _ in findings(state)]


def test_a_200_for_a_decision_that_was_not_taken_is_a_contradiction():
    decisions = winning_decisions()
    decisions[APPROVAL][1].answer = answered(200)

    assert (CONTRADICTION, APPROVAL) in findings(decisions=decisions)


def test_a_409_naming_another_winner_than_the_recorded_one_is_a_contradiction():
    decisions = winning_decisions()
    decisions[APPROVAL][1].answer = answered(409, current={"status": "APPROVED", "decidedBy": OTHER})

    assert (CONTRADICTION, APPROVAL) in findings(decisions=decisions)


def test_a_decision_nobody_was_told_of_is_unconfirmed():
    decisions = winning_decisions()
    decisions[APPROVAL][0].answer = answered(503)

    assert (UNCONFIRMED, APPROVAL) in findings(decisions=decisions)


def test_a_submission_never_answered_202_is_unconfirmed():
    assert (UNCONFIRMED, PLAN.key) in findings(submissions=[(PLAN, answered(503))])


def test_poison_must_be_in_its_own_dead_letter_queue_once():
    poison = [Poison("BillingQueue", "not-json", "{not json 1")]
    state = healthy_state()

    assert (POISON_MISSING, "BillingDeadLetterQueue") in findings(state, poison=poison)
    state.dead_letters["BillingDeadLetterQueue"] = ["{not json 1"]
    assert findings(state, poison=poison) == []
    state.dead_letters["BillingDeadLetterQueue"] = ["{not json 1", "{not json 1"]
    assert (VALID_IN_DLQ, "BillingDeadLetterQueue") in findings(state, poison=poison)
