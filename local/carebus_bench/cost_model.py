"""What a month of encounters costs on AWS, from what one measured mix of encounters used: pure arithmetic
over the measured counts (carebus_bench.cost_drive), list prices (each with its source and the day it was
read) and stated assumptions. No AWS call, no moto: every figure here can be checked by hand."""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from carebus_bench.cost_prices import PRICES, Price

SECONDS_PER_MONTH: Final = 30 * 24 * 3600  # a 30-day month, as AWS's pricing examples use
KIB: Final = 1024
GB: Final = 1024**3
SQS_CHUNK: Final = 64 * KIB  # SQS bills each 64 KiB of a request's payload as one request
EVENTS_CHUNK: Final = 64 * KIB  # EventBridge bills each 64 KB of an entry as one event
SNS_CHUNK: Final = 64 * KIB  # SNS bills each 64 KB of a publish as one request
READ_UNIT: Final = 4 * KIB
WRITE_UNIT: Final = KIB


@dataclass(frozen=True)
class Mix:
    """Which share of encounters carries what (a controlled one also carries an uncontrolled prescription,
    as the intake sample does). Defaults: an assumption for an outpatient practice, not a measured figure."""

    procedures: float = 0.9
    follow_ups: float = 0.3
    prescriptions: float = 0.6
    controlled: float = 0.1

    def __post_init__(self) -> None:
        for name, share in vars(self).items():
            if not 0 <= share <= 1:
                raise ValueError(f"the share of {name} must be between 0 and 1, not {share}")
        if self.controlled > self.prescriptions:
            raise ValueError("controlled encounters are prescription encounters: controlled <= prescriptions")


@dataclass(frozen=True)
class Assumptions:
    """What the offline stack cannot measure, stated. Durations: a handler's own work plus one round trip
    per AWS call it makes (the calls are measured); Lambda's SQS pollers long-poll while a queue is idle."""

    handler_ms: float = 30.0
    per_call_ms: float = 20.0
    pollers_per_mapping: int = 5
    long_poll_seconds: int = 20
    kms_reuse_seconds: int = 300  # the template's KmsDataKeyReusePeriodSeconds for queues and the workflow
    email_subscribers: int = 1  # PharmacistsEmail set: one e-mail per approval notice
    access_log_line_bytes: int = 330
    retention_days: Mapping[str, int] = field(
        default_factory=lambda: {"functions": 30, "audit": 2192, "archive": 365}
    )


@dataclass(frozen=True)
class LineItem:
    service: str
    item: str
    quantity: float  # units a month
    price_key: str
    basis: str  # "measured", "assumed" or "template"
    fixed: bool = False  # a monthly cost that does not grow with encounters

    def cost(self, prices: Mapping[str, Price] = PRICES) -> float:
        return self.quantity * prices[self.price_key].each


def batch_fill(records_per_second: float, window_seconds: float, batch_size: int) -> int:
    """The records a mapping's batch holds when records arrive steadily: those that arrive within its
    batching window, at least the one that opened the batch and at most the batch size."""
    return max(1, min(batch_size, math.floor(records_per_second * window_seconds)))


def chunks(size_bytes: int, chunk: int) -> int:
    """How many billing chunks a payload of size_bytes is (an empty one is still one request)."""
    return max(1, math.ceil(size_bytes / chunk))


def attribute_size(value: Mapping[str, Any]) -> int:
    """The size DynamoDB bills for one typed attribute value (DynamoDB's item-size rules: strings and
    binaries by their bytes, numbers about one byte per two digits plus one, 3 bytes plus 1 per element for
    lists and maps)."""
    (kind, content), *_ = value.items()
    if kind == "S":
        return len(content.encode())
    if kind == "B":
        return len(content)
    if kind == "N":
        digits = content.lstrip("-").replace(".", "").lstrip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_size({kind[0]: element}) for element in content)
    if kind == "L":
        return 3 + sum(1 + attribute_size(element) for element in content)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + attribute_size(element) for name, element in content.items())
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """An item's billed size: its attribute names and values."""
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def write_units(size_bytes: int, transactional: bool = False) -> int:
    return chunks(size_bytes, WRITE_UNIT) * (2 if transactional else 1)


def read_units(size_bytes: int, consistent: bool, transactional: bool = False) -> float:
    units = chunks(size_bytes, READ_UNIT)
    if transactional:
        return 2.0 * units
    return float(units) if consistent else units / 2


def sampled_share(rate_per_second: float, fixed_per_second: float = 1.0, share_beyond: float = 0.05) -> float:
    """The share of requests X-Ray's default rule records at a steady Poisson rate: the first request of
    each second (the reservoir) and 5% of the others."""
    if rate_per_second <= 0:
        return 0.0
    reservoir = fixed_per_second * (1 - math.exp(-rate_per_second / fixed_per_second)) / rate_per_second
    return reservoir + share_beyond * (1 - reservoir)


def per_encounter(measured: Mapping[str, Any], name: str) -> float:
    return measured["totals"][name] / measured["encounters"]


def line_items(measured: Mapping[str, Any], volume: float, assumptions: Assumptions) -> list[LineItem]:
    """Every line of the month's bill for `volume` encounters of the measured mix."""
    monthly = {name: per_encounter(measured, name) * volume for name in measured["totals"]}
    functions = measured["functions"]
    gb_seconds = sum(
        row["invocations"]
        / measured["encounters"]
        * volume
        * (assumptions.handler_ms + assumptions.per_call_ms * row["aws_calls"] / max(row["invocations"], 1))
        / 1000
        * row["memory_mb"]
        / 1024
        for row in functions.values()
    )
    minutes = SECONDS_PER_MONTH / 60
    empty_receives = (
        measured["template"]["event_source_mappings"]
        * assumptions.pollers_per_mapping
        * 60
        / assumptions.long_poll_seconds
        * minutes
    )
    kms_windows = SECONDS_PER_MONTH / assumptions.kms_reuse_seconds
    log_bytes = (
        monthly["function_log_bytes"]
        + monthly["audit_log_bytes"]
        + (monthly["api_requests"] * assumptions.access_log_line_bytes)
    )
    retention_months = {name: days / 30 for name, days in assumptions.retention_days.items()}
    stored_log_bytes = (
        monthly["function_log_bytes"] + monthly["api_requests"] * assumptions.access_log_line_bytes
    ) * retention_months["functions"] + monthly["audit_log_bytes"] * retention_months["audit"]
    traces = sum(
        entries * sampled_share(entries / SECONDS_PER_MONTH)
        for entries in (monthly[name] for name in measured["trace_entry_points"])
    )
    template = measured["template"]
    return [
        LineItem(
            "API Gateway", "REST requests", monthly["api_requests"], "apigateway.rest_request", "measured"
        ),
        LineItem("Lambda", "requests", monthly["invocations"], "lambda.request", "measured"),
        LineItem(
            "Lambda", "GB-seconds, arm64, configured memory", gb_seconds, "lambda.arm_gb_second", "assumed"
        ),
        LineItem("SNS", "publishes (64 KB chunks)", monthly["sns_publish_chunks"], "sns.publish", "measured"),
        LineItem("SNS", "deliveries to SQS", monthly["sns_sqs_deliveries"], "sns.sqs_delivery", "measured"),
        LineItem(
            "SNS",
            "e-mail deliveries (approval notices)",
            monthly["approval_notices"] * assumptions.email_subscribers,
            "sns.email_delivery",
            "measured",
        ),
        LineItem(
            "SQS",
            "requests (64 KiB chunks: sends, receives, deletes)",
            monthly["sqs_request_chunks"],
            "sqs.request",
            "measured",
        ),
        LineItem(
            "SQS",
            "empty receives of the mappings' long polling",
            empty_receives,
            "sqs.request",
            "assumed",
            fixed=True,
        ),
        LineItem(
            "DynamoDB",
            "write request units (transactions x2)",
            monthly["dynamodb_write_units"],
            "dynamodb.write_unit",
            "measured",
        ),
        LineItem(
            "DynamoDB", "read request units", monthly["dynamodb_read_units"], "dynamodb.read_unit", "measured"
        ),
        LineItem(
            "EventBridge",
            "custom events (64 KB chunks)",
            monthly["event_chunks"],
            "events.custom_event",
            "measured",
        ),
        LineItem(
            "EventBridge",
            "archive, GB processed",
            monthly["event_bytes"] / GB,
            "events.archive_gb",
            "measured",
        ),
        LineItem(
            "EventBridge",
            "archive, GB-months stored (steady state)",
            monthly["event_bytes"] * retention_months["archive"] / GB,
            "events.archive_gb_month",
            "measured",
        ),
        LineItem(
            "Step Functions",
            "Standard state transitions",
            monthly["state_transitions"],
            "stepfunctions.transition",
            "measured",
        ),
        LineItem(
            "CloudWatch Logs",
            "GB ingested (functions, audit trail, API access log)",
            log_bytes / GB,
            "logs.ingested_gb",
            "measured",
        ),
        LineItem(
            "CloudWatch Logs",
            "GB-months stored (steady state of the retentions)",
            stored_log_bytes / GB,
            "logs.stored_gb_month",
            "measured",
        ),
        LineItem(
            "CloudWatch",
            "custom metrics",
            len(measured["metrics"]),
            "cloudwatch.metric_month",
            "measured",
            fixed=True,
        ),
        LineItem(
            "CloudWatch",
            "alarm metrics",
            template["alarm_metrics"],
            "cloudwatch.alarm_metric_month",
            "template",
            fixed=True,
        ),
        LineItem(
            "CloudWatch",
            "dashboards",
            template["dashboards"],
            "cloudwatch.dashboard_month",
            "template",
            fixed=True,
        ),
        LineItem(
            "KMS", "customer managed key", template["kms_keys"], "kms.key_month", "template", fixed=True
        ),
        LineItem(
            "KMS",
            "requests (one data key per caller and resource per reuse window)",
            len(measured["kms_callers"]) * kms_windows,
            "kms.request",
            "assumed",
            fixed=True,
        ),
        LineItem("X-Ray", "traces recorded (default sampling)", traces, "xray.trace_recorded", "assumed"),
    ]


def total(items: list[LineItem], prices: Mapping[str, Price] = PRICES) -> float:
    return sum(item.cost(prices) for item in items)


def express_cost_per_execution(
    seconds: float, memory_mb: int = 64, prices: Mapping[str, Price] = PRICES
) -> float:
    """What one Express execution of `seconds` would cost: a request, and duration billed in 100 ms steps
    and 64 MB chunks."""
    billed_seconds = math.ceil(seconds * 10) / 10
    billed_gb = math.ceil(memory_mb / 64) * 64 / 1024
    return prices["stepfunctions.express_request"].each + (
        billed_seconds * billed_gb * prices["stepfunctions.express_gb_second"].each
    )
