"""End-to-end throughput at several sizes, round-robin, and the cost line through them: how the time to
drain N encounters grows with N (carebus_bench.throughput measures one run)."""

import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import redirect_stdout
from typing import Any

from carebus_bench.stats import interleaved, slope_and_intercept, summarize


def measure_growth(
    measure: Callable[[int], Mapping[str, Any]], sizes: Sequence[int], rounds: int
) -> dict[str, Any]:
    runs: dict[int, list[Mapping[str, Any]]] = {size: [] for size in sizes}

    def run_once(size: int) -> Callable[[], float]:
        def one() -> float:
            # The offline stack's handlers print their JSON logs and metrics; the figures are the output.
            with open(os.devnull, "w") as quiet, redirect_stdout(quiet):
                figures = measure(size)
            runs[size].append(figures)
            return float(figures["seconds"])

        return one

    seconds = interleaved({size: run_once(size) for size in sizes}, rounds)
    by_size = []
    for size in sizes:
        spread = summarize(seconds[size])
        rates = summarize([float(run["encounters_per_second"]) for run in runs[size]])
        by_size.append(
            {
                "encounters": size,
                "seconds": spread.to_json(),
                "encounters_per_second": rates.to_json(),
                "runs": list(runs[size]),
            }
        )
    medians = [(size, summarize(seconds[size]).median) for size in sizes]
    per_encounter, fixed = slope_and_intercept(medians)
    return {
        "rounds": rounds,
        "sizes": by_size,
        "marginal_seconds_per_encounter": per_encounter,
        "fixed_seconds": fixed,
        "largest_size_encounters_per_second": by_size[-1]["encounters_per_second"]["median"],
    }


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    lines = [f"offline end-to-end throughput, {result['rounds']} interleaved round(s)"]
    for row in result["sizes"]:
        rate = row["encounters_per_second"]
        lines.append(
            f"  {row['encounters']:>5} encounters: {rate['median']:6.2f} encounters/s"
            f" [{rate['low']:.2f}-{rate['high']:.2f}], {row['seconds']['median']:.1f} s"
        )
    lines.append(
        f"  cost line: {result['marginal_seconds_per_encounter']:.3f} s per encounter"
        f" + {result['fixed_seconds']:.2f} s fixed"
    )
    return lines
