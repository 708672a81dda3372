"""How the carebus command line draws what it found: tables, taken literally."""

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from carebus_client.trace import Trace


def text(value: Any) -> Text:
    """A table cell taken literally: stack data may contain brackets that rich would read as markup."""
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    return Text("" if value is None else str(value))


def moment_text(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def trace_table(trace: "Trace") -> Table:
    table = Table(title=f"Encounter {trace.encounter_id}", title_justify="left")
    table.add_column("since submission", justify="right")
    table.add_column("time (UTC)")
    table.add_column("step")
    table.add_column("detail", overflow="fold")
    for step in trace.steps:
        delta = trace.since_submission(step)
        table.add_row(
            "-" if delta is None else f"{delta.total_seconds():+.3f} s",
            moment_text(step.at),
            text(step.step),
            text(step.detail),
        )
    return table


def fields_table(record: Mapping[str, Any], title: str) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in record.items():
        table.add_row(text(name), text(value))
    return table
