"""us-east-1 list prices for carebus's cost model (carebus_bench.cost_model), each with where it was read.

Read on READ_ON through the stored copies of the pages named (the search tool's pages and docs corpora, no
live page): where AWS's own stored page does not show the figure (its price tables load as scripts), the
figure is the named secondary source's and `shown` is False. Check them against the live pages before
relying on them; a changed price is changed here, and `make cost` renders docs/cost.md again."""

from dataclasses import dataclass
from typing import Final

READ_ON: Final = "2026-12-01"


@dataclass(frozen=True)
class Price:
    """A us-east-1 list price: usd for every `per` units, where it was read, and whether that stored copy
    shows the figure itself (shown=False: the page was read but its table is not in the stored copy, and the
    figure comes from the named secondary source)."""

    usd: float
    per: float
    unit: str
    source: str
    shown: bool = True

    @property
    def each(self) -> float:
        return self.usd / self.per


_AWS: Final = "https://aws.amazon.com"
PRICES: Final[dict[str, Price]] = {
    "apigateway.rest_request": Price(
        3.50,
        1e6,
        "REST API request (first 333 M a month)",
        "docs.aws.amazon.com/whitepapers/latest/best-practices-api-gateway-private-apis-integration/"
        "cost-optimization.html, table 4",
    ),
    "lambda.request": Price(
        0.20,
        1e6,
        "Lambda request",
        f"{_AWS}/lambda/pricing/ (table not in the stored copy); cloudchipr.com/blog/aws-lambda-pricing",
        shown=False,
    ),
    "lambda.arm_gb_second": Price(
        0.0000133334,
        1,
        "GB-second on arm64 (first 7.5 billion a month)",
        f"{_AWS}/lambda/pricing/ (table not in the stored copy); cloudchipr.com/blog/aws-lambda-pricing",
        shown=False,
    ),
    "sns.publish": Price(
        0.50,
        1e6,
        "SNS standard publish (per 64 KB)",
        "factualminds.com/blog/amazon-sns-pricing-publishes-fanout-protocols (2026-06)",
        shown=False,
    ),
    "sns.sqs_delivery": Price(
        0.0,
        1e6,
        "SNS delivery to SQS",
        "no stored source shows this price; taken as free, the queue's SQS requests counted apart",
        shown=False,
    ),
    "sns.email_delivery": Price(
        2.00,
        1e5,
        "SNS e-mail delivery",
        "factualminds.com/blog/amazon-sns-pricing-publishes-fanout-protocols (2026-06)",
        shown=False,
    ),
    "sqs.request": Price(
        0.40,
        1e6,
        "SQS standard request (per 64 KiB chunk)",
        "unanswered.io/guide/aws-sqs-pricing-and-cost-optimization;"
        " cloudburn.io/blog/amazon-sqs-pricing (2026-03)",
        shown=False,
    ),
    "dynamodb.write_unit": Price(
        0.625,
        1e6,
        "DynamoDB on-demand write request unit",
        "airbyte.com/data-engineering-resources/dynamodb-pricing (after the 2024-11 cut)",
        shown=False,
    ),
    "dynamodb.read_unit": Price(
        0.125,
        1e6,
        "DynamoDB on-demand read request unit",
        "airbyte.com/data-engineering-resources/dynamodb-pricing (after the 2024-11 cut)",
        shown=False,
    ),
    "events.custom_event": Price(
        1.00,
        1e6,
        "EventBridge custom event (per 64 KB)",
        "cloudburn.io/blog/amazon-eventbridge-pricing (2026-03)",
        shown=False,
    ),
    "events.archive_gb": Price(
        0.10,
        1,
        "EventBridge archive, GB processed",
        "cloudburn.io/blog/amazon-eventbridge-pricing (2026-03)",
        shown=False,
    ),
    "events.archive_gb_month": Price(
        0.023,
        1,
        "EventBridge archive, GB-month stored",
        "cloudburn.io/blog/amazon-eventbridge-pricing (2026-03)",
        shown=False,
    ),
    "stepfunctions.transition": Price(
        0.025,
        1e3,
        "Step Functions Standard state transition",
        f"{_AWS}/step-functions/pricing/ (counting rule shown, table not in the stored copy);"
        " wring.co/blog/aws-step-functions-pricing-guide (2026-03)",
        shown=False,
    ),
    "stepfunctions.express_request": Price(
        1.00,
        1e6,
        "Step Functions Express request",
        "wring.co/blog/aws-step-functions-pricing-guide (2026-03)",
        shown=False,
    ),
    "stepfunctions.express_gb_second": Price(
        0.00001667,
        1,
        "Step Functions Express GB-second (64 MB chunks, 100 ms)",
        "wring.co/blog/aws-step-functions-pricing-guide (2026-03)",
        shown=False,
    ),
    "logs.ingested_gb": Price(
        0.50,
        1,
        "CloudWatch Logs ingestion, GB",
        "factualminds.com/blog/amazon-cloudwatch-pricing-metrics-logs-alarms-dashboards (2026-06)",
        shown=False,
    ),
    "logs.stored_gb_month": Price(
        0.03,
        1,
        "CloudWatch Logs storage, GB-month",
        "not in the stored copies read; the figure AWS lists for us-east-1 (check before relying on it)",
        shown=False,
    ),
    "cloudwatch.metric_month": Price(
        0.30,
        1,
        "custom metric-month (first 10,000)",
        "signoz.io/guides/cloudwatch-pricing (2026-02)",
        shown=False,
    ),
    "cloudwatch.alarm_metric_month": Price(
        0.10,
        1,
        "standard-resolution alarm metric-month",
        f"{_AWS}/cloudwatch/pricing/ (free tier shown, rates not in the stored copy)",
        shown=False,
    ),
    "cloudwatch.dashboard_month": Price(
        3.00,
        1,
        "dashboard-month",
        "factualminds.com/blog/amazon-cloudwatch-pricing-metrics-logs-alarms-dashboards (2026-06)",
        shown=False,
    ),
    "kms.key_month": Price(
        1.00, 1, "customer managed key-month (+$1 per rotated backing key)", f"{_AWS}/kms/pricing/"
    ),
    "kms.request": Price(
        0.03, 1e4, "KMS symmetric request", "wring.co/blog/aws-kms-pricing-guide (2026-03)", shown=False
    ),
    "xray.trace_recorded": Price(5.00, 1e6, "X-Ray trace recorded", f"{_AWS}/de/xray/pricing/"),
}
