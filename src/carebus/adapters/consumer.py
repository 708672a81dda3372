"""The queue-consumer edge: SQS batch in, partial batch response out, one parsed message a record, and
the batch's domain events put together at the end. Nothing here loads the encounter models: the approval
token consumer uses it too (carebus.adapters.references consumes encounter references)."""

from collections.abc import Callable, Sequence
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from carebus.adapters.eventbus import Entry, put_entries
from carebus.business_metrics import BATCH_ITEM_FAILURES
from carebus.errors import CarebusError, MalformedMessageError

# Powertools Metrics instances share one metric set: what this adds, the consumer's own handler flushes
# (its @metrics.log_metrics), under the function's service dimension.
_metrics = Metrics()


def _report_failure(logger: Logger, error: Exception) -> None:
    # No traceback: it could quote a payload. carebus's own errors never carry PHI.
    reason = str(error) if isinstance(error, CarebusError) else None
    logger.warning(
        "Record failed; it stays on the queue", extra={"error": type(error).__name__, "reason": reason}
    )


def consume_messages[Message](
    event: dict[str, Any],
    context: LambdaContext,
    *,
    parse: Callable[[str], Message],
    process: Callable[[Message], Sequence[Entry] | None],
    log_keys: Callable[[Message], dict[str, str]],
    logger: Logger,
    prepare: Callable[[list[Message]], None] | None = None,
    events_client: Any = None,
) -> dict[str, Any]:
    """Parse every record, prepare(the parsed messages) once, then process each; a record that fails
    any way is reported, never dropped.

    parse raises MalformedMessageError for a body that breaks the message contract. process returns the
    PutEvents entries its record announces: they are put for the whole batch after every record is
    processed (events_client's PutEvents, ten a request), and a record whose events were not all taken
    is reported failed, so that its redelivery announces them again. The function's own logger carries
    log_keys(message) into every line logged while a record is processed.
    """
    records = event["Records"]
    parsed: dict[str, Message | MalformedMessageError] = {}
    for record in records:
        try:
            parsed[record["messageId"]] = parse(record["body"])
        except MalformedMessageError as error:
            parsed[record["messageId"]] = error
    if prepare is not None:
        prepare([message for message in parsed.values() if not isinstance(message, MalformedMessageError)])

    # The record's keys are set on the logger as each record starts (overwriting the last record's) and
    # removed once the batch is done: a context manager per record costs more than the rest of the edge.
    # The formatter is looked up once: Logger.append_keys walks the logger's handlers to find it each call.
    formatter = logger.registered_formatter
    appended: set[str] = set()  # every key set in this batch, removed at its end
    last: set[str] = set()  # the keys the last record set

    def log_with(keys: dict[str, str | None]) -> None:
        if keys.keys() == last:  # the usual case: every record sets the same keys
            formatter.append_keys(**keys)
            return
        # A key the last record set and this one does not is cleared (None keys are left out of a line).
        formatter.append_keys(**dict.fromkeys(last - keys.keys()), **keys)
        last.clear()
        last.update(keys)
        appended.update(keys)

    def handle_record(record: SQSRecord) -> Sequence[Entry] | None:
        message = parsed[record.message_id]
        if isinstance(message, MalformedMessageError):
            # The routing attribute still names the encounter when the body is malformed.
            attributes = record.raw_event.get("messageAttributes", {})
            correlation = attributes.get("encounterId", {}).get("stringValue")
            log_with({"encounter_id": correlation, "message_id": record.message_id})
            _report_failure(logger, message)
            raise message
        log_with({"message_id": record.message_id, **log_keys(message)})
        try:
            return process(message)
        except Exception as error:
            _report_failure(logger, error)
            raise

    # One processor per invocation: it holds the batch's state, which must not be shared between
    # functions or concurrent invocations in one process (the offline runtime, tests). A batch where
    # every record fails still answers with the failures (each reaches the DLQ on its own count)
    # instead of raising, which would fail the invocation and hide the poison among the others.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    try:
        with processor(records=records, handler=handle_record, lambda_context=context):
            outcomes = processor.process()
        failures: list[dict[str, str]] = list(processor.response()["batchItemFailures"])
        announcements = {
            record["messageId"]: result
            for status, result, record in outcomes
            if status == "success" and result
        }
        if announcements:
            for message_id, code in put_entries(events_client, announcements).items():
                message = parsed[message_id]
                assert not isinstance(message, MalformedMessageError)  # only processed records announce
                log_with({"message_id": message_id, **log_keys(message)})
                logger.warning("Record's events not accepted; it stays on the queue", extra={"error": code})
                failures.append({"itemIdentifier": message_id})
    finally:
        formatter.remove_keys(list(appended))
    # Lambda has no metric of partial batch failures; one datum a failing batch, none on the happy path.
    if failures:
        _metrics.add_metric(name=BATCH_ITEM_FAILURES, unit=MetricUnit.Count, value=len(failures))
    return {"batchItemFailures": failures}
