"""The capacity model's figures that come from template.yaml and from the measured call counts: what the
template sets at each hop, and the request rates 1,000 encounters per second would put on each service.
The quotas they are compared with, and their sources, are in the prose of docs/performance.md."""

from collections.abc import Mapping
from typing import Any, Final

from carebus_bench import template_facts

SUSTAINED_ENCOUNTERS_PER_SECOND: Final = 1000


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    from carebus_bench.report import table

    return table(header, rows)


def template_rows() -> list[tuple[Any, ...]]:
    """Each consumer mapping: batch, window, MaximumConcurrency, and the longest a batch may take for the
    mapping to keep up with 1,000 records per second at that concurrency (Little's law)."""
    reserved = template_facts.reserved_concurrency()
    rows = []
    for mapping in template_facts.queue_mappings():
        ceiling = mapping.maximum_concurrency
        budget_ms = (
            f"{1000 * ceiling * mapping.batch_size / SUSTAINED_ENCOUNTERS_PER_SECOND:.0f}" if ceiling else "-"
        )
        rows.append(
            (
                mapping.function,
                mapping.queue,
                mapping.batch_size,
                mapping.batching_window_seconds,
                ceiling if ceiling is not None else "none",
                reserved.get(mapping.function) or "none (account pool)",
                budget_ms,
            )
        )
    return rows


def request_rates(results: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Requests per second each function would send each service at 1,000 encounters per second, from
    the measured calls per encounter (intake) and per record (consumers)."""
    calls = results.get("calls")
    if not calls or "missing" in calls:
        return []
    per_function = {"IntakeFunction": calls["intake"], **calls["consumers"]}
    rows = []
    for function, row in per_function.items():
        for operation, per_unit in row["by_operation"].items():
            rows.append((function, operation, f"{per_unit * SUSTAINED_ENCOUNTERS_PER_SECOND:,.0f}"))
    return rows


def findings() -> list[str]:
    """What the template's own limits allow at 1,000 encounters per second, one sentence each."""
    sentences = []
    for throttle in template_facts.api_stage_throttles():
        share = 100 * throttle["rate_limit"] / SUSTAINED_ENCOUNTERS_PER_SECOND
        sentences.append(
            f"{throttle['api']}'s stage throttle admits {throttle['rate_limit']} rps (burst"
            f" {throttle['burst_limit']}): {share:.1f} % of {SUSTAINED_ENCOUNTERS_PER_SECOND:,} encounters/s."
        )
    for mapping in template_facts.queue_mappings():
        if mapping.maximum_concurrency is None:
            continue
        records_in_flight = mapping.maximum_concurrency * mapping.batch_size
        budget_ms = 1000 * records_in_flight / SUSTAINED_ENCOUNTERS_PER_SECOND
        sentences.append(
            f"{mapping.function} holds at most {records_in_flight} records in flight"
            f" (MaximumConcurrency {mapping.maximum_concurrency} x BatchSize {mapping.batch_size}): it keeps"
            f" up with {SUSTAINED_ENCOUNTERS_PER_SECOND:,} records/s only if a batch takes at most"
            f" {budget_ms:.0f} ms."
        )
    return sentences


def render(results: Mapping[str, Any]) -> list[str]:
    lines = ["### Capacity figures from template.yaml", ""]
    lines += [f"- {sentence}" for sentence in findings()] + [""]
    throttles = template_facts.api_stage_throttles()
    lines += _table(
        ("API", "stage rate limit (rps)", "stage burst"),
        [(t["api"], t["rate_limit"], t["burst_limit"]) for t in throttles],
    )
    lines += [
        "",
        *_table(
            (
                "consumer",
                "queue",
                "BatchSize",
                "MaximumBatchingWindowInSeconds",
                "MaximumConcurrency",
                "ReservedConcurrentExecutions",
                f"longest batch (ms) that keeps up with {SUSTAINED_ENCOUNTERS_PER_SECOND:,} records/s",
            ),
            template_rows(),
        ),
        "",
    ]
    rates = request_rates(results)
    if rates:
        lines += [
            f"### Requests per second at {SUSTAINED_ENCOUNTERS_PER_SECOND:,} encounters/s (measured calls"
            " x rate)",
            "",
            *_table(("function", "operation", "requests/s"), rates),
            "",
        ]
    return lines
