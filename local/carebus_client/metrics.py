"""The metrics a stack's functions emitted, per metric: its samples, their sum and, for a duration, its
percentiles.

The functions emit Powertools Metrics as CloudWatch embedded metric format (EMF): JSON lines on stdout
that CloudWatch Logs turns into metrics. Offline, those lines are in the handler log the offline stack
names in its HandlerLogFile output, and every figure is computed here, exactly, from every sample.
Deployed, CloudWatch holds the metrics: their names come from ListMetrics for the namespaces the stack's
functions declare, their statistics from GetMetricData over the window, percentiles as CloudWatch
computes them. Nothing here names a metric: whatever the handlers emit is counted.
"""

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from itertools import batched
from pathlib import Path
from typing import Any, Final

from carebus_client.errors import StackUnreachableError, UsageError
from carebus_client.logs import HANDLER_LOG_OUTPUT
from carebus_client.stacks import Stack, aws_errors

# The one unit whose samples are durations: the figures then include their distribution.
DURATION_UNIT: Final = "Milliseconds"
PERCENTILES: Final = (50, 90, 99)
# Where a function's Powertools Metrics publish, in each function's environment.
NAMESPACE_VARIABLE: Final = "POWERTOOLS_METRICS_NAMESPACE"
# GetMetricData answers at most 500 queries a call; CloudWatch keeps data at one-minute resolution.
_QUERIES_PER_CALL: Final = 500
_PERIOD_STEP_SECONDS: Final = 60


@dataclass(frozen=True, order=True)
class MetricKey:
    """One metric as CloudWatch tells metrics apart: its namespace, its name and its dimensions."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]  # (name, value), in the order the dimension set gives them


@dataclass(frozen=True)
class MetricSample:
    key: MetricKey
    unit: str | None
    at: datetime
    value: float


@dataclass(frozen=True)
class MetricFigures:
    """What a metric's samples add up to; the distribution for a duration only."""

    key: MetricKey
    unit: str | None
    samples: int
    total: float
    percentiles: Mapping[int, float | None] | None = None  # by percentile (50, 90, 99)
    maximum: float | None = None

    @property
    def is_duration(self) -> bool:
        return self.unit == DURATION_UNIT


@dataclass(frozen=True)
class MetricsReport:
    """A stack's figures over a window, and where they came from."""

    source: str  # the handler log's path, or "CloudWatch"
    offline: bool
    since: datetime
    until: datetime
    namespaces: tuple[str, ...]  # those read (CloudWatch), or those found (the handler log)
    figures: tuple[MetricFigures, ...]


@dataclass(frozen=True)
class MetricSelection:
    """Which metrics to report: sample times in [since, until], names matching a pattern (shell-style:
    `Prescriptions*`), in the given namespaces; an empty tuple selects every one."""

    since: datetime
    until: datetime
    names: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()

    def selects_name(self, name: str) -> bool:
        return not self.names or any(fnmatchcase(name, pattern) for pattern in self.names)

    def selects(self, sample: MetricSample) -> bool:
        return (
            self.since <= sample.at <= self.until
            and self.selects_name(sample.key.name)
            and (not self.namespaces or sample.key.namespace in self.namespaces)
        )


# ----- embedded metric format ----------------------------------------------------------------------------
def emf_samples(lines: Iterable[str]) -> Iterator[MetricSample]:
    """Every sample of the EMF records in the lines: one per value (a metric's value may be an array of up
    to 100) and per dimension set of its directive. Lines that are no EMF (log lines, text) are skipped."""
    decoder = json.JSONDecoder()
    for line in lines:
        for record in _json_objects(line, decoder):
            yield from _record_samples(record)


def _json_objects(line: str, decoder: json.JSONDecoder) -> Iterator[Any]:
    """The JSON objects a line holds. Usually one; but print() writes a record and its newline in two
    writes, so two threads' records may share a line."""
    position = 0
    while (position := _skip_spaces(line, position)) < len(line) and line[position] == "{":
        try:
            record, position = decoder.raw_decode(line, position)
        except ValueError:
            return
        yield record


def _skip_spaces(line: str, position: int) -> int:
    while position < len(line) and line[position].isspace():
        position += 1
    return position


def _record_samples(record: Any) -> Iterator[MetricSample]:
    metadata = record.get("_aws") if isinstance(record, dict) else None
    if not isinstance(metadata, dict) or not _is_number(metadata.get("Timestamp")):
        return  # not EMF: CloudWatch requires the timestamp (milliseconds since the epoch)
    at = datetime.fromtimestamp(metadata["Timestamp"] / 1000, UTC)
    for directive in _list(metadata.get("CloudWatchMetrics")):
        if not isinstance(directive, dict) or not isinstance(directive.get("Namespace"), str):
            continue
        # No dimension set at all publishes the metric without dimensions.
        for dimension_set in _list(directive.get("Dimensions")) or [[]]:
            dimensions = _dimension_values(record, dimension_set)
            if dimensions is None:
                continue  # a dimension without a value: CloudWatch publishes nothing for this set
            for definition in _list(directive.get("Metrics")):
                if not isinstance(definition, dict) or not isinstance(definition.get("Name"), str):
                    continue
                key = MetricKey(directive["Namespace"], definition["Name"], dimensions)
                unit = definition.get("Unit") if isinstance(definition.get("Unit"), str) else None
                for value in _values(record.get(definition["Name"])):
                    yield MetricSample(key, unit, at, value)


def _dimension_values(record: dict[str, Any], dimension_set: Any) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(dimension_set, list):
        return None
    values = [(name, record.get(name)) for name in dimension_set]
    if not all(isinstance(name, str) and isinstance(value, str) for name, value in values):
        return None
    return tuple(values)


def _values(member: Any) -> list[float]:
    values = member if isinstance(member, list) else [member]
    return [float(value) for value in values if _is_number(value)]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# ----- figures from samples ------------------------------------------------------------------------------
def nearest_rank(ordered: Sequence[float], percentile: int) -> float:
    """The smallest sample that at least `percentile` per cent of the samples do not exceed (the
    nearest-rank percentile: always one of the samples, never an interpolation)."""
    if not ordered:
        raise ValueError("no samples")
    rank = -(-percentile * len(ordered) // 100)  # ceil(percentile/100 * n), in integers
    return ordered[max(rank, 1) - 1]


def aggregate(samples: Iterable[MetricSample]) -> list[MetricFigures]:
    """Each metric's figures (a metric emitted under two units counts as two), in key order."""
    grouped: defaultdict[tuple[MetricKey, str | None], list[float]] = defaultdict(list)
    for sample in samples:
        grouped[sample.key, sample.unit].append(sample.value)
    figures = []
    for (key, unit), values in grouped.items():
        if unit == DURATION_UNIT:
            ordered = sorted(values)
            figures.append(
                MetricFigures(
                    key,
                    unit,
                    len(values),
                    sum(values),
                    {percentile: nearest_rank(ordered, percentile) for percentile in PERCENTILES},
                    ordered[-1],
                )
            )
        else:
            figures.append(MetricFigures(key, unit, len(values), sum(values)))
    return sorted_figures(figures)


def handler_log_metrics(path: Path, selection: MetricSelection) -> MetricsReport:
    """The figures of the EMF lines in an offline stack's handler log, for the selected samples."""
    try:
        with path.open(errors="replace") as lines:
            samples = [sample for sample in emf_samples(lines) if selection.selects(sample)]
    except FileNotFoundError:
        raise StackUnreachableError(
            f"the stack's handler log {path} is not on this machine: read it where the stack runs"
        ) from None
    figures = aggregate(samples)
    namespaces = tuple(sorted({figure.key.namespace for figure in figures}))
    return MetricsReport(str(path), True, selection.since, selection.until, namespaces, tuple(figures))


# ----- figures from CloudWatch ---------------------------------------------------------------------------
# What is asked of each metric: the statistic, and the unit it is asked in (a duration's distribution is
# asked in milliseconds, so that a count answers nothing there: GetMetricData does not say a metric's unit).
_STATISTICS: Final = (
    ("samples", "SampleCount", None),
    ("total", "Sum", None),
    *((f"p{percentile}", f"p{percentile}", DURATION_UNIT) for percentile in PERCENTILES),
    ("maximum", "Maximum", DURATION_UNIT),
)


def function_namespaces(stack: Stack) -> tuple[str, ...]:
    """The metric namespaces the deployed stack's functions declare (their Powertools environment), read
    from the stack's processed template."""
    with aws_errors(stack.target):
        body = stack.client("cloudformation").get_template(StackName=stack.name, TemplateStage="Processed")[
            "TemplateBody"
        ]
    template = body if isinstance(body, dict) else json.loads(body)
    namespaces = {
        variables.get(NAMESPACE_VARIABLE)
        for resource in template.get("Resources", {}).values()
        if resource.get("Type") == "AWS::Lambda::Function"
        for variables in [resource.get("Properties", {}).get("Environment", {}).get("Variables", {})]
    }
    return tuple(sorted(namespace for namespace in namespaces if isinstance(namespace, str)))


def metric_period_seconds(since: datetime, until: datetime) -> int:
    """One period over the whole window (a whole number of minutes), so that each statistic has one value."""
    seconds = max((until - since).total_seconds(), 1)
    return int(-(-seconds // _PERIOD_STEP_SECONDS) * _PERIOD_STEP_SECONDS)


def cloudwatch_metrics(stack: Stack, selection: MetricSelection) -> MetricsReport:
    """The figures CloudWatch holds for the selected metrics of the namespaces selected (by default
    those the stack's functions declare); metrics without a sample in the window are left out."""
    namespaces = selection.namespaces or function_namespaces(stack)
    if not namespaces:
        raise UsageError(
            f"no function of {stack.name} declares {NAMESPACE_VARIABLE}: "
            "pass --namespace to say which one to read"
        )
    cloudwatch = stack.client("cloudwatch")
    with aws_errors(stack.target):
        metrics = [
            metric
            for namespace in namespaces
            for page in cloudwatch.get_paginator("list_metrics").paginate(Namespace=namespace)
            for metric in page["Metrics"]
            if selection.selects_name(metric["MetricName"])
        ]
        figures = [
            figure
            for chunk in batched(metrics, _QUERIES_PER_CALL // len(_STATISTICS), strict=False)
            for figure in _chunk_figures(cloudwatch, chunk, selection)
            if figure.samples
        ]
    return MetricsReport(
        "CloudWatch",
        False,
        selection.since,
        selection.until,
        tuple(namespaces),
        tuple(sorted_figures(figures)),
    )


def sorted_figures(figures: Iterable[MetricFigures]) -> list[MetricFigures]:
    return sorted(figures, key=lambda figure: (figure.key, figure.unit or ""))


def metric_data_queries(metrics: Sequence[Mapping[str, Any]], period: int) -> list[dict[str, Any]]:
    """GetMetricData's queries for the metrics (as ListMetrics gives them): each statistic of each one,
    under the id m<index>_<statistic>."""
    return [
        {
            "Id": f"m{index}_{label}",
            "MetricStat": {
                "Metric": {
                    "Namespace": metric["Namespace"],
                    "MetricName": metric["MetricName"],
                    "Dimensions": metric.get("Dimensions", []),
                },
                "Period": period,
                "Stat": statistic,
                **({"Unit": unit} if unit else {}),
            },
            "ReturnData": True,
        }
        for index, metric in enumerate(metrics)
        for label, statistic, unit in _STATISTICS
    ]


def _chunk_figures(
    cloudwatch: Any, metrics: Sequence[Mapping[str, Any]], selection: MetricSelection
) -> list[MetricFigures]:
    values: defaultdict[str, list[float]] = defaultdict(list)
    pages = cloudwatch.get_paginator("get_metric_data").paginate(
        MetricDataQueries=metric_data_queries(
            metrics, metric_period_seconds(selection.since, selection.until)
        ),
        StartTime=selection.since,
        EndTime=selection.until,
        ScanBy="TimestampAscending",
    )
    for page in pages:
        for result in page["MetricDataResults"]:
            values[result["Id"]].extend(result.get("Values", []))
    return [figures_from_statistics(metric, index, values) for index, metric in enumerate(metrics)]


def figures_from_statistics(
    metric: Mapping[str, Any], index: int, values: Mapping[str, Sequence[float]]
) -> MetricFigures:
    """One metric's figures from GetMetricData's values by query id. A statistic with more than one value
    (the window spanned more than one period) keeps the counts, the sum and the maximum exact; its
    percentiles cannot be combined and are left out."""

    def of(label: str) -> Sequence[float]:
        return values.get(f"m{index}_{label}", ())

    key = MetricKey(
        metric["Namespace"],
        metric["MetricName"],
        tuple((dimension["Name"], dimension["Value"]) for dimension in metric.get("Dimensions", [])),
    )
    samples, total = int(sum(of("samples"))), float(sum(of("total")))
    maximum = of("maximum")
    if not maximum:
        return MetricFigures(key, None, samples, total)
    percentiles = {
        percentile: found[0] if len(found := of(f"p{percentile}")) == 1 else None
        for percentile in PERCENTILES
    }
    return MetricFigures(key, DURATION_UNIT, samples, total, percentiles, max(maximum))


def stack_metrics(stack: Stack, selection: MetricSelection) -> MetricsReport:
    """The offline stack's figures from its handler log; a deployed stack's from CloudWatch."""
    handler_log = stack.outputs.get(HANDLER_LOG_OUTPUT)
    if handler_log:
        return handler_log_metrics(Path(handler_log), selection)
    return cloudwatch_metrics(stack, selection)
