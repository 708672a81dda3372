"""The budget of issue 11 and its verdicts, computed from a run's figures (never typed in)."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

MET: Final = "met"
NOT_MET: Final = "not met"
NOT_MEASURED: Final = "not measured"
COLD_INIT_RATIO: Final = 1.35
CALLS_PER_RECORD: Final = {"BillingFunction": 4, "SchedulingFunction": 5, "PrescriptionsFunction": 5}
EDGE_US_ABOVE_JSON: Final = 3.0
ENCOUNTERS_PER_SECOND: Final = 10.0
ENCOUNTERS_PER_SECOND_GOAL: Final = 20.0
MAKE_TEST_SECONDS: Final = 180.0


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    verdict: str


def at_most(value: float | None, limit: float) -> str:
    if value is None:
        return NOT_MEASURED
    return MET if value <= limit else NOT_MET


def at_least(value: float | None, limit: float) -> str:
    if value is None:
        return NOT_MEASURED
    return MET if value >= limit else NOT_MET


def _measured(results: Mapping[str, Any], part: str) -> Mapping[str, Any] | None:
    result = results.get(part)
    return None if result is None or "missing" in result else result


def cold_init_verdicts(results: Mapping[str, Any]) -> list[Verdict]:
    result = _measured(results, "cold-init")
    if result is None:
        return [Verdict(f"cold init <= {COLD_INIT_RATIO}x the SDK floor, every function", "-", NOT_MEASURED)]
    return [
        Verdict(
            f"cold init of {row['function']} <= {COLD_INIT_RATIO}x the SDK floor",
            f"{row['ratio_to_sdk_floor']:.2f}x ({row['init_ms']['median']:.0f} ms;"
            f" CPU time {row['cpu_ratio_to_sdk_floor']:.2f}x)",
            at_most(row["ratio_to_sdk_floor"], COLD_INIT_RATIO),
        )
        for row in result["functions"]
    ]


def calls_verdicts(results: Mapping[str, Any]) -> list[Verdict]:
    result = _measured(results, "calls")
    consumers = result["consumers"] if result else {}
    verdicts = []
    for function, limit in CALLS_PER_RECORD.items():
        row = consumers.get(function)
        total = row["total"] if row else None
        single = ((result or {}).get("batch_of_one") or {}).get("consumers", {}).get(function)
        measured = "-" if total is None else f"{total:.2f} in a batch of {result['batch_size']}"
        if single:
            measured += f" ({single['total']:.2f} in a batch of one)"
        verdicts.append(
            Verdict(f"AWS calls per {function} record <= {limit}", measured, at_most(total, limit))
        )
    return verdicts


def edge_verdict(results: Mapping[str, Any]) -> Verdict:
    result = _measured(results, "edge")
    above = result["edge_above_json_loads_us"] if result else None
    return Verdict(
        f"consumer edge <= {EDGE_US_ABOVE_JSON:g} us per record above json.loads",
        "-" if above is None else f"{above:.2f} us",
        at_most(above, EDGE_US_ABOVE_JSON),
    )


def throughput_verdict(results: Mapping[str, Any]) -> Verdict:
    result = _measured(results, "throughput")
    rate = result["largest_size_encounters_per_second"] if result else None
    target = (
        f">= {ENCOUNTERS_PER_SECOND:g} encounters/s end to end offline (goal {ENCOUNTERS_PER_SECOND_GOAL:g})"
    )
    if rate is None:
        return Verdict(target, "-", NOT_MEASURED)
    largest = result["sizes"][-1]["encounters"]
    verdict = at_least(rate, ENCOUNTERS_PER_SECOND)
    if verdict == MET and rate >= ENCOUNTERS_PER_SECOND_GOAL:
        verdict = f"{MET} (goal too)"
    return Verdict(target, f"{rate:.2f} at {largest} encounters", verdict)


def test_phases_verdict(results: Mapping[str, Any]) -> Verdict:
    result = _measured(results, "test-phases")
    complete = result is not None and not result["selected"]
    whole = result.get("make_test") if complete else None
    total = whole["seconds"] if whole else (result["total_seconds"] if complete else None)
    failed = [row["phase"] for row in result["phases"] if not row["passed"]] if complete else []
    if whole and not whole["passed"]:
        failed.append("make test")
    verdict = at_most(total, MAKE_TEST_SECONDS)
    if failed:
        verdict = f"{NOT_MET} (failed: {', '.join(failed)})"
    measured = "-" if total is None else f"{total:.0f} s"
    if whole and complete:
        measured += f" (its phases one after the other: {result['total_seconds']:.0f} s)"
    return Verdict(f"make test <= {MAKE_TEST_SECONDS:g} s", measured, verdict)


def verdicts(results: Mapping[str, Any]) -> list[Verdict]:
    return [
        *cold_init_verdicts(results),
        *calls_verdicts(results),
        edge_verdict(results),
        throughput_verdict(results),
        test_phases_verdict(results),
    ]
