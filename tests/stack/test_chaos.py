"""`make chaos` in small: the same run and the same ledger, on a few encounters under more faults."""

import pytest

from carebus_chaos.run import ChaosOptions, run_chaos
from carebus_local.runtime import RuntimeOptions
from carebus_local.serve import free_ports

SMALL = ChaosOptions(
    encounters=24,
    clients=4,
    seed=2026,  # a seed whose 24 encounters bring every kind of approval and duplicate
    attempt_fault_rate=0.08,
    call_fault_rate=0.02,
    approval_wait_seconds=5,
    duplicate_share=0.25,
    late_duplicate_share=0.25,
    deleted_idempotency_share=0.25,
    rest_timeout_seconds=90,
)


@pytest.fixture(scope="module")
def small_run():
    aws_port, api_port = free_ports("127.0.0.1", (0, 0))
    # Lab time for the batching window too: each poison message's five receives would each wait out the
    # window (the run still has concurrent pollers, duplicates at once and late, and every fault).
    options = RuntimeOptions(
        aws_port=aws_port, api_port=api_port, stack_name="carebus-chaos-slice", batching_window_seconds=0
    )
    return run_chaos(SMALL, options)


def test_the_run_really_injected_faults_of_every_kind_and_sent_poison(small_run):
    assert small_run.faults["attempt throttled"] > 0
    assert small_run.faults["attempt reply-lost"] > 0
    assert (
        small_run.faults["call throttled"]
        + small_run.faults["call reply-lost"]
        + small_run.faults["call retried"]
        > 0
    )
    assert small_run.ledger.poison == small_run.disturbances["poison messages"] > 0
    for disturbance in (
        "approvals contested",
        "approvals decided after the escalation",
        "references delivered twice at once",
        "references delivered again late",
        "idempotency records deleted",
    ):
        assert small_run.disturbances[disturbance] > 0, disturbance


def test_every_encounter_is_accepted_and_nothing_is_lost_duplicated_contradicted_or_left_in_flight(small_run):
    ledger = small_run.ledger

    assert ledger.findings == []
    assert ledger.accepted == SMALL.encounters
    assert ledger.poison_found == ledger.poison
    assert ledger.verdict().startswith(f"{SMALL.encounters} accepted, 0 lost, 0 duplicated")
