"""The queue-consumer edge: SQS batch in, partial batch response out, one parsed message a record."""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig
from aws_lambda_powertools.utilities.typing import LambdaContext

from carebus.errors import CarebusError, MalformedMessageError
from carebus.messages import EncounterReference, parse_reference

# A consumer writes its record at most once per encounter; a week outlives any SQS redelivery (4 days).
ONCE_PER_ENCOUNTER = IdempotencyConfig(event_key_jmespath="encounterId", expires_after_seconds=7 * 24 * 3600)


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
    process: Callable[[Message], None],
    log_keys: Callable[[Message], dict[str, str]],
    logger: Logger,
) -> dict[str, Any]:
    """Parse and process each record; a record that fails either way is reported, never dropped.

    parse raises MalformedMessageError for a body that breaks the message contract. The function's own
    logger carries log_keys(message) into every line logged while a record is processed.
    """

    def handle_record(record: SQSRecord) -> None:
        try:
            message = parse(record.body)
        except MalformedMessageError as error:
            # The routing attribute still names the encounter when the body is malformed.
            attributes = record.raw_event.get("messageAttributes", {})
            correlation = attributes.get("encounterId", {}).get("stringValue")
            with logger.append_context_keys(encounter_id=correlation, message_id=record.message_id):
                _report_failure(logger, error)
            raise
        with logger.append_context_keys(message_id=record.message_id, **log_keys(message)):
            try:
                process(message)
            except Exception as error:
                _report_failure(logger, error)
                raise

    # One processor per invocation: it holds the batch's state, which must not be shared between
    # functions or concurrent invocations in one process (the offline runtime, tests). A batch where
    # every record fails still answers with the failures (each reaches the DLQ on its own count)
    # instead of raising, which would fail the invocation and hide the poison among the others.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(
        event=event, record_handler=handle_record, processor=processor, context=context
    )


def consume_references(
    event: dict[str, Any], context: LambdaContext, process: Callable[..., Any], logger: Logger
) -> dict[str, Any]:
    """Call process(reference={...}) for each encounter reference; process is idempotent on
    ONCE_PER_ENCOUNTER, so duplicate deliveries of one encounter change nothing."""
    ONCE_PER_ENCOUNTER.register_lambda_context(context)

    def process_reference(reference: EncounterReference) -> None:
        process(reference=reference.model_dump(mode="json"))

    return consume_messages(
        event,
        context,
        parse=parse_reference,
        process=process_reference,
        log_keys=lambda reference: {"encounter_id": reference.encounter_id},
        logger=logger,
    )
