"""What each function's cold start loads, in a fresh interpreter with the environment the template gives it:
never a module that only a path it never takes would need."""

import json
import subprocess
import sys

import pytest

from carebus_bench.cold_init import lambda_environment
from carebus_bench.template_facts import functions
from carebus_local.template import PROJECT_ROOT, load_template

FUNCTIONS = functions(load_template())
# Powertools' batch utility builds every parser model when pydantic was imported before it (batch/types.py).
PARSER_MODELS = "aws_lambda_powertools.utilities.parser.models"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The modules each function's import left in sys.modules, by logical id."""
    scratch = tmp_path_factory.mktemp("lambda-home")
    answers = {}
    for function in FUNCTIONS:
        code_dir = PROJECT_ROOT / function.code_uri
        environment = {
            **lambda_environment(function, code_dir, scratch),
            "PYTHONPATH": str(PROJECT_ROOT / "src"),
        }
        probe = (
            f"import json, sys; sys.path.insert(0, {str(code_dir)!r}); import {function.handler_module}; "
            "print(json.dumps(list(sys.modules)))"
        )
        result = subprocess.run(  # noqa: S603 - this interpreter, a fixed probe
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=environment
        )
        answers[function.logical_id] = json.loads(result.stdout.strip().splitlines()[-1])
    return answers


@pytest.mark.parametrize("logical_id", [function.logical_id for function in FUNCTIONS])
def test_no_function_builds_the_powertools_parser_models_it_never_uses(loaded, logical_id):
    assert not [name for name in loaded[logical_id] if name.startswith(PARSER_MODELS)]


def test_only_the_functions_that_read_encounters_build_the_encounter_models(loaded):
    building = sorted(logical_id for logical_id, modules in loaded.items() if "carebus.models" in modules)

    assert building == [
        "BillingFunction",
        "EncounterQueryFunction",
        "IntakeFunction",
        "PrescriptionsFunction",
        "SchedulingFunction",
    ]
