"""`carebus local up` in a process of its own, and the demo: each starts an offline stack of its own."""

import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from cli_harness import PHYSICIAN, local_up

from carebus_cli.cli import main
from carebus_local.demo_users import DEMO_PASSWORD
from carebus_local.serve import free_ports


# ----- the offline stack and the demo --------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def carebus_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Sessions and handler logs in a temporary home; no runtime of the module's own: each test starts one."""
    home = tmp_path_factory.mktemp("carebus-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CAREBUS_HOME", str(home))
        patch.delenv("CAREBUS_ENDPOINT_URL", raising=False)
        yield home


def test_local_up_serves_until_ctrl_c_without_aws_credentials(tmp_path):
    aws_port, api_port = free_ports("127.0.0.1", (0, 0))
    env_json = tmp_path / "env.json"
    with local_up(
        tmp_path, "--port", str(aws_port), "--api-port", str(api_port), "--env-json", str(env_json)
    ) as up:
        login = main(["--endpoint-url", f"http://127.0.0.1:{aws_port}", "login", "--as", "pharmacist"])

    for expected in (f"127.0.0.1:{aws_port}", f"http://127.0.0.1:{api_port}/v1", DEMO_PASSWORD, PHYSICIAN):
        assert expected in up.startup
    assert "UserPoolClientId" in up.startup
    assert set(json.loads(env_json.read_text())) >= {"IntakeFunction", "BillingFunction"}
    assert login == 0


def test_local_up_takes_free_ports_parameters_and_lab_time_and_stops_on_sigterm(tmp_path):
    options = ("--port", "0", "--api-port", "0", "--env-json", str(tmp_path / "env.json"))
    options += ("--parameter-overrides", "LogRetentionInDays=7", "--retry-after", "2")
    with local_up(tmp_path, *options, stop_with=signal.SIGTERM) as up:
        endpoint = re.search(r"AWS endpoint\s+(http://127\.0\.0\.1:\d+)", up.startup)
        assert endpoint, up.startup
        logs = boto3.client(
            "logs",
            endpoint_url=endpoint[1],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        retention = {
            group["logGroupName"]: group.get("retentionInDays")
            for group in logs.describe_log_groups()["logGroups"]
            if "Intake" in group["logGroupName"]
        }

    assert re.search(r"REST API\s+http://127\.0\.0\.1:\d+/v1", up.startup)
    assert f"export CAREBUS_ENDPOINT_URL={endpoint[1]}" in up.startup
    assert "parameter     LogRetentionInDays=7" in up.startup
    assert "a failed message is retried after 2 s" in up.startup
    assert retention
    assert set(retention.values()) == {7}, retention


def test_local_up_refuses_a_parameter_override_that_is_not_name_equals_value(capsys):
    assert main(["local", "up", "--parameter-overrides", "LogRetentionInDays"]) == 2
    assert "Name=Value" in capsys.readouterr().err
