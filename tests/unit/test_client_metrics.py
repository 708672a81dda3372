"""`carebus metrics`: the functions' EMF lines read back into per-metric figures (offline), CloudWatch's
statistics assembled into the same figures (deployed), and how the command prints them."""

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from rich.console import Console

from carebus_cli.metrics_command import metrics_table, number_text, source_line
from carebus_client.errors import CarebusError, ExitCode
from carebus_client.logs import HANDLER_LOG_OUTPUT
from carebus_client.metrics import (
    MetricFigures,
    MetricKey,
    MetricSample,
    MetricSelection,
    MetricsReport,
    aggregate,
    emf_samples,
    figures_from_statistics,
    metric_data_queries,
    metric_period_seconds,
    nearest_rank,
    stack_metrics,
)
from carebus_client.stacks import Stack, Target

AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
WINDOW = MetricSelection(AT - timedelta(hours=1), AT + timedelta(hours=1))
BILLING = (("service", "billing"),)


def emf(
    metrics: dict[str, tuple[str | None, Any]],
    dimensions: list[list[str]] | None = None,
    *,
    at: datetime = AT,
    namespace: str = "carebus",
    **members: Any,
) -> str:
    """One EMF line as Powertools prints it: metric name -> (unit, value or values)."""
    definitions = [{"Name": name} | ({"Unit": unit} if unit else {}) for name, (unit, _) in metrics.items()]
    record = {
        "_aws": {
            "Timestamp": int(at.timestamp() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [["service"]] if dimensions is None else dimensions,
                    "Metrics": definitions,
                }
            ],
        },
        "service": "billing",
        **members,
        **{name: value for name, (_, value) in metrics.items()},
    }
    return json.dumps(record, separators=(",", ":"))


def key(
    name: str, dimensions: tuple[tuple[str, str], ...] = BILLING, namespace: str = "carebus"
) -> MetricKey:
    return MetricKey(namespace, name, dimensions)


# ----- reading EMF ---------------------------------------------------------------------------------------
def test_each_value_of_a_metric_is_a_sample_whether_single_or_an_array():
    line = emf({"ClaimsSubmitted": ("Count", [1.0, 1.0]), "EncounterToClaimTime": ("Milliseconds", 12.5)})

    samples = list(emf_samples([line]))

    assert samples == [
        MetricSample(key("ClaimsSubmitted"), "Count", AT, 1.0),
        MetricSample(key("ClaimsSubmitted"), "Count", AT, 1.0),
        MetricSample(key("EncounterToClaimTime"), "Milliseconds", AT, 12.5),
    ]


def test_a_metric_is_sampled_once_per_dimension_set_with_the_values_the_record_gives():
    line = emf(
        {"ApprovalDecisionTime": ("Milliseconds", 40)}, [["Outcome", "service"], []], Outcome="APPROVED"
    )

    keys = [sample.key for sample in emf_samples([line])]

    assert keys == [
        key("ApprovalDecisionTime", (("Outcome", "APPROVED"), ("service", "billing"))),
        key("ApprovalDecisionTime", ()),
    ]


def test_a_directive_without_dimension_sets_publishes_without_dimensions():
    [sample] = emf_samples([emf({"ColdStart": ("Count", 1)}, [])])

    assert sample.key == key("ColdStart", ())


def test_what_is_no_metric_is_skipped():
    lines = [
        json.dumps({"level": "INFO", "message": "Claim submitted", "service": "billing"}),
        "Serving until Ctrl-C",
        "{not json",
        json.dumps({"_aws": {"CloudWatchMetrics": []}, "A": 1}),  # no timestamp: CloudWatch refuses it
        emf({"Missing": ("Count", None), "Flag": ("Count", True), "Text": ("Count", "3")}),
        emf({"Undimensioned": ("Count", 1)}, [["tenant"]]),  # a dimension with no value
        "",
    ]

    assert list(emf_samples(lines)) == []


def test_two_records_printed_on_one_line_by_two_threads_are_both_read():
    first, second = emf({"ClaimsSubmitted": ("Count", 1)}), emf({"AppointmentsBooked": ("Count", 1)})
    log_line = json.dumps({"message": "Follow-up scheduled"})

    names = [sample.key.name for sample in emf_samples([f"{first}{second}{log_line}\n", "\n"])]

    assert names == ["ClaimsSubmitted", "AppointmentsBooked"]


def test_a_metric_without_a_unit_has_none():
    [sample] = emf_samples([emf({"Plain": (None, 2)})])

    assert (sample.unit, sample.value) == (None, 2.0)


# ----- figures -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "percentile", "expected"),
    [
        (range(1, 11), 50, 5),
        (range(1, 11), 90, 9),
        (range(1, 11), 99, 10),
        (range(1, 101), 99, 99),
        ([7.5], 50, 7.5),
        ([7.5], 99, 7.5),
        ([1, 2], 50, 1),
        ([1, 2], 51, 2),
    ],
)
def test_a_percentile_is_the_nearest_rank_sample(values, percentile, expected):
    assert nearest_rank(sorted(values), percentile) == expected


def test_a_percentile_of_no_samples_is_an_error():
    with pytest.raises(ValueError, match="no samples"):
        nearest_rank([], 50)


def test_a_count_adds_up_and_a_duration_also_has_its_distribution():
    durations = [
        MetricSample(key("EncounterToClaimTime"), "Milliseconds", AT, float(v)) for v in range(100, 0, -1)
    ]
    counts = [MetricSample(key("ClaimsSubmitted"), "Count", AT, 1.0)] * 3

    figures = aggregate([*durations, *counts])

    assert figures == [
        MetricFigures(key("ClaimsSubmitted"), "Count", 3, 3.0),
        MetricFigures(
            key("EncounterToClaimTime"), "Milliseconds", 100, 5050.0, {50: 50.0, 90: 90.0, 99: 99.0}, 100.0
        ),
    ]
    assert [figure.is_duration for figure in figures] == [False, True]


def test_each_namespace_name_and_dimension_set_is_a_metric_of_its_own():
    samples = [
        MetricSample(key("Errors", (("service", "billing"),)), "Count", AT, 1.0),
        MetricSample(key("Errors", (("service", "scheduling"),)), "Count", AT, 2.0),
        MetricSample(key("Errors", (("service", "billing"),), namespace="other"), "Count", AT, 4.0),
    ]

    assert [(figure.key, figure.total) for figure in aggregate(samples)] == [
        (key("Errors", (("service", "billing"),)), 1.0),
        (key("Errors", (("service", "scheduling"),)), 2.0),
        (key("Errors", (("service", "billing"),), namespace="other"), 4.0),
    ]


def test_a_selection_takes_a_window_name_patterns_and_namespaces():
    selection = MetricSelection(
        AT, AT + timedelta(minutes=5), ("Prescriptions*", "ClaimsSubmitted"), ("carebus",)
    )

    def sample(name: str, minutes: int = 1, namespace: str = "carebus") -> MetricSample:
        return MetricSample(key(name, namespace=namespace), "Count", AT + timedelta(minutes=minutes), 1.0)

    assert selection.selects(sample("PrescriptionsReleased"))
    assert selection.selects(sample("ClaimsSubmitted", minutes=5))
    assert not selection.selects(sample("ClaimsSubmittedLate"))
    assert not selection.selects(sample("ClaimsSubmitted", minutes=-1))
    assert not selection.selects(sample("ClaimsSubmitted", minutes=6))
    assert not selection.selects(sample("ClaimsSubmitted", namespace="other"))
    assert MetricSelection(AT, AT).selects_name("Anything")


# ----- the offline stack: its handler log ----------------------------------------------------------------
def offline_stack(outputs: dict[str, str]) -> Stack:
    return Stack(Target("carebus-local", "http://127.0.0.1:4566", "us-east-1", True), outputs)


def test_the_offline_stack_reports_what_its_handler_log_holds_in_the_window(tmp_path: Path):
    log = tmp_path / "handlers.log"
    lines = [
        "carebus offline stack carebus-local",
        emf({"ClaimsSubmitted": ("Count", 1)}),
        json.dumps({"level": "INFO", "message": "Claim submitted"}),
        emf({"ClaimsSubmitted": ("Count", 1)}, at=AT + timedelta(minutes=1)),
        emf({"ClaimsSubmitted": ("Count", 1)}, at=AT - timedelta(days=1)),  # outside the window
    ]
    log.write_text("\n".join(lines) + "\n")

    report = stack_metrics(offline_stack({HANDLER_LOG_OUTPUT: str(log)}), WINDOW)

    assert (report.source, report.offline, report.namespaces) == (str(log), True, ("carebus",))
    assert report.figures == (MetricFigures(key("ClaimsSubmitted"), "Count", 2, 2.0),)


def test_a_handler_log_that_is_not_on_this_machine_cannot_be_reached(tmp_path: Path):
    stack = offline_stack({HANDLER_LOG_OUTPUT: str(tmp_path / "elsewhere.log")})

    with pytest.raises(CarebusError, match="not on this machine") as raised:
        stack_metrics(stack, WINDOW)

    assert raised.value.exit_code == ExitCode.UNREACHABLE


# ----- a deployed stack: CloudWatch ----------------------------------------------------------------------
def deployed_stack(*services: str) -> tuple[Stack, dict[str, Stubber]]:
    stack = Stack(Target("carebus-dev", None, "us-east-1", False), {})
    stubbers = {}
    for service in services:
        client = boto3.client(
            service, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        stack._clients[service] = client
        stubbers[service] = Stubber(client)
    return stack, stubbers


def listed(name: str, *dimensions: tuple[str, str]) -> dict[str, Any]:
    return {
        "Namespace": "carebus",
        "MetricName": name,
        "Dimensions": [{"Name": dimension, "Value": value} for dimension, value in dimensions],
    }


def test_the_queries_ask_every_statistic_and_a_durations_distribution_in_milliseconds():
    queries = metric_data_queries([listed("EncounterToClaimTime", ("service", "billing"))], 3600)

    asked = {query["Id"]: (query["MetricStat"]["Stat"], query["MetricStat"].get("Unit")) for query in queries}
    assert asked == {
        "m0_samples": ("SampleCount", None),
        "m0_total": ("Sum", None),
        "m0_p50": ("p50", "Milliseconds"),
        "m0_p90": ("p90", "Milliseconds"),
        "m0_p99": ("p99", "Milliseconds"),
        "m0_maximum": ("Maximum", "Milliseconds"),
    }
    assert {query["MetricStat"]["Period"] for query in queries} == {3600}
    assert queries[0]["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "service", "Value": "billing"}]


@pytest.mark.parametrize(("minutes", "period"), [(60, 3600), (0.5, 60), (61.5, 3720)])
def test_one_period_of_whole_minutes_covers_the_window(minutes, period):
    assert metric_period_seconds(AT, AT + timedelta(minutes=minutes)) == period


def test_figures_from_several_periods_keep_exact_counts_but_no_percentiles():
    values = {"m0_samples": [2, 3], "m0_total": [20, 30], "m0_p50": [5, 8], "m0_maximum": [9, 12]}
    values |= {"m0_p90": [9], "m0_p99": [9]}

    figures = figures_from_statistics(listed("EncounterToClaimTime"), 0, values)

    assert figures == MetricFigures(
        key("EncounterToClaimTime", ()), "Milliseconds", 5, 50.0, {50: None, 90: 9, 99: 9}, 12
    )


def metric_data_page(figures: dict[int, dict[str, list[float]]]) -> dict[str, Any]:
    return {
        "MetricDataResults": [
            {"Id": f"m{index}_{label}", "Label": label, "Values": values, "StatusCode": "Complete"}
            for index, statistics in figures.items()
            for label, values in statistics.items()
        ]
    }


def test_a_deployed_stack_reports_cloudwatchs_statistics_for_the_namespaces_its_functions_declare():
    stack, stubbers = deployed_stack("cloudformation", "cloudwatch")
    template = {
        "Resources": {
            "BillingFunction": {
                "Type": "AWS::Lambda::Function",
                "Properties": {"Environment": {"Variables": {"POWERTOOLS_METRICS_NAMESPACE": "carebus"}}},
            },
            "BillingQueue": {"Type": "AWS::SQS::Queue", "Properties": {}},
        }
    }
    stubbers["cloudformation"].add_response(
        "get_template",
        {"TemplateBody": json.dumps(template)},
        {"StackName": "carebus-dev", "TemplateStage": "Processed"},
    )
    metrics = [
        listed("ClaimsSubmitted", ("service", "billing")),
        listed("EncounterToClaimTime", ("service", "billing")),
        listed("AppointmentsBooked", ("service", "scheduling")),  # no sample in the window
        listed("EncountersAccepted", ("service", "intake")),  # not selected
    ]
    stubbers["cloudwatch"].add_response("list_metrics", {"Metrics": metrics}, {"Namespace": "carebus"})
    selected = metrics[:3]
    stubbers["cloudwatch"].add_response(
        "get_metric_data",
        metric_data_page(
            {
                0: {"samples": [4], "total": [4], "p50": [], "p90": [], "p99": [], "maximum": []},
                1: {"samples": [4], "total": [100], "p50": [20], "p90": [35], "p99": [40], "maximum": [40]},
                2: {"samples": [], "total": []},
            }
        ),
        {
            "MetricDataQueries": metric_data_queries(selected, 7200),
            "StartTime": WINDOW.since,
            "EndTime": WINDOW.until,
            "ScanBy": "TimestampAscending",
        },
    )
    selection = MetricSelection(
        WINDOW.since, WINDOW.until, ("ClaimsSubmitted", "EncounterTo*", "Appointments*")
    )

    with stubbers["cloudformation"], stubbers["cloudwatch"]:
        report = stack_metrics(stack, selection)

    assert (report.source, report.offline, report.namespaces) == ("CloudWatch", False, ("carebus",))
    assert report.figures == (
        MetricFigures(key("ClaimsSubmitted"), None, 4, 4.0),
        MetricFigures(key("EncounterToClaimTime"), "Milliseconds", 4, 100.0, {50: 20, 90: 35, 99: 40}, 40),
    )


def test_many_metrics_are_asked_in_calls_of_at_most_500_queries():
    stack, stubbers = deployed_stack("cloudwatch")
    metrics = [listed(f"Metric{number}") for number in range(100)]
    stubbers["cloudwatch"].add_response("list_metrics", {"Metrics": metrics}, {"Namespace": "other"})
    for chunk in (metrics[:83], metrics[83:]):
        stubbers["cloudwatch"].add_response(
            "get_metric_data",
            metric_data_page({index: {"samples": [1], "total": [1]} for index in range(len(chunk))}),
            {
                "MetricDataQueries": metric_data_queries(chunk, 7200),
                "StartTime": WINDOW.since,
                "EndTime": WINDOW.until,
                "ScanBy": "TimestampAscending",
            },
        )

    with stubbers["cloudwatch"]:
        report = stack_metrics(stack, MetricSelection(WINDOW.since, WINDOW.until, namespaces=("other",)))

    assert len(report.figures) == 100
    stubbers["cloudwatch"].assert_no_pending_responses()


def test_a_deployed_stack_whose_functions_declare_no_namespace_needs_one_given():
    stack, stubbers = deployed_stack("cloudformation")
    stubbers["cloudformation"].add_response("get_template", {"TemplateBody": json.dumps({"Resources": {}})})

    with stubbers["cloudformation"], pytest.raises(CarebusError, match="--namespace") as raised:
        stack_metrics(stack, WINDOW)

    assert raised.value.exit_code == ExitCode.USAGE


# ----- printing ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "printed"), [(3.0, "3"), (12.345, "12.35"), (None, "-"), (0.25, "0.25")])
def test_numbers_print_whole_or_to_two_decimals(value, printed):
    assert number_text(value) == printed


def rendered(figures: tuple[MetricFigures, ...], *, offline: bool = True) -> str:
    source = "handlers.log" if offline else "CloudWatch"
    report = MetricsReport(source, offline, WINDOW.since, WINDOW.until, ("carebus",), figures)
    output = io.StringIO()
    console = Console(file=output, width=200)
    console.print(metrics_table("carebus-local", report))
    console.print(source_line(report))
    return output.getvalue()


def test_a_row_shows_a_metrics_figures_and_a_count_has_no_distribution():
    out = rendered(
        (
            MetricFigures(key("ClaimsSubmitted"), "Count", 2, 2.0),
            MetricFigures(
                key("EncounterToClaimTime"), "Milliseconds", 2, 30.5, {50: 10.0, 90: 20.5, 99: 20.5}, 20.5
            ),
        )
    )

    cells = [
        [cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines() if line.count("│") > 9
    ]
    rows = {row[1]: row for row in cells}
    assert rows["ClaimsSubmitted"] == [
        "carebus",
        "ClaimsSubmitted",
        "service=billing",
        "Count",
        "2",
        "2",
        "-",
        "-",
        "-",
        "-",
    ]
    assert rows["EncounterToClaimTime"][3:] == ["Milliseconds", "2", "30.50", "10", "20.50", "20.50", "20.50"]
    assert "Metrics of carebus-local from 2026-12-01T08:30:00Z to 2026-12-01T10:30:00Z" in out
    assert "Source: every EMF sample in the handler log handlers.log\nOffline each figure is exact" in out


def test_the_cloudwatch_line_says_how_its_figures_differ():
    out = rendered((MetricFigures(key("ClaimsSubmitted"), None, 1, 1.0),), offline=False)

    assert "Source: CloudWatch, namespace carebus, one 7200 s period" in out
    assert "offline the same command computes each figure exactly from the handler log" in out
