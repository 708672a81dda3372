"""How a lab's Markdown becomes steps and checkpoints (tests/labbook.py)."""

from pathlib import Path

import pytest
from labbook import ServerStart, Step, missing_lines, parse_lab, with_words

LAB = """# Lab 0: a lab

**Time:** 5 minutes offline.

```bash lab-server
.venv/bin/carebus local up --retry-after 2
```

```console
$ echo one \\
  two
one two
$ echo three
three
```

```console aws
$ carebus --stack x trace y
```

```bash
not run
```
"""


def test_a_lab_is_its_server_start_then_its_console_steps(tmp_path: Path) -> None:
    path = tmp_path / "00-lab.md"
    path.write_text(LAB)

    lab = parse_lab(path)

    assert (lab.title, lab.minutes) == ("Lab 0: a lab", 5)
    assert lab.parts == (
        ServerStart(".venv/bin/carebus local up --retry-after 2", 6),
        Step("echo one \\\n  two", ("one two",), 10),
        Step("echo three", ("three",), 13),
    )


def test_a_lab_without_its_time_or_with_a_step_before_its_server_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "00-lab.md"
    path.write_text("# Lab\n\n```console\n$ true\n```\n")
    with pytest.raises(ValueError, match="Time"):
        parse_lab(path)
    path.write_text("# Lab\n\n**Time:** 3 minutes offline.\n\n```console\n$ true\n```\n")
    assert parse_lab(path).steps == [Step("true", (), 6)]
    path.write_text(
        "# Lab\n\n**Time:** 3 minutes offline.\n\n```console\n$ true\n```\n\n```bash lab-server\nx\n```\n"
    )
    with pytest.raises(ValueError, match="lab-server"):
        parse_lab(path)


@pytest.mark.parametrize(
    ("expected", "output", "missing"),
    [
        (("a ... c",), "x a b c y", []),
        (("a", "c"), "a\nb\nc", []),
        (("c", "a"), "a\nb\nc", []),
        (("a", "a"), "a\nb", ["a"]),
        (("x ... y",), 'x"y', []),
        (("id <id> ok",), "id 1234 ok", []),
        (("id <id> ok",), "id 12 34 ok", ["id <id> ok"]),
        (("<x> and <x>",), "7 and 8", ["<x> and <x>"]),
        (("<x> and <x>",), "7 and 7", []),
        (("a.b (c)",), "a.b (c)", []),
        (("a.b (c)",), "axb (c)", ["a.b (c)"]),
    ],
)
def test_checkpoint_lines(expected: tuple[str, ...], output: str, missing: list[str]) -> None:
    assert missing_lines(expected, output) == missing


def test_a_placeholder_keeps_its_word_for_the_rest_of_the_lab() -> None:
    bound: dict[str, str] = {}
    assert missing_lines(("Encounter <id> ACCEPTED",), "Encounter e-1 ACCEPTED", bound) == []
    assert bound == {"id": "e-1"}
    assert missing_lines(("Encounter <id> ACCEPTED",), "Encounter e-2 ACCEPTED", bound) != []
    assert missing_lines(("trace of <id>",), "trace of e-1", bound) == []


def test_a_command_gets_the_words_its_checkpoints_took() -> None:
    assert with_words("carebus trace <id> --x", {"id": "e-1"}) == "carebus trace e-1 --x"
    with pytest.raises(ValueError, match="<id>"):
        with_words("carebus trace <id>", {})
