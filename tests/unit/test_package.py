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
