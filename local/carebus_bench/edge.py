"""The consumer edge's cost per record and per invocation, against json.loads of the same bodies.

carebus.adapters.consumer.consume_messages runs over SQS batches built from the consumers' sample records
(events/<consumer>/encounter_reference.json) with the references' own parser and a process that does
nothing: what is left is the edge (parsing, Powertools' BatchProcessor, log keys, the partial batch
response). Two batch sizes give a line: its slope is the cost per record, its intercept the fixed cost
per invocation. Both sides run in this process, interleaved round by round, timed in the CPU time of the
measuring thread (time.thread_time: nothing else the process or the machine runs lands in it) with the
heap the earlier parts left frozen out of the collector's way.
"""

import gc
import io
import json
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import redirect_stdout
from typing import Any, Final

from carebus_bench.stats import interleaved, slope_and_intercept, summarize
from carebus_local.template import PROJECT_ROOT

EVENTS_DIR: Final = PROJECT_ROOT / "events"
# Enough invocations per sample that one sample lasts tens of milliseconds: timer resolution and a single
# scheduler hiccup then weigh little.
_RECORDS_PER_SAMPLE: Final = 4000


def sample_records() -> list[dict[str, Any]]:
    """Every consumer's sample encounter reference record."""
    return [
        record
        for path in sorted(EVENTS_DIR.glob("*/encounter_reference.json"))
        for record in json.loads(path.read_text())["Records"]
    ]


def batch_of(records: Sequence[dict[str, Any]], size: int) -> dict[str, Any]:
    """An SQS event of `size` records cycling through the samples, each with its own message id."""
    batch = []
    for index in range(size):
        record = dict(records[index % len(records)])
        record["messageId"] = f"{record['messageId'][:-6]}{index:06d}"
        batch.append(record)
    return {"Records": batch}


def _edge(size: int, records: Sequence[dict[str, Any]]) -> Callable[[], float]:
    from aws_lambda_powertools import Logger

    from carebus.adapters.consumer import consume_messages
    from carebus.messages import parse_reference
    from carebus_local.functions import LambdaContext

    event = batch_of(records, size)
    logger = Logger(service="bench-edge", stream=io.StringIO())
    context = LambdaContext("bench-edge", 512, "arn:aws:lambda:us-east-1:123456789012:function:bench", 10)
    invocations = max(1, _RECORDS_PER_SAMPLE // size)

    def one_sample() -> float:
        started = time.thread_time()
        for _ in range(invocations):
            answer = consume_messages(
                event,
                context,
                parse=parse_reference,
                process=lambda reference: None,
                log_keys=lambda reference: {"encounter_id": reference.encounter_id},
                logger=logger,
            )
        elapsed = time.thread_time() - started
        if answer["batchItemFailures"]:
            raise RuntimeError(f"the edge failed sample records: {answer['batchItemFailures']}")
        return elapsed / invocations

    return one_sample


def _json_loads(size: int, records: Sequence[dict[str, Any]]) -> Callable[[], float]:
    bodies = [record["body"] for record in batch_of(records, size)["Records"]]
    invocations = max(1, _RECORDS_PER_SAMPLE // size)

    def one_sample() -> float:
        started = time.thread_time()
        for _ in range(invocations):
            for body in bodies:
                json.loads(body)
        return (time.thread_time() - started) / invocations

    return one_sample


def line_of(medians_us: Mapping[int, float]) -> dict[str, float]:
    """Per-record cost (slope) and fixed cost per invocation (intercept), in microseconds."""
    slope, intercept = slope_and_intercept(sorted(medians_us.items()))
    return {"per_record_us": slope, "per_invocation_us": intercept}


def measure_edge(rounds: int, batch_sizes: Sequence[int]) -> dict[str, Any]:
    records = sample_records()
    gc.collect()
    gc.freeze()
    try:
        samples = _sample(records, batch_sizes, rounds)
    finally:
        gc.unfreeze()
    return _result(samples, records, batch_sizes, rounds)


def _sample(
    records: Sequence[dict[str, Any]], batch_sizes: Sequence[int], rounds: int
) -> dict[tuple[str, int], list[float]]:
    measurements: dict[tuple[str, int], Callable[[], float]] = {}
    with redirect_stdout(io.StringIO()):
        for size in batch_sizes:
            measurements[("edge", size)] = _edge(size, records)
            measurements[("json.loads", size)] = _json_loads(size, records)
        for measure in measurements.values():
            measure()  # warm: first calls build pydantic validators and Powertools state
        return interleaved(measurements, rounds)


def _result(
    samples: Mapping[tuple[str, int], list[float]],
    records: Sequence[dict[str, Any]],
    batch_sizes: Sequence[int],
    rounds: int,
) -> dict[str, Any]:
    invocation_us = {key: summarize([1e6 * seconds for seconds in values]) for key, values in samples.items()}
    sides = {}
    for side in ("edge", "json.loads"):
        medians = {size: invocation_us[(side, size)].median for size in batch_sizes}
        sides[side] = {
            **line_of(medians),
            "invocation_us": {str(size): invocation_us[(side, size)].to_json() for size in batch_sizes},
        }
    return {
        "rounds": rounds,
        "batch_sizes": list(batch_sizes),
        "sample_records": len(records),
        **sides,
        "edge_above_json_loads_us": sides["edge"]["per_record_us"] - sides["json.loads"]["per_record_us"],
        "edge_to_json_loads_ratio": sides["edge"]["per_record_us"] / sides["json.loads"]["per_record_us"],
        "clock": "thread CPU time",
    }


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    lines = [
        f"consumer edge, batches of {' and '.join(map(str, result['batch_sizes']))} records,"
        f" {result['rounds']} interleaved rounds (us, medians)"
    ]
    for side in ("edge", "json.loads"):
        row = result[side]
        spreads = ", ".join(
            f"{size}: {figures['median']:.1f} [{figures['q1']:.1f}-{figures['q3']:.1f}]"
            for size, figures in row["invocation_us"].items()
        )
        lines.append(
            f"  {side:<11} {row['per_record_us']:6.2f} per record, {row['per_invocation_us']:6.1f} per"
            f" invocation  (per invocation by batch size {spreads})"
        )
    lines.append(
        f"  edge above json.loads: {result['edge_above_json_loads_us']:.2f} us per record"
        f" ({result['edge_to_json_loads_ratio']:.2f}x json.loads)"
    )
    return lines
