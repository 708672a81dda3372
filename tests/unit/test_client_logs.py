"""`carebus logs`: an id's lines from the offline stack's handler log (CloudWatch Logs on AWS)."""

import json
from pathlib import Path

from carebus_client.logs import HANDLER_LOG_OUTPUT, LogLine, describe, encounter_log_lines
from carebus_client.stacks import Stack

ENCOUNTER = "8fa0e337-82e4-5244-a21d-785b90ab5918"


def test_the_handler_log_gives_the_lines_that_name_the_id_and_not_its_metrics(tmp_path: Path) -> None:
    log = tmp_path / "handlers.log"
    lines = [
        {
            "level": "INFO",
            "message": "Encounter accepted",
            "timestamp": "t1",
            "service": "intake",
            "encounter_id": ENCOUNTER,
        },
        {"_aws": {"CloudWatchMetrics": []}, "service": "intake", "encounter_id": ENCOUNTER},
        {
            "level": "INFO",
            "message": "Claim submitted",
            "timestamp": "t2",
            "service": "billing",
            "encounter_id": "other",
        },
        {
            "level": "INFO",
            "message": "Claim submitted",
            "timestamp": "t3",
            "service": "billing",
            "encounter_id": ENCOUNTER,
        },
    ]
    log.write_text("\n".join([*map(json.dumps, lines), f"not json {ENCOUNTER}"]) + "\n")
    stack = Stack(None, {HANDLER_LOG_OUTPUT: str(log)})  # type: ignore[arg-type]

    found = encounter_log_lines(stack, ENCOUNTER)

    assert found == [
        LogLine("t1", "intake", "Encounter accepted"),
        LogLine("t3", "billing", "Claim submitted"),
    ]
    assert describe(found[0]) == "t1  intake           Encounter accepted"
