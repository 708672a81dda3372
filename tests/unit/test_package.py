import json
import subprocess
import sys

HEAVY_PACKAGES = {"boto3", "botocore", "aws_lambda_powertools"}
MODULES = ("auth", "billing", "codes", "errors", "events", "messages", "models", "prescribing", "problems")


def test_domain_package_loads_without_aws_sdk_or_powertools() -> None:
    # A fresh interpreter, because this test session may already have imported those packages.
    probe = "\n".join(
        [
            *(f"import carebus.{module}" for module in (*MODULES, "scheduling")),
            "import sys",
            f"print(sorted(name for name in sys.modules if name.split('.')[0] in {HEAVY_PACKAGES!r}))",
        ]
    )
    result = subprocess.run(  # noqa: S603 - fixed interpreter and fixed script
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def _loaded_after(imports: tuple[str, ...]) -> set[str]:
    """carebus's modules a fresh interpreter holds after these imports."""
    probe = "\n".join(
        [
            *(f"import {name}" for name in imports),
            "import json, sys",
            "print(json.dumps([m for m in sys.modules if m.startswith('carebus')]))",
        ]
    )
    result = subprocess.run(  # noqa: S603 - fixed interpreter and fixed script
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout))


def test_what_validates_only_decisions_and_tokens_never_builds_the_encounter_models() -> None:
    # The approvals API and the approval token consumer: each cold start would build every encounter model.
    loaded = _loaded_after(("carebus.approvals", "carebus.adapters.consumer", "carebus.adapters.eventbus"))

    assert "carebus.approvals" in loaded
    assert "carebus.models" not in loaded
    assert "carebus.events" not in loaded
