"""How every carebus command writes to the screen: a terminal's own width, or wide lines when piped."""

import sys
from typing import Final

from rich.console import Console

# Piped or captured output (CI logs, a test) keeps whole ids and messages on one line rather than
# squeezing them into 80 columns.
_PIPED_OUTPUT_WIDTH: Final = 200


def console() -> Console:
    # Bound to this stdout: the demo sends the handlers' prints elsewhere while it writes here.
    console = Console(file=sys.stdout, highlight=False)
    return (
        console
        if console.is_terminal
        else Console(file=sys.stdout, highlight=False, width=_PIPED_OUTPUT_WIDTH)
    )
