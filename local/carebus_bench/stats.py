"""Medians with their spread, ratios of medians, and the round-robin order that makes them comparable."""

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Summary:
    """A sample's median and spread (min, max and the interquartile range), in the sample's unit."""

    median: float
    low: float
    high: float
    q1: float
    q3: float
    runs: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def scaled(self, factor: float) -> "Summary":
        return Summary(
            self.median * factor,
            self.low * factor,
            self.high * factor,
            self.q1 * factor,
            self.q3 * factor,
            self.runs,
        )


def summarize(samples: Sequence[float]) -> Summary:
    if not samples:
        raise ValueError("no samples to summarize")
    ordered = sorted(samples)
    if len(ordered) == 1:
        q1 = q3 = ordered[0]
    else:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return Summary(statistics.median(ordered), ordered[0], ordered[-1], q1, q3, len(ordered))


def ratio(numerator: Summary, denominator: Summary) -> float:
    """Ratio of medians: what the budget compares (a ratio of single runs would carry both runs' noise)."""
    return numerator.median / denominator.median


def interleaved(measurements: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each measurement once per round, in the same order every round (A, B, C, A, B, C, ...): whatever
    load the machine carries lands on every measurement alike."""
    if rounds < 1:
        raise ValueError("at least one round")
    samples: dict[str, list[float]] = {label: [] for label in measurements}
    for _ in range(rounds):
        for label, measure in measurements.items():
            samples[label].append(measure())
    return samples


def slope_and_intercept(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The least-squares line through (x, y) points: cost per unit and fixed cost."""
    if len({x for x, _ in points}) < 2:
        raise ValueError("a line needs points at two different x")
    slope, intercept = statistics.linear_regression([x for x, _ in points], [y for _, y in points])
    return slope, intercept
