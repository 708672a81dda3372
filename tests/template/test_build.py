"""`sam build` as `make build` runs it: offline, no container, and packages without a second botocore."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from carebus_local.template import PROJECT_ROOT, TEMPLATE_PATH, load_template

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("sam-build")
    venv_bin = Path(sys.executable).parent
    environment = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
    }
    completed = subprocess.run(  # noqa: S603 - our own venv's sam, fixed arguments
        [str(venv_bin / "sam"), "build", "--template", str(TEMPLATE_PATH), "--build-dir", str(target)],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    yield target
    shutil.rmtree(target, ignore_errors=True)


def test_every_function_and_the_domain_layer_are_built(build_dir):
    built = {path.name for path in build_dir.iterdir() if path.is_dir()}
    declared = {
        logical_id
        for logical_id, resource in load_template()["Resources"].items()
        if resource["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::LayerVersion")
    }
    assert declared <= built


def test_packages_ship_no_aws_sdk_or_powertools_of_their_own(build_dir):
    shipped = {path.name for path in build_dir.rglob("*") if path.is_dir()}
    assert not shipped & {"boto3", "botocore", "aws_lambda_powertools", "pydantic"}


def test_the_domain_layer_puts_carebus_on_the_lambda_python_path(build_dir):
    assert (build_dir / "DomainLayer" / "python" / "carebus" / "models.py").is_file()
    assert not (build_dir / "DomainLayer" / "python" / "carebus_local").exists()
