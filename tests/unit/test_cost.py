"""The cost model's arithmetic, by hand-computable cases, and docs/cost.md against the measurement and the
prices it was rendered from (no moto: `make cost` measures)."""

import json
import math

import pytest

from carebus_bench import cost
from carebus_bench.cost_model import (
    SECONDS_PER_MONTH,
    Assumptions,
    Mix,
    attribute_size,
    batch_fill,
    chunks,
    express_cost_per_execution,
    item_size,
    line_items,
    read_units,
    sampled_share,
    total,
    write_units,
)
from carebus_bench.cost_prices import PRICES


def measured(**totals: float) -> dict:
    """One encounter's worth of a measurement, with these totals (the rest zero)."""
    names = [
        "api_requests", "invocations", "sns_publish_chunks", "sns_sqs_deliveries", "approval_notices",
        "sqs_request_chunks", "dynamodb_write_units", "dynamodb_read_units", "event_chunks", "event_bytes",
        "state_transitions", "function_log_bytes", "audit_log_bytes", "executions",
    ]  # fmt: skip
    return {
        "encounters": 1,
        "totals": {name: totals.get(name, 0) for name in names},
        "functions": {},
        "metrics": [],
        "kms_callers": [],
        "trace_entry_points": [],
        "template": {"alarm_metrics": 0, "dashboards": 0, "kms_keys": 0, "event_source_mappings": 0},
    }


def cost_of(item_name: str, measurement: dict, volume: float = 1e6, **assumed) -> float:
    (item,) = [
        item for item in line_items(measurement, volume, Assumptions(**assumed)) if item.item == item_name
    ]
    return item.cost()


def test_a_payload_is_billed_in_whole_chunks_and_an_empty_one_as_one():
    assert [chunks(size, 64 * 1024) for size in (0, 1, 65536, 65537)] == [1, 1, 1, 2]


def test_an_item_size_is_its_names_and_values_as_dynamodb_counts_them():
    # "id" 2 + "abc" 3; "n" 1 + 12345 (5 digits: 3 + 1); "ok" 2 + 1; "m" 1 + (3 + 1 + "k" 1 + "v" 1)
    item = {"id": {"S": "abc"}, "n": {"N": "12345"}, "ok": {"BOOL": True}, "m": {"M": {"k": {"S": "v"}}}}
    assert item_size(item) == 5 + 5 + 3 + 7
    assert attribute_size({"L": [{"S": "ab"}, {"NULL": True}]}) == 3 + (1 + 2) + (1 + 1)


def test_writes_take_a_unit_per_kilobyte_and_transactions_twice():
    assert [write_units(size) for size in (1, 1024, 1025)] == [1, 1, 2]
    assert write_units(1025, transactional=True) == 4


def test_reads_take_a_unit_per_4_kilobytes_half_when_eventually_consistent():
    assert read_units(4096, consistent=True) == 1
    assert read_units(4097, consistent=False) == 1
    assert read_units(100, consistent=True, transactional=True) == 2


def test_a_batch_holds_what_its_window_gathers_from_one_to_the_batch_size():
    assert batch_fill(0.39, 2, 10) == 1
    assert batch_fill(2.6, 2, 10) == 5
    assert batch_fill(100, 2, 10) == 10


def test_sampling_records_the_first_request_each_second_and_five_percent_of_the_rest():
    assert sampled_share(1.0) == pytest.approx((1 - math.exp(-1)) + 0.05 * math.exp(-1))
    assert sampled_share(1e-6) == pytest.approx(1.0, abs=1e-5)
    assert sampled_share(1e6) == pytest.approx(0.05, abs=1e-5)


def test_per_encounter_counts_scale_with_the_volume_at_list_prices():
    one_each = measured(api_requests=1, state_transitions=7, dynamodb_write_units=10, event_chunks=2)
    assert cost_of("REST requests", one_each) == pytest.approx(3.50)
    assert cost_of("Standard state transitions", one_each) == pytest.approx(175.0)
    assert cost_of("write request units (transactions x2)", one_each) == pytest.approx(6.25)
    assert cost_of("custom events (64 KB chunks)", one_each, volume=2e6) == pytest.approx(4.0)


def test_duration_is_the_handler_work_and_a_round_trip_per_call_at_the_configured_memory():
    measurement = measured(invocations=1)
    measurement["functions"] = {"F": {"invocations": 1, "aws_calls": 5, "memory_mb": 512}}
    # (30 + 20 x 5) ms x 0.5 GB x 1M = 65,000 GB-s
    expected = 65_000 * PRICES["lambda.arm_gb_second"].each
    assert cost_of("GB-seconds, arm64, configured memory", measurement) == pytest.approx(expected)


def test_idle_pollers_cost_the_same_whatever_the_volume():
    measurement = measured()
    measurement["template"]["event_source_mappings"] = 4
    # 4 mappings x 5 pollers x 3 receives a minute x 43,200 minutes = 2,592,000 requests
    idle = "empty receives of the mappings' long polling"
    assert (
        cost_of(idle, measurement, volume=1)
        == cost_of(idle, measurement, volume=1e9)
        == pytest.approx(1.0368)
    )


def test_kms_requests_are_one_per_caller_and_resource_each_reuse_window():
    measurement = measured()
    measurement["kms_callers"] = ["BillingQueue <- sns", "BillingQueue <- lambda-poller"]
    windows = SECONDS_PER_MONTH / 300
    assert cost_of("requests (one data key per caller and resource per reuse window)", measurement) == (
        pytest.approx(2 * windows * 0.03 / 10_000)
    )


def test_express_bills_a_request_and_the_wait_in_100_ms_steps_of_64_mb():
    # one request, 3,600 s x 0.0625 GB
    assert express_cost_per_execution(3600) == pytest.approx(1e-6 + 3600 * 0.0625 * 0.00001667)
    assert express_cost_per_execution(0.01) == express_cost_per_execution(0.1)


def test_a_mix_refuses_shares_that_cannot_be():
    with pytest.raises(ValueError, match="between 0 and 1"):
        Mix(procedures=1.5)
    with pytest.raises(ValueError, match="controlled <= prescriptions"):
        Mix(prescriptions=0.1, controlled=0.2)


def test_the_total_is_the_sum_of_the_lines():
    items = line_items(measured(api_requests=1, invocations=3), 1e6, Assumptions())
    assert total(items) == pytest.approx(sum(item.cost() for item in items))


def test_docs_cost_md_is_what_its_measurement_and_the_prices_render():
    measurement = json.loads(cost.JSON_PATH.read_text())
    rendered = cost.render(measurement, cost.DEFAULT_VOLUME, Assumptions())
    assert cost.generated_part(cost.MARKDOWN_PATH.read_text()) == rendered, "run `make cost`"
