"""`make test`'s wall time by phase: each static check it runs (ruff, sam validate --lint, cfn-lint,
checkov), then its pytest command once per test level (tests/unit, tests/template, ... and every other
testpath), each timed alone; then `make test` itself once, whole. Read from the Makefile and pyproject.toml,
never restated.

The sum is an upper bound on `make test`: there the static checks run beside pytest, whose workers start
once; here one after the other, and once a level.
"""

import re
import shlex
import subprocess
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from carebus_bench.stats import summarize
from carebus_local.template import PROJECT_ROOT

MAKEFILE: Final = PROJECT_ROOT / "Makefile"
TEST_TARGET: Final = "test"
_PHASE_SECONDS: Final = 900


def _dry_run(target: str) -> list[str]:
    """The commands `make target` would run now (setup steps included, if any are due)."""
    answer = subprocess.run(  # noqa: S603 - make, fixed arguments
        ["make", "--no-print-directory", "-n", target],  # noqa: S607
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in answer.stdout.splitlines() if line.strip()]


def _recipe(makefile: str) -> str:
    """The test target's recipe (its tab-indented lines, continuations joined)."""
    match = re.search(rf"^{TEST_TARGET}:[^\n]*\n((?:\t[^\n]*\n?)+)", makefile, re.MULTILINE)
    if match is None:
        raise ValueError(f"no {TEST_TARGET} target with a recipe in the Makefile")
    return match.group(1).replace("\\\n", " ")


def gate_targets(makefile: str) -> list[str]:
    """The static checks the test target runs beside pytest: the targets of its `$(MAKE) ... &` line."""
    match = re.search(r"\$\(MAKE\)([^&;]*)&", _recipe(makefile))
    if match is None:
        raise ValueError(f"no `$(MAKE) ... &` of the static checks in `make {TEST_TARGET}`")
    return [word for word in shlex.split(match.group(1)) if not word.startswith("-")]


def pytest_command(makefile: str, bin_dir: str) -> list[str]:
    """The test target's pytest command, with $(BIN) spelled out."""
    match = re.search(r"\$\(BIN\)/pytest([^;&|]*)", _recipe(makefile))
    if match is None:
        raise ValueError(f"no $(BIN)/pytest command in `make {TEST_TARGET}`")
    return [f"{bin_dir}/pytest", *shlex.split(match.group(1))]


def pytest_levels(pyproject: Mapping[str, Any], root: Path = PROJECT_ROOT) -> list[str]:
    """Each testpath, a folder of folders split into its subfolders that hold tests."""
    levels = []
    for testpath in pyproject["tool"]["pytest"]["ini_options"]["testpaths"]:
        folder = root / testpath
        children = sorted(
            child for child in folder.iterdir() if child.is_dir() and any(child.rglob("test_*.py"))
        )
        if children and not any(folder.glob("test_*.py")):
            levels += [str(child.relative_to(root)) for child in children]
        else:
            levels.append(testpath)
    return levels


def phases() -> list[tuple[str, list[str]]]:
    """(name, command) for every phase, as `make test` would run it."""
    makefile = MAKEFILE.read_text()
    gates = gate_targets(makefile)
    bin_dir = re.search(r"^BIN := (.+)$", makefile, re.MULTILINE)
    venv = re.search(r"^VENV := (.+)$", makefile, re.MULTILINE)
    if bin_dir is None or venv is None:
        raise ValueError("the Makefile names no VENV and BIN")
    pytest = pytest_command(makefile, bin_dir.group(1).replace("$(VENV)", venv.group(1)))
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    return [(gate, ["make", "--no-print-directory", "-s", gate]) for gate in gates] + [
        (f"pytest {level}", [*pytest, level]) for level in pytest_levels(pyproject)
    ]


def _set_up(gate: str) -> None:
    """A gate whose tool venv is not installed yet installs it once, untimed (its first run)."""
    if any("pip install" in line for line in _dry_run(gate)):
        subprocess.run(["make", "--no-print-directory", "-s", gate], cwd=PROJECT_ROOT, check=False)  # noqa: S603, S607


def _timed(command: Sequence[str]) -> tuple[float, int]:
    started = time.monotonic()
    answer = subprocess.run(  # noqa: S603 - the Makefile's own commands
        list(command), cwd=PROJECT_ROOT, capture_output=True, timeout=_PHASE_SECONDS, check=False
    )
    return time.monotonic() - started, answer.returncode


def measure_phases(runs: int, only: Sequence[str] = ()) -> dict[str, Any]:
    """Each phase `runs` times in a row, phases one after the other (they are what make test runs
    serially; each level's pytest uses every core)."""
    rows = []
    for name, command in phases():
        if only and not any(wanted in name for wanted in only):
            continue
        if command[0] == "make":
            _set_up(command[-1])
        samples, exit_codes = [], []
        for _ in range(runs):
            seconds, exit_code = _timed(command)
            samples.append(seconds)
            exit_codes.append(exit_code)
        rows.append(
            {
                "phase": name,
                "command": shlex.join(command),
                "seconds": summarize(samples).to_json(),
                "passed": all(code == 0 for code in exit_codes),
            }
        )
    whole: dict[str, Any] | None = None
    if not only:
        # The phases overlap in `make test` (the static checks run beside pytest, whose workers start
        # once): the target is judged on the whole target, timed as CI runs it.
        seconds, exit_code = _timed(["make", "--no-print-directory", "-s", TEST_TARGET])
        whole = {"seconds": seconds, "passed": exit_code == 0}
    return {
        "runs": runs,
        "selected": list(only),
        "phases": rows,
        "total_seconds": sum(row["seconds"]["median"] for row in rows),
        "make_test": whole,
    }


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    lines = [f"make test by phase, {result['runs']} run(s) each (s, median)"]
    for row in result["phases"]:
        verdict = "" if row["passed"] else "  FAILED"
        lines.append(f"  {row['phase']:<34} {row['seconds']['median']:7.1f}{verdict}")
    lines.append(f"  {'sum':<34} {result['total_seconds']:7.1f}")
    if result.get("make_test"):
        whole = result["make_test"]
        lines.append(
            f"  {'make test, whole':<34} {whole['seconds']:7.1f}{'' if whole['passed'] else '  FAILED'}"
        )
    return lines
