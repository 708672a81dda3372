"""`--wait-for TEXT`: show a view once it holds every TEXT (a lab's "wait until the claim is there")."""

import argparse
import io
import time
from collections.abc import Callable

from rich.console import Console, RenderableType

from carebus_client.errors import ExitCode

DEFAULT_WAIT_SECONDS = 60
_POLL_SECONDS = 1.0


def add_wait_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--wait-for",
        action="append",
        default=[],
        metavar="TEXT",
        help=f"show {what} once it holds TEXT (may be repeated: every one); exit 1 if it does not in time",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        metavar="SECONDS",
        help=f"how long --wait-for waits (default {DEFAULT_WAIT_SECONDS})",
    )


def _text_of(view: RenderableType, width: int) -> str:
    recorder = Console(file=io.StringIO(), width=width, color_system=None)
    recorder.print(view)
    return recorder.file.getvalue()  # type: ignore[attr-defined]


def show_when_ready(args: argparse.Namespace, console: Console, view: Callable[[], RenderableType]) -> int:
    """Print view() at once, or, with --wait-for, as soon as it shows every text (or, failing that, as it
    stood when the time ran out, and exit 1 naming what never came)."""
    wanted: list[str] = args.wait_for
    deadline = time.monotonic() + args.timeout
    while True:
        shown = view()
        text = _text_of(shown, console.width)
        missing = [needle for needle in wanted if needle not in text]
        if not missing or time.monotonic() >= deadline:
            break
        time.sleep(_POLL_SECONDS)
    console.print(shown)
    if missing:
        console.print(
            f"carebus: still no {', '.join(repr(needle) for needle in missing)} after {args.timeout:g} s"
        )
        return ExitCode.REFUSED
    return ExitCode.OK
