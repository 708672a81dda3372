"""AWS calls per record, counted: the real handlers in-process on moto, as the component tests run them
(template provisioned by carebus_local, moto made to behave like AWS), every botocore API call a handler
makes during its invocation tallied by service and operation."""

import io
import json
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from datetime import UTC, date, datetime, time
from typing import Any, Final

from carebus_local.template import PROJECT_ROOT, load_template, translate

EVENTS_DIR: Final = PROJECT_ROOT / "events"
INTAKE_SAMPLE: Final = EVENTS_DIR / "intake" / "submit_encounter.json"
INTAKE_FUNCTION: Final = "IntakeFunction"
# moto runs state machine definitions for real, as the tests configure it.
MOTO_CONFIG: Final = {"stepfunctions": {"execute_state_machine": True}}
# Before botocore or Powertools read them: fake credentials, one region, no endpoint, no X-Ray daemon.
_ENVIRONMENT: Final = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


# What a caller of counted_calls may see of each counted call: function, service, operation, request, answer.
CallObserver = Callable[[str, str, str, dict[str, Any], Any], None]


@contextmanager
def counted_calls(observe: CallObserver | None = None) -> Iterator[dict[str, Counter[str]]]:
    """Every API call a handler makes while it runs, by function logical id, as "service.Operation":
    the bench's own calls (queues received, tables read) run outside any invocation and are not counted.
    observe, if given, sees each counted call's request and answer too (what a call is billed by)."""
    from botocore.client import BaseClient

    from carebus_local.functions import CURRENT_FUNCTION

    counts: dict[str, Counter[str]] = {}
    original = BaseClient._make_api_call

    def counting(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        function = CURRENT_FUNCTION.get()
        if function is None:
            return original(client, operation, params)
        service = client.meta.service_model.service_name
        counts.setdefault(function, Counter())[f"{service}.{operation}"] += 1
        answer = original(client, operation, params)
        if observe is not None:
            observe(function, service, operation, params, answer)
        return answer

    BaseClient._make_api_call = counting  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        BaseClient._make_api_call = original  # type: ignore[method-assign]


def per_unit(counts: Mapping[str, int], units: int) -> dict[str, Any]:
    """Calls per record (or per encounter), in total and by operation."""
    return {
        "total": sum(counts.values()) / units,
        "by_operation": {operation: count / units for operation, count in sorted(counts.items())},
    }


def intake_event(sample: dict[str, Any], body: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The intake sample (with another body, if given) under a fresh Idempotency-Key: a new encounter."""
    event = json.loads(json.dumps(sample))
    if body is not None:
        event["body"] = json.dumps(body)
    key = f"bench-{uuid.uuid4()}"
    event["headers"]["Idempotency-Key"] = key
    event.setdefault("multiValueHeaders", {})["Idempotency-Key"] = [key]
    return event


def _receive(sqs: Any, queue_url: str, wanted: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while len(messages) < wanted:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, wanted - len(messages)),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            break
        messages += batch
    return messages


def _clock_at_the_visit(functions: Mapping[str, Any], sample_body: Mapping[str, Any]) -> None:
    """A handler that reads a `current_time` clock sees the sample's visit day (noon UTC), as the tests
    set it: booking then happens inside the sample's follow-up window, whatever today's date."""
    visit = datetime.combine(date.fromisoformat(sample_body["encounterDate"]), time(12), tzinfo=UTC)
    for function in functions.values():
        if hasattr(function.module, "current_time"):
            function.module.current_time = lambda: visit


@contextmanager
def offline_stack() -> Iterator[tuple[Any, dict[str, Any], dict[str, Any]]]:
    """The template provisioned on moto in this process, every function's handler ready to invoke (clocks
    at the sample's visit), and the intake sample: (stack, functions by logical id, sample event). The
    handlers' JSON logs go to a buffer, sys.stdout inside the block, instead of burying the figures."""
    os.environ.update(_ENVIRONMENT)
    for leaking in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(leaking, None)
    from moto import mock_aws

    from carebus_local.environments import isolate_powertools_process_state
    from carebus_local.fidelity import make_moto_behave_like_aws
    from carebus_local.functions import InProcessFunction
    from carebus_local.provision import Provisioner

    make_moto_behave_like_aws()
    isolate_powertools_process_state()
    sam_template = load_template()
    sample = json.loads(INTAKE_SAMPLE.read_text())
    # The handlers' loggers bind the stream at import, which happens inside.
    with redirect_stdout(io.StringIO()), mock_aws(config=MOTO_CONFIG):
        stack = Provisioner(translate(sam_template), sam_template).provision()
        functions = {
            logical_id: InProcessFunction(spec, stack.function_environment(logical_id))
            for logical_id, spec in stack.functions.items()
        }
        _clock_at_the_visit(functions, json.loads(sample["body"]))
        yield stack, functions, sample


def measure_calls(batch_size: int) -> dict[str, Any]:
    """batch_size sample encounters through intake, then one batch of batch_size records to each
    consumer whose queue the fan-out filled; calls per accepted encounter and per consumer record."""
    import boto3

    from carebus_local.pollers import sqs_event

    with offline_stack() as (stack, functions, sample):
        sqs = boto3.client("sqs")
        results: dict[str, Any] = {"batch_size": batch_size, "consumers": {}}
        with counted_calls() as counts:
            statuses = [
                functions[INTAKE_FUNCTION].invoke(intake_event(sample))["statusCode"]
                for _ in range(batch_size)
            ]
            accepted = statuses.count(202)
            if accepted != batch_size:
                raise RuntimeError(
                    f"intake accepted {accepted} of {batch_size} sample encounters: {statuses}"
                )
            results["intake"] = {
                "encounters": accepted,
                **per_unit(counts.get(INTAKE_FUNCTION, {}), accepted),
            }
            for mapping in stack.event_source_mappings:
                queue_url = sqs.get_queue_url(QueueName=mapping.queue_arn.rsplit(":", 1)[1])["QueueUrl"]
                messages = _receive(sqs, queue_url, batch_size)
                if not messages:
                    continue  # not a consumer of the encounter fan-out
                answer = functions[mapping.function_logical_id].invoke(
                    sqs_event(messages, mapping.queue_arn, stack.region)
                )
                failures = (answer or {}).get("batchItemFailures", [])
                if failures:
                    raise RuntimeError(f"{mapping.function_logical_id} failed {len(failures)} sample records")
                results["consumers"][mapping.function_logical_id] = {
                    "records": len(messages),
                    **per_unit(counts.get(mapping.function_logical_id, {}), len(messages)),
                }
    return results


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    lines = [f"AWS calls, {result['batch_size']} sample encounters, one batch per consumer"]
    rows = {f"{INTAKE_FUNCTION} per encounter": result["intake"]}
    rows.update({f"{name} per record": row for name, row in result["consumers"].items()})
    for label, row in rows.items():
        operations = ", ".join(f"{operation} {count:g}" for operation, count in row["by_operation"].items())
        lines.append(f"  {label:<36} {row['total']:5.2f}  ({operations})")
    return lines
