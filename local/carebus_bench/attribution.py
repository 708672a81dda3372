"""Where a function's cold init goes beyond the SDK floor: the import-time self times (`python -X importtime`)
of every module its import loads that the SDK floor does not, grouped by where the module comes from.

Self times measured under -X importtime add a little of their own, and a module's self time is all the work
its body does (a model class built, a client created), so the groups answer "which packages", not "how
many ms exactly": the timed figures are cold_init's.
"""

import json
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import median
from typing import Any, Final

from carebus_bench import cold_init
from carebus_bench.cold_init import PROBE, ColdInitPlan

# The layer's packages, by what the function uses them for; what is none of these is the standard library.
GROUPS: Final[Mapping[str, tuple[str, ...]]] = {
    "Powertools": ("aws_lambda_powertools", "jmespath"),
    "pydantic": ("pydantic", "pydantic_core", "annotated_types", "typing_inspection", "typing_extensions"),
    "X-Ray SDK": ("aws_xray_sdk", "wrapt"),
    "carebus": ("carebus",),
}
# What no import reports: the handler module's own body (its clients, its Powertools objects), less the
# floor's clients; the timed total minus every reported self time, the floor's rest taken off.
HANDLER_BODY: Final = "handler body"
STANDARD_LIBRARY: Final = "standard library"
_LINE = re.compile(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)")
_PROBE_SECONDS: Final = 120


def self_times(stderr: str) -> dict[str, int]:
    """Each module's self time in microseconds, from -X importtime's report."""
    return {match.group(2): int(match.group(1)) for match in map(_LINE.match, stderr.splitlines()) if match}


def group_of(module: str) -> str:
    package = module.split(".", 1)[0]
    for group, packages in GROUPS.items():
        if package in packages:
            return group
    return STANDARD_LIBRARY


@dataclass(frozen=True)
class Run:
    """One probe under -X importtime: each module's self time (us), and the ms no import reported."""

    self_times: dict[str, int]
    unreported_ms: float


def beyond_floor(function: Run, floor: Run) -> dict[str, float]:
    """Milliseconds by group for the modules the function loaded and the floor did not, and the rest."""
    groups: dict[str, float] = defaultdict(float)
    for module, microseconds in function.self_times.items():
        if module not in floor.self_times:
            groups[group_of(module)] += microseconds / 1000
    groups[HANDLER_BODY] = max(0.0, function.unreported_ms - floor.unreported_ms)
    return dict(groups)


def _importtime(plan: ColdInitPlan, reference: str) -> Run:
    answer = subprocess.run(  # noqa: S603 - this interpreter, the bench's own probe
        [
            sys.executable,
            "-I",
            "-S",
            "-B",
            "-X",
            "importtime",
            str(PROBE),
            cold_init.spec_json(plan, reference),
        ],
        check=True,
        capture_output=True,
        text=True,
        env=plan.environment,
        timeout=_PROBE_SECONDS,
    )
    times = self_times(answer.stderr)
    total_ms = 1000 * json.loads(answer.stdout.strip().splitlines()[-1])["seconds"]
    return Run(times, total_ms - sum(times.values()) / 1000)


def attribute(plan: ColdInitPlan, runs: int = 3) -> dict[str, Any]:
    """The median over `runs` of each group's ms beyond the SDK floor (the floor's own run beside each)."""
    samples: list[dict[str, float]] = []
    for _ in range(runs):
        floor = _importtime(plan, "sdk floor")
        samples.append(beyond_floor(_importtime(plan, "function"), floor))
    groups = sorted({group for sample in samples for group in sample})
    return {
        "runs": runs,
        "ms": {group: round(median(s.get(group, 0.0) for s in samples), 1) for group in groups},
    }
