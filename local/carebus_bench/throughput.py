"""Offline end-to-end throughput: N encounters through the local REST API, timed from the first submit until
every record the flow writes is in its table (each claim, appointment or waitlisting, prescription), on a
fresh offline stack per run. Sizes run interleaved; the figures show how the cost grows with N.

    python -m carebus_bench.throughput 20 100 [--runs 3] [--batching-window SECONDS]
"""

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from carebus.billing import claim_id_for
from carebus.scheduling import appointment_id_for
from carebus_chaos.observe import scan
from carebus_chaos.workload import PlannedEncounter, encounter_mix
from carebus_client.api import ApiClient
from carebus_client.metrics import nearest_rank
from carebus_client.stacks import Stack, Target, sign_in
from carebus_local.demo_users import DEMO_PASSWORD, DEMO_USERS
from carebus_local.runtime import OfflineRuntime, RuntimeOptions
from carebus_local.serve import free_ports, offline_runtime

# How often the tables are counted while waiting: the figures are this coarse, and counting costs the stack
# (its moto) a little CPU each time.
POLL_SECONDS = 0.1
SEED = 11
# Scheduling books per practitioner and day: a handful of calendars, as a small practice has.
PRACTITIONERS = 5
CLIENTS = 8


@dataclass(frozen=True)
class Expected:
    """What the flow must write for a planned set of encounters, once each is accepted."""

    claims: set[str]
    appointments: set[str]
    prescriptions: set[str]
    approvals: set[str]

    @classmethod
    def of(cls, accepted: Sequence[tuple[PlannedEncounter, str]]) -> "Expected":
        return cls(
            claims={claim_id_for(eid) for planned, eid in accepted if planned.body["procedures"]},
            appointments={appointment_id_for(eid) for planned, eid in accepted if "followUp" in planned.body},
            prescriptions={rx for planned, eid in accepted for rx in planned.prescription_ids(eid)},
            approvals={apr for planned, eid in accepted for apr in planned.approval_ids(eid)},
        )


class RecordCounter:
    """How many records of each kind the stack holds (the stack is fresh: only this run's)."""

    def __init__(self, runtime: OfflineRuntime) -> None:
        assert runtime.stack is not None
        self.dynamodb = runtime.client("dynamodb")
        outputs = runtime.stack.outputs
        self.tables = {
            "claims": (outputs["ClaimsTableName"], {}),
            # The appointments table also holds the slots it books.
            "appointments": (
                outputs["AppointmentsTableName"],
                {
                    "FilterExpression": "sk = :appointment",
                    "ExpressionAttributeValues": {":appointment": {"S": "APPOINTMENT"}},
                },
            ),
            "prescriptions": (outputs["PrescriptionsTableName"], {}),
            "approvals": (outputs["ApprovalsTableName"], {}),
        }

    def count(self, kind: str) -> int:
        table, query = self.tables[kind]
        total, start = 0, None
        while True:
            page = self.dynamodb.scan(
                TableName=table,
                Select="COUNT",
                ConsistentRead=True,
                **query,
                **({"ExclusiveStartKey": start} if start else {}),
            )
            total += page["Count"]
            start = page.get("LastEvaluatedKey")
            if not start:
                return total

    def ids(self, kind: str) -> set[str]:
        table, _ = self.tables[kind]
        records = scan(self.dynamodb, table)
        if kind == "claims":
            return {record["claimId"] for record in records}
        if kind == "appointments":
            return {record["appointmentId"] for record in records if record["sk"] == "APPOINTMENT"}
        if kind == "prescriptions":
            return {record["prescriptionId"] for record in records}
        return {record["approvalId"] for record in records}


def _cpu_seconds(pid: int | None) -> float | None:
    """User and system CPU time a process has used so far (Linux's /proc; None elsewhere)."""
    stat = Path(f"/proc/{pid or 'self'}/stat")
    if not stat.exists():
        return None
    # The fields after the command name (which may hold spaces) start at the process state.
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _submit_all(
    api: ApiClient, planned: list[PlannedEncounter]
) -> tuple[list[tuple[PlannedEncounter, str]], list[float]]:
    def submit(encounter: PlannedEncounter) -> tuple[PlannedEncounter, str, float]:
        started = time.monotonic()
        answer = api.submit_encounter(encounter.body, encounter.key)
        return encounter, answer["encounterId"], time.monotonic() - started

    with ThreadPoolExecutor(CLIENTS) as clients:
        answered = list(clients.map(submit, planned))
    return [(encounter, eid) for encounter, eid, _ in answered], [latency for *_, latency in answered]


def _wait_for(
    counter: RecordCounter,
    targets: dict[str, int],
    started: float,
    timeout_seconds: float,
    poll_seconds: float,
) -> dict[str, float]:
    """Seconds since `started` at which each kind of record reached its expected count."""
    done_at: dict[str, float] = {kind: 0.0 for kind, target in targets.items() if target == 0}
    deadline = time.monotonic() + timeout_seconds
    while len(done_at) < len(targets):
        for kind, target in targets.items():
            if kind not in done_at and counter.count(kind) >= target:
                done_at[kind] = time.monotonic() - started
        if len(done_at) < len(targets):
            if time.monotonic() > deadline:
                missing = sorted(set(targets) - set(done_at))
                raise TimeoutError(f"not every record within {timeout_seconds:.0f} s: {missing}")
            time.sleep(poll_seconds)
    return done_at


def measure_throughput(
    encounters: int,
    *,
    batching_window_seconds: float | None = None,
    seed: int = SEED,
    timeout_seconds: float = 600.0,
    poll_seconds: float = POLL_SECONDS,
) -> dict[str, Any]:
    """One run on a fresh offline stack: N encounters submitted concurrently, timed until every record."""
    aws_port, api_port = free_ports("127.0.0.1", (0, 0))
    options = RuntimeOptions(
        aws_port=aws_port,
        api_port=api_port,
        stack_name=f"carebus-bench-{uuid.uuid4().hex[:6]}",
    )
    if batching_window_seconds is not None:
        options.batching_window_seconds = batching_window_seconds
    planned = encounter_mix(encounters, seed, datetime.now(UTC).date(), PRACTITIONERS)
    with offline_runtime(options) as runtime:
        assert runtime.stack is not None
        stack = Stack.find(
            Target(runtime.stack.name, runtime.endpoint_url, runtime.stack.region, offline=True)
        )
        username, _ = DEMO_USERS["physician"]
        api = stack.api(sign_in(stack, username, DEMO_PASSWORD), timeout_seconds=120)
        counter = RecordCounter(runtime)
        cpu_before = {"runtime": _cpu_seconds(None), "moto": _cpu_seconds(runtime.moto_pid)}
        started = time.monotonic()
        accepted, latencies = _submit_all(api, planned)
        submitted_seconds = time.monotonic() - started
        expected = Expected.of(accepted)
        kinds = ("claims", "appointments", "prescriptions", "approvals")
        done_at = _wait_for(
            counter,
            {kind: len(getattr(expected, kind)) for kind in kinds},
            started,
            timeout_seconds,
            poll_seconds,
        )
        cpu_after = {"runtime": _cpu_seconds(None), "moto": _cpu_seconds(runtime.moto_pid)}
        for kind in kinds:
            written = counter.ids(kind)
            if written != getattr(expected, kind):
                raise AssertionError(
                    f"{kind}: written {len(written)}, expected {len(getattr(expected, kind))}"
                )
        invocations = dict(sorted(runtime.invocations.items()))
    # The records of the flow itself; an approval is recorded by the workflow a controlled one starts.
    seconds = max(done_at["claims"], done_at["appointments"], done_at["prescriptions"])
    return {
        "encounters": encounters,
        "seconds": round(seconds, 3),
        "encounters_per_second": round(encounters / seconds, 2),
        "seconds_per_encounter": round(seconds / encounters, 4),
        "submitted_seconds": round(submitted_seconds, 3),
        "records_done_at_seconds": {kind: round(value, 3) for kind, value in done_at.items()},
        "records": {kind: len(getattr(expected, kind)) for kind in kinds},
        "api_latency_seconds": {
            "p50": round(statistics.median(latencies), 3),
            "p90": round(nearest_rank(sorted(latencies), 90), 3),
            "max": round(max(latencies), 3),
        },
        # CPU used from the first submit to the last record, by the process that runs the handlers, the API
        # and this client, and by moto's: which of the two cores is the bound.
        "cpu_seconds": {
            name: round(cpu_after[name] - before, 2)
            if before is not None and cpu_after[name] is not None
            else None
            for name, before in cpu_before.items()
        },
        "invocations": invocations,
        "batching_window_seconds": batching_window_seconds,
    }


def _growth(medians: dict[int, float]) -> dict[str, float] | None:
    """The line through the smallest and largest size: a fixed cost and a cost per encounter."""
    if len(medians) < 2:
        return None
    small, large = min(medians), max(medians)
    per_encounter = (medians[large] - medians[small]) / (large - small)
    return {
        "marginal_seconds_per_encounter": round(per_encounter, 4),
        "fixed_seconds": round(medians[small] - per_encounter * small, 3),
        "marginal_encounters_per_second": round(1 / per_encounter, 2) if per_encounter > 0 else float("inf"),
    }


def interleaved(
    sizes: Sequence[int], rounds: int, batching_window_seconds: float | None = None
) -> dict[str, Any]:
    """Every size once per round (A, B, A, B...), so that a change in the machine's load spreads over all
    of them; the median of each size, its spread, and the cost line through them."""
    runs: list[dict[str, Any]] = []
    for round_number in range(1, rounds + 1):
        for size in sizes:
            run = {
                "round": round_number,
                **measure_throughput(size, batching_window_seconds=batching_window_seconds),
            }
            print(json.dumps(run), file=sys.stderr)
            runs.append(run)
    by_size = {size: [run for run in runs if run["encounters"] == size] for size in sizes}
    medians = {size: statistics.median(run["seconds"] for run in sized) for size, sized in by_size.items()}
    return {
        "sizes": [
            {
                "encounters": size,
                "runs": len(sized),
                "median_seconds": round(medians[size], 3),
                "median_encounters_per_second": round(size / medians[size], 2),
                "encounters_per_second": sorted(run["encounters_per_second"] for run in sized),
            }
            for size, sized in by_size.items()
        ],
        "growth": _growth(medians),
        "batching_window_seconds": batching_window_seconds,
        "runs": runs,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m carebus_bench.throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("sizes", nargs="+", type=int, help="numbers of encounters, one run each per round")
    parser.add_argument("--runs", type=int, default=1, help="rounds over the sizes, interleaved (default 1)")
    parser.add_argument(
        "--batching-window",
        type=float,
        default=None,
        metavar="SECONDS",
        help="lab time: every mapping's batching window (default: the template's)",
    )
    args = parser.parse_args(argv)
    # The handlers log to stdout, as on Lambda: the figures alone go there.
    with redirect_stdout(sys.stderr):
        summary = interleaved(args.sizes, args.runs, args.batching_window)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
