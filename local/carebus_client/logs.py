"""One encounter's log lines across every function of a stack, found by its id.

Deployed, they are in each function's CloudWatch Logs group (FilterLogEvents on the id); offline, in the
handler log the offline stack names in its HandlerLogFile output. Either way the lines are Powertools
JSON with the ids the handlers append, and no PHI.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carebus_client.stacks import Stack, aws_errors

HANDLER_LOG_OUTPUT = "HandlerLogFile"


@dataclass(frozen=True)
class LogLine:
    """One handler log line: when, which service, what it said."""

    at: str
    service: str
    message: str


def _log_line(text: str) -> LogLine | None:
    try:
        record: Any = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict) or "message" not in record:
        return None  # a metrics line (EMF), or not a Powertools line at all
    return LogLine(str(record.get("timestamp", "")), str(record.get("service", "")), str(record["message"]))


def _from_file(path: Path, needle: str) -> list[LogLine]:
    with path.open(errors="replace") as lines:
        return [line for text in lines if needle in text and (line := _log_line(text)) is not None]


def _function_log_groups(stack: Stack) -> list[str]:
    paginator = stack.client("cloudformation").get_paginator("list_stack_resources")
    return [
        f"/aws/lambda/{resource['PhysicalResourceId']}"
        for page in paginator.paginate(StackName=stack.name)
        for resource in page["StackResourceSummaries"]
        if resource["ResourceType"] == "AWS::Lambda::Function"
    ]


def _from_cloudwatch(stack: Stack, needle: str) -> list[LogLine]:
    logs = stack.client("logs")
    found: list[tuple[int, LogLine]] = []
    for group in _function_log_groups(stack):
        try:
            pages = logs.get_paginator("filter_log_events").paginate(
                logGroupName=group, filterPattern=f'"{needle}"'
            )
            for page in pages:
                for event in page["events"]:
                    if (line := _log_line(event["message"])) is not None:
                        found.append((event["timestamp"], line))
        except logs.exceptions.ResourceNotFoundException:
            continue  # a function that never ran has no log group yet
    found.sort(key=lambda pair: pair[0])
    return [line for _, line in found]


def encounter_log_lines(stack: Stack, needle: str) -> list[LogLine]:
    """Every function's log lines that mention the id, oldest first."""
    handler_log = stack.outputs.get(HANDLER_LOG_OUTPUT)
    if handler_log:
        return _from_file(Path(handler_log), needle)
    with aws_errors(stack.target):
        return _from_cloudwatch(stack, needle)


def describe(line: LogLine) -> str:
    return f"{line.at}  {line.service:<16} {line.message}"
