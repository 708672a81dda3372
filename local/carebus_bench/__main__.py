"""`python -m carebus_bench [PART ...]`: what `make bench` runs (every part, then the report), or some
parts alone for a quick look while iterating (cold-init, calls, edge, throughput, test-phases); only a
full run rewrites docs/performance.md and docs/performance.json."""

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

# Each part's module, imported only when the part runs: a quick `cold-init` loads no moto.
PARTS = {
    "cold-init": "carebus_bench.cold_init",
    # Before the calls: the edge is timed in this process, best before moto has filled its heap.
    "edge": "carebus_bench.edge",
    "calls": "carebus_bench.calls",
    "throughput": "carebus_bench.throughput",
    "test-phases": "carebus_bench.phases",
}


def _measure(part: str, module: Any, arguments: argparse.Namespace) -> dict[str, Any]:
    if part == "cold-init":
        from carebus_bench.attribution import attribute

        return module.measure_cold_init(arguments.cold_init_runs, arguments.functions, attribute)
    if part == "calls":
        # A batch as full as the mapping allows, and a batch of one (a quiet hour): the read and the put
        # are shared by a batch's records, so that is where a record costs most.
        return {**module.measure_calls(arguments.batch_size), "batch_of_one": module.measure_calls(1)}
    if part == "edge":
        return module.measure_edge(arguments.edge_runs, arguments.edge_batch_sizes)
    if part == "throughput":
        from carebus_bench.growth import measure_growth

        return measure_growth(
            module.measure_throughput, arguments.throughput_sizes, arguments.throughput_runs
        )
    return module.measure_phases(arguments.phase_runs, arguments.phases)


def _console_lines(part: str, module: Any) -> Callable[[dict[str, Any]], list[str]]:
    if part == "throughput":
        from carebus_bench.growth import summary_lines

        return summary_lines
    return getattr(module, "summary_lines", lambda figures: [json.dumps(figures)])


def _run(part: str, arguments: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """One part's figures and its console lines (a part whose module is missing says so)."""
    try:
        module = importlib.import_module(PARTS[part])
    except ImportError as missing:
        result = {"missing": f"{PARTS[part]} cannot be imported: {missing}"}
        return result, [result["missing"]]
    result = _measure(part, module, arguments)
    return result, _console_lines(part, module)(result)


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m carebus_bench", description=__doc__)
    parser.add_argument("parts", nargs="*", metavar="PART", help=f"any of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--skip-test-phases", action="store_true", help="leave out `make test`'s phases")
    parser.add_argument("--cold-init-runs", type=int, default=10, help="interleaved rounds (default 10)")
    parser.add_argument("--functions", nargs="*", default=[], help="cold init of these logical ids only")
    parser.add_argument("--batch-size", type=int, default=10, help="records per consumer batch (default 10)")
    parser.add_argument("--edge-runs", type=int, default=15, help="interleaved edge rounds (default 15)")
    parser.add_argument("--edge-batch-sizes", type=int, nargs=2, default=[1, 10], metavar=("SMALL", "LARGE"))
    parser.add_argument(
        "--throughput-sizes", type=int, nargs=2, default=[20, 100], metavar=("SMALL", "LARGE")
    )
    parser.add_argument("--throughput-runs", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--phase-runs", type=int, default=1, help="runs of each test phase (default 1)")
    parser.add_argument("--phases", nargs="*", default=[], help="only phases whose name contains these")
    arguments = parser.parse_args(argv)
    unknown = sorted(set(arguments.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part {', '.join(unknown)}: choose from {', '.join(PARTS)}")
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    skipped = ["test-phases"] if arguments.skip_test_phases else []
    chosen = arguments.parts or [part for part in PARTS if part not in skipped]
    started_run = time.monotonic()
    results: dict[str, Any] = {}
    for part in chosen:
        started = time.monotonic()
        print(f"bench: {part} ...", flush=True)
        results[part], lines = _run(part, arguments)
        results[part]["bench_seconds"] = round(time.monotonic() - started, 1)
        for line in lines:
            print(line, flush=True)
    # Only a full run (every part, or every part but the test phases) rewrites the report: a quick look at
    # some parts never leaves a table mixing two runs.
    if not arguments.parts:
        from carebus_bench import report

        for path in report.write(results, skipped, time.monotonic() - started_run):
            print(f"bench: wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
