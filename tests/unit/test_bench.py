"""The bench's arithmetic and rendering: medians and spreads, the round-robin order, cost lines, verdicts
computed from figures, the generated section's markers. No timing is asserted."""

import pytest

from carebus_bench.edge import batch_of, line_of
from carebus_bench.phases import gate_targets, pytest_command, pytest_levels
from carebus_bench.report import BEGIN, END, replace_between_markers, table
from carebus_bench.stats import interleaved, ratio, slope_and_intercept, summarize
from carebus_bench.targets import MET, NOT_MEASURED, NOT_MET, at_least, at_most, verdicts
from carebus_bench.template_facts import EnvironmentResolver


def test_summary_gives_median_quartiles_and_extremes():
    summary = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (summary.median, summary.low, summary.high, summary.runs) == (3.0, 1.0, 5.0, 5)
    assert (summary.q1, summary.q3) == (2.0, 4.0)


def test_a_single_sample_is_its_own_spread():
    summary = summarize([7.0])
    assert (summary.median, summary.q1, summary.q3, summary.low, summary.high) == (7.0,) * 5


def test_ratio_is_of_medians():
    assert ratio(summarize([2.0, 4.0, 100.0]), summarize([1.0, 2.0, 3.0])) == 2.0


def test_measurements_run_round_robin_in_the_same_order_every_round():
    order: list[str] = []

    def measure(label: str):
        return lambda: order.append(label) or float(len(order))

    samples = interleaved({"a": measure("a"), "b": measure("b"), "c": measure("c")}, rounds=2)
    assert order == ["a", "b", "c", "a", "b", "c"]
    assert samples == {"a": [1.0, 4.0], "b": [2.0, 5.0], "c": [3.0, 6.0]}


def test_the_cost_line_splits_per_record_and_fixed_cost():
    assert slope_and_intercept([(1, 12.0), (10, 30.0)]) == pytest.approx((2.0, 10.0))
    assert line_of({1: 12.0, 10: 30.0}) == pytest.approx({"per_record_us": 2.0, "per_invocation_us": 10.0})


def test_a_line_needs_two_sizes():
    with pytest.raises(ValueError, match="two different"):
        slope_and_intercept([(10, 1.0), (10, 2.0)])


def test_a_batch_cycles_the_samples_with_unique_message_ids():
    samples = [{"messageId": "0f5f8d3c-0000-000000000000", "body": "a"}, {"messageId": "x" * 26, "body": "b"}]
    records = batch_of(samples, 5)["Records"]
    assert [record["body"] for record in records] == ["a", "b", "a", "b", "a"]
    assert len({record["messageId"] for record in records}) == 5


def test_limits_give_verdicts_and_missing_figures_are_not_measured():
    assert at_most(1.35, 1.35) == MET
    assert at_most(1.36, 1.35) == NOT_MET
    assert at_least(9.9, 10) == NOT_MET
    assert at_most(None, 1) == NOT_MEASURED


def test_verdicts_come_from_the_figures():
    results = {
        "cold-init": {
            "functions": [
                {
                    "function": "BillingFunction",
                    "ratio_to_sdk_floor": 1.2,
                    "cpu_ratio_to_sdk_floor": 1.1,
                    "init_ms": {"median": 300.0},
                },
                {
                    "function": "IntakeFunction",
                    "ratio_to_sdk_floor": 1.6,
                    "cpu_ratio_to_sdk_floor": 1.5,
                    "init_ms": {"median": 400.0},
                },
            ]
        },
        "calls": {
            "batch_size": 10,
            "consumers": {"BillingFunction": {"total": 4.0}, "SchedulingFunction": {"total": 5.5}},
            "batch_of_one": {"consumers": {"BillingFunction": {"total": 5.0}}},
        },
        "edge": {"edge_above_json_loads_us": 2.5},
        "throughput": {"missing": "not there"},
    }
    by_target = {verdict.target: verdict.verdict for verdict in verdicts(results)}
    measured = {verdict.target: verdict.measured for verdict in verdicts(results)}
    assert (
        measured["AWS calls per BillingFunction record <= 4"]
        == "4.00 in a batch of 10 (5.00 in a batch of one)"
    )
    assert by_target["cold init of BillingFunction <= 1.35x the SDK floor"] == MET
    assert by_target["cold init of IntakeFunction <= 1.35x the SDK floor"] == NOT_MET
    assert by_target["AWS calls per BillingFunction record <= 4"] == MET
    assert by_target["AWS calls per SchedulingFunction record <= 5"] == NOT_MET
    assert by_target["AWS calls per PrescriptionsFunction record <= 5"] == NOT_MEASURED
    assert by_target["consumer edge <= 3 us per record above json.loads"] == MET
    assert by_target[">= 10 encounters/s end to end offline (goal 20)"] == NOT_MEASURED
    assert by_target["make test <= 180 s"] == NOT_MEASURED


def test_a_failed_phase_fails_the_test_time_target():
    results = {
        "test-phases": {
            "selected": [],
            "total_seconds": 100.0,
            "phases": [{"phase": "lint", "passed": False}, {"phase": "pytest tests/unit", "passed": True}],
        }
    }
    [verdict] = [verdict for verdict in verdicts(results) if verdict.target.startswith("make test")]
    assert verdict.verdict == f"{NOT_MET} (failed: lint)"


def test_a_markdown_table_has_a_header_rule_and_rows():
    assert table(("a", "b"), [(1, 2)]) == ["| a | b |", "|---|---|", "| 1 | 2 |"]


def test_only_the_generated_section_is_replaced():
    document = f"head\n{BEGIN}\nold\n{END}\ntail\n"
    assert replace_between_markers(document, "new\n") == f"head\n{BEGIN}\nnew\n{END}\ntail\n"
    with pytest.raises(ValueError, match="markers"):
        replace_between_markers("no markers", "new\n")


def test_make_test_phases_are_read_from_the_makefile():
    makefile = (
        "lint: $(STAMP) ## x\n\n"
        "test: $(STAMP) ## Every gate\n"
        "\t@$(MAKE) --no-print-directory -j4 lint validate checkov & checks=$$!; \\\n"
        "\t$(BIN)/pytest -q -n 4 --dist loadgroup; tests=$$?; \\\n"
        "\twait $$checks\n\nbuild: x\n"
    )
    assert gate_targets(makefile) == ["lint", "validate", "checkov"]
    assert pytest_command(makefile, ".venv/bin") == [
        ".venv/bin/pytest",
        "-q",
        "-n",
        "4",
        "--dist",
        "loadgroup",
    ]


def test_a_testpath_of_folders_splits_into_levels(tmp_path):
    for folder in ("tests/unit", "tests/stack", "e2e"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "test_x.py").write_text("")
    (tmp_path / "tests" / "helpers").mkdir()
    pyproject = {"tool": {"pytest": {"ini_options": {"testpaths": ["tests", "e2e"]}}}}
    assert pytest_levels(pyproject, tmp_path) == ["tests/stack", "tests/unit", "e2e"]


def test_environment_references_resolve_to_plausible_names():
    template = {
        "Parameters": {"Timeout": {"Type": "Number", "Default": 30}},
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}, "Table": {"Type": "AWS::DynamoDB::Table"}},
    }
    resolver = EnvironmentResolver(template)
    assert resolver.resolve({"Ref": "Timeout"}) == "30"
    assert resolver.resolve({"Ref": "Table"}) == "carebus-bench-Table"
    assert resolver.resolve({"Ref": "Topic"}).startswith("arn:aws:sns:us-east-1:")
    assert resolver.resolve({"Fn::Sub": "${AWS::StackName}-x"}) == "carebus-bench-x"


def test_import_self_times_beyond_the_floor_are_grouped_by_package_and_the_rest_is_the_handler_body():
    from carebus_bench.attribution import Run, beyond_floor, self_times

    report = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:      2000 |       2000 |   botocore.client",
            "import time:      4000 |      10000 |     pydantic",
            "import time:      3000 |       3000 |   aws_lambda_powertools.logging",
            "import time:      1500 |       1500 | carebus.models",
            "import time:       500 |        500 | asyncio",
        ]
    )
    function = Run(self_times(report), unreported_ms=30.0)
    floor = Run({"botocore.client": 2500}, unreported_ms=21.0)

    assert beyond_floor(function, floor) == {
        "pydantic": 4.0,
        "Powertools": 3.0,
        "carebus": 1.5,
        "standard library": 0.5,
        "handler body": 9.0,
    }


def test_the_test_time_target_is_judged_on_the_whole_make_test_when_it_was_timed():
    phases = [{"phase": "lint", "passed": True}, {"phase": "pytest tests/unit", "passed": True}]
    results = {
        "test-phases": {
            "selected": [],
            "total_seconds": 400.0,
            "phases": phases,
            "make_test": {"seconds": 170.0, "passed": True},
        }
    }
    [verdict] = [verdict for verdict in verdicts(results) if verdict.target.startswith("make test")]
    assert verdict.verdict == MET
    assert verdict.measured == "170 s (its phases one after the other: 400 s)"
