"""`carebus metrics`: the metrics a stack's functions emitted, one row a metric (namespace, name,
dimensions) with its samples, their sum and, for a duration, its p50, p90, p99 and maximum.

Offline the figures are computed from the handler log; with --stack on AWS they are CloudWatch's. The
lines under the table say which, since the two are not the same computation.
"""

import argparse
from datetime import UTC, datetime
from typing import Any, Final

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from carebus_cli.lab_commands import (
    CommandFactory,
    add_window_options,
    moment_text,
    target_of,
    window_start,
)
from carebus_cli.render import text
from carebus_cli.waiting import add_wait_options, show_when_ready
from carebus_client.errors import ExitCode
from carebus_client.metrics import (
    PERCENTILES,
    MetricFigures,
    MetricSelection,
    MetricsReport,
    metric_period_seconds,
    stack_metrics,
)
from carebus_client.stacks import Stack

DEFAULT_METRICS_MINUTES: Final = 60
# What a cell shows for a figure that does not apply (a count's percentiles) or is not known.
_NO_FIGURE: Final = "-"


def run_metrics(args: argparse.Namespace, console: Console) -> int:
    stack = Stack.find(target_of(args))
    reports: list[MetricsReport] = []  # the one shown is the last

    def view() -> RenderableType:
        until = datetime.now(UTC)
        since = window_start(args, until, DEFAULT_METRICS_MINUTES)
        selection = MetricSelection(since, until, tuple(args.name), tuple(args.namespace))
        reports.append(report := stack_metrics(stack, selection))
        if not report.figures:
            window = f"from {moment_text(since)} to {moment_text(until)}"
            return Text(f"No metric {_named(args.name)}in {report.source} {window}")
        return Group(metrics_table(stack.name, report), Text(source_line(report)))

    shown = show_when_ready(args, console, view)
    return shown if reports[-1].figures else ExitCode.REFUSED


def _named(patterns: list[str]) -> str:
    return f"named {' or '.join(patterns)} " if patterns else ""


def metrics_table(stack_name: str, report: MetricsReport) -> Table:
    table = Table(
        title=f"Metrics of {stack_name} from {moment_text(report.since)} to {moment_text(report.until)}",
        title_justify="left",
    )
    for heading in ("namespace", "metric", "dimensions", "unit"):
        table.add_column(heading, no_wrap=True)
    for heading in ("samples", "sum", *(f"p{percentile}" for percentile in PERCENTILES), "max"):
        table.add_column(heading, justify="right", no_wrap=True)
    for figures in report.figures:
        table.add_row(
            text(figures.key.namespace),
            text(figures.key.name),
            text(" ".join(f"{name}={value}" for name, value in figures.key.dimensions)),
            text(figures.unit or _NO_FIGURE),
            str(figures.samples),
            number_text(figures.total),
            *_distribution(figures),
        )
    return table


def _distribution(figures: MetricFigures) -> list[str]:
    if figures.percentiles is None:
        return [_NO_FIGURE] * (len(PERCENTILES) + 1)
    return [number_text(figures.percentiles[percentile]) for percentile in PERCENTILES] + [
        number_text(figures.maximum)
    ]


def number_text(value: float | None) -> str:
    """A whole number as one, anything else to two decimals; a figure CloudWatch could not give as -."""
    if value is None:
        return _NO_FIGURE
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def source_line(report: MetricsReport) -> str:
    """Where the figures come from, and how they differ from the other source's: two lines."""
    if report.offline:
        return (
            f"Source: every EMF sample in the handler log {report.source}\n"
            "Offline each figure is exact (percentiles by nearest rank); on AWS (--stack) CloudWatch "
            "computes them from the metrics it extracts from the same lines."
        )
    period = metric_period_seconds(report.since, report.until)
    return (
        f"Source: CloudWatch, namespace {', '.join(report.namespaces)}, one {period} s period "
        "(ListMetrics, GetMetricData; durations asked in Milliseconds).\n"
        "It counts every stack of this account and region that publishes there; offline the same command "
        "computes each figure exactly from the handler log."
    )


def add_metrics_command(commands: Any, command: CommandFactory) -> None:
    metrics = command(
        commands,
        "metrics",
        run_metrics,
        "the metrics the functions emitted (EMF): samples, sum, and p50/p90/p99/max of durations",
    )
    add_window_options(metrics, DEFAULT_METRICS_MINUTES)
    metrics.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only metrics whose name matches (shell-style: 'Prescriptions*'); may be repeated",
    )
    metrics.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NAME",
        help="only this namespace; on AWS the one to read (default: those the stack's functions declare)",
    )
    add_wait_options(metrics, "the table")
