"""The workshop labs (docs/labs/) as something a test can run: their steps, in order, and their checkpoints.

A lab is Markdown written for people; three kinds of fenced block in it are also instructions here:

- ```` ```bash lab-server ```` holds the command that starts the offline stack, run in a terminal of its
  own. The test starts exactly that command, on free ports (so that it never collides with a stack the
  machine already runs), waits for its banner, and stops it with Ctrl-C (SIGINT) at the next lab-server
  block or at the end of the lab.
- ```` ```console ```` holds commands after `$ ` (a line ending in `\\` continues on the next), each
  followed by what you should see: every line written there must appear in the command's output (on
  lines of its own, in any order: consumers finish in any order), where `...` stands for any text and
  `<name>` for one word (an id, a time). The first
  `<name>` of a lab takes the word it meets; every later `<name>` of that lab must be the same word
  (the same encounter id, submitted twice). Lines the block leaves out are not checked.
- ```` ```console aws ```` is the same for the AWS path (a deployed stack): not run offline.

In a command, `<name>` stands for the word a checkpoint took before (an attendee types their own
encounter's id there; the test puts in the one it saw). Commands run in bash from the project's root,
one lab in one shell (variables carry from step to step, and across a restart of the stack), pointed at
the lab's offline stack by CAREBUS_ENDPOINT_URL, with a carebus home of its own (logins) and the lab's
stated time as its time limit.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_FENCE: Final = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_TIME: Final = re.compile(r"\*\*Time:\*\*\s*(?P<minutes>\d+) minutes offline")
_PLACEHOLDER: Final = re.compile(r"<[A-Za-z][\w-]*>")
_PROMPT: Final = "$ "


@dataclass(frozen=True)
class Step:
    """A command and what its output must show."""

    command: str
    expected: tuple[str, ...]
    line: int  # in the lab's file, for failure messages


@dataclass(frozen=True)
class ServerStart:
    """The command that starts the offline stack, as the lab writes it."""

    command: str
    line: int


@dataclass(frozen=True)
class Lab:
    path: Path
    title: str
    minutes: int  # the lab's stated offline time
    parts: tuple[Step | ServerStart, ...]

    @property
    def steps(self) -> list[Step]:
        return [part for part in self.parts if isinstance(part, Step)]


def _console_steps(body: str, first_line: int) -> list[Step]:
    steps: list[Step] = []
    command: list[str] | None = None
    expected: list[str] = []
    start = first_line
    for offset, line in enumerate(body.splitlines()):
        if command is not None and command[-1].endswith("\\"):
            command.append(line)
            continue
        if line.startswith(_PROMPT):
            if command is not None:
                steps.append(Step("\n".join(command), tuple(expected), start))
            command, expected, start = [line.removeprefix(_PROMPT)], [], first_line + offset
        elif command is not None and line.strip():
            expected.append(line.strip())
    if command is not None:
        steps.append(Step("\n".join(command), tuple(expected), start))
    return steps


def parse_lab(path: Path) -> Lab:
    text = path.read_text()
    title = text.splitlines()[0].removeprefix("# ").strip()
    time = _TIME.search(text)
    if time is None:
        raise ValueError(f"{path.name}: no '**Time:** N minutes offline'")
    parts: list[Step | ServerStart] = []
    for fence in _FENCE.finditer(text):
        info = fence["info"].split()
        first_line = text.count("\n", 0, fence.start("body")) + 1
        if info == ["bash", "lab-server"]:
            commands = [line for line in fence["body"].splitlines() if line.strip()]
            if len(commands) != 1:
                raise ValueError(f"{path.name}:{first_line}: a lab-server block holds one command")
            parts.append(ServerStart(commands[0], first_line))
        elif info == ["console"]:
            parts.extend(_console_steps(fence["body"], first_line))
    if not parts:
        raise ValueError(f"{path.name}: nothing to run")
    if (
        any(isinstance(part, Step) for part in parts)
        and isinstance(parts[0], Step)
        and any(isinstance(part, ServerStart) for part in parts)
    ):
        raise ValueError(f"{path.name}: a step comes before the lab starts the offline stack (lab-server)")
    return Lab(path, title, int(time["minutes"]), tuple(parts))


def _line_pattern(expected: str, bound: Mapping[str, str]) -> re.Pattern[str]:
    pieces, named = [], set()
    for fragment in (part.strip() for part in expected.split("...")):
        piece, position = [], 0
        for placeholder in _PLACEHOLDER.finditer(fragment):
            piece.append(re.escape(fragment[position : placeholder.start()]))
            name = placeholder.group(0)[1:-1]
            group = re.sub(r"\W", "_", name)
            if name in bound:
                piece.append(re.escape(bound[name]))
            elif group in named:
                piece.append(f"(?P={group})")
            else:
                piece.append(rf"(?P<{group}>\S+)")
                named.add(group)
            position = placeholder.end()
        piece.append(re.escape(fragment[position:]))
        pieces.append("".join(piece))
    return re.compile(".*?".join(pieces))


def missing_lines(expected: tuple[str, ...], output: str, bound: dict[str, str] | None = None) -> list[str]:
    """The expected lines the output does not show, each on a line of its own. The words that placeholders
    meet are added to bound, for the lab's later checkpoints."""
    bound = {} if bound is None else bound
    lines = output.splitlines()
    taken: set[int] = set()
    missing = []
    for wanted in expected:
        pattern = _line_pattern(wanted, bound)
        for index in (index for index in range(len(lines)) if index not in taken):
            if found := pattern.search(lines[index]):
                taken.add(index)
                for placeholder in _PLACEHOLDER.finditer(wanted):
                    name = placeholder.group(0)[1:-1]
                    if name not in bound:
                        bound[name] = found.group(re.sub(r"\W", "_", name))
                break
        else:
            missing.append(wanted)
    return missing


def with_words(command: str, bound: Mapping[str, str]) -> str:
    """The command with each `<name>` replaced by the word a checkpoint took for it."""

    def word(placeholder: re.Match[str]) -> str:
        name = placeholder.group(0)[1:-1]
        if name not in bound:
            raise ValueError(f"{command!r} uses <{name}> before any checkpoint showed it")
        return bound[name]

    return _PLACEHOLDER.sub(word, command)
