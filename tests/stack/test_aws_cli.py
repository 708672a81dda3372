"""The AWS CLI of the development environment (.venv/bin/aws, AWS CLI v1) against `carebus local up`, the
way the README and the labs use it: a shell pointed at the offline stack by environment variables."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import local_up, without_aws_configuration

from carebus_local.serve import free_ports

AWS = Path(sys.executable).parent / "aws"  # installed beside this interpreter by `pip install -e '.[dev]'`
PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(scope="module")
def endpoint_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`carebus local up` on free ports, as a lab runs it in a terminal of its own."""
    home = tmp_path_factory.mktemp("aws-cli")
    aws_port, api_port = free_ports("127.0.0.1", (0, 0))
    options = ("--port", str(aws_port), "--api-port", str(api_port), "--env-json", str(home / "env.json"))
    with local_up(home, *options) as up:
        assert "Serving until Ctrl-C" in up.startup, up.startup
        yield f"http://127.0.0.1:{aws_port}"


def shell_environment(endpoint_url: str, home: Path) -> dict[str, str]:
    """What a shell pointed at the offline stack has: the endpoint, a region, any credentials. No profile
    or config file of the developer's, and no proxy (the endpoint is on the loopback)."""
    environment = {
        name: value for name, value in without_aws_configuration().items() if name.upper() not in PROXIES
    }
    environment.update(
        AWS_ENDPOINT_URL=endpoint_url,
        # The AWS CLI v1 reads the region from AWS_DEFAULT_REGION only (v2 and other SDKs also AWS_REGION).
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_CONFIG_FILE=str(home / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-credentials"),
    )
    return environment


def aws(environment: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the venv's aws, fixed arguments
        [str(AWS), *argv], capture_output=True, text=True, env=environment, timeout=60, check=False
    )


def test_the_development_environment_has_the_aws_cli():
    assert AWS.exists(), "no aws beside this interpreter: run .venv/bin/pip install -e '.[dev]'"

    ran = aws(dict(os.environ), "--version")

    assert ran.returncode == 0, ran.stderr
    assert (ran.stdout + ran.stderr).startswith("aws-cli/1.")


def test_aws_sns_list_topics_reaches_the_offline_stack_through_the_environment(endpoint_url, tmp_path):
    ran = aws(shell_environment(endpoint_url, tmp_path), "sns", "list-topics", "--output", "json")

    assert ran.returncode == 0, ran.stderr
    topics = [topic["TopicArn"] for topic in json.loads(ran.stdout)["Topics"]]
    assert any(arn.endswith(":carebus-local-EncounterTopic") for arn in topics), topics


def test_aws_sqs_list_queues_reaches_the_offline_stack_with_endpoint_url(endpoint_url, tmp_path):
    environment = shell_environment(endpoint_url, tmp_path)

    ran = aws(environment, "--endpoint-url", endpoint_url, "sqs", "list-queues", "--output", "json")

    assert ran.returncode == 0, ran.stderr
    queues = json.loads(ran.stdout)["QueueUrls"]
    assert all(url.startswith(f"{endpoint_url}/") for url in queues), queues
    assert any(url.endswith("/carebus-local-billing-dlq") for url in queues), queues


def test_aws_sqs_in_us_east_1_ignores_aws_endpoint_url_so_the_docs_pass_endpoint_url(endpoint_url, tmp_path):
    # AWS CLI v1 sends `aws sqs` in us-east-1 to queue.amazonaws.com unless --endpoint-url is on the command
    # line (its overridesslcommonname customization; aws/aws-cli#8737). A proxy on a closed local port keeps
    # the request on this machine; --debug shows where it was going.
    environment = shell_environment(endpoint_url, tmp_path)
    [closed_port] = free_ports("127.0.0.1", (0,))
    environment.update(HTTPS_PROXY=f"http://127.0.0.1:{closed_port}", AWS_MAX_ATTEMPTS="1")

    ran = aws(environment, "--debug", "--cli-connect-timeout", "2", "sqs", "list-queues")

    assert ran.returncode != 0, (
        "aws sqs now honours AWS_ENDPOINT_URL: README.md and docs/offline.md can drop --endpoint-url for sqs"
    )
    assert "https://queue.amazonaws.com" in ran.stderr
