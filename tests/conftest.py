"""Fixtures shared by every level: the template, a fresh moto stack built from it, and its functions."""

import gc
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Before anything creates a boto3 client: fake credentials, one region, no real endpoint, no X-Ray.
os.environ.update(
    AWS_DEFAULT_REGION="us-east-1",
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    POWERTOOLS_TRACE_DISABLED="true",
)
for leaking in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
    os.environ.pop(leaking, None)

from botocore.exceptions import ClientError  # noqa: E402
from moto import mock_aws  # noqa: E402 - after the environment above

from carebus_local.environments import isolate_powertools_process_state  # noqa: E402
from carebus_local.fidelity import make_moto_behave_like_aws  # noqa: E402
from carebus_local.functions import InProcessFunction  # noqa: E402
from carebus_local.provision import Provisioner  # noqa: E402
from carebus_local.stack import OfflineStack  # noqa: E402
from carebus_local.template import load_template, translate  # noqa: E402
from carebus_testing import StackDriver, stop_running_executions  # noqa: E402

# Tests see AWS's behaviour where moto is more lenient (task tokens work once, atomic DynamoDB requests).
make_moto_behave_like_aws()
# Threads standing for separate execution environments each get what Powertools keeps per process.
isolate_powertools_process_state()


@pytest.fixture(scope="session")
def sam_template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="session")
def cfn(sam_template: dict[str, Any]) -> dict[str, Any]:
    return translate(sam_template)


# moto runs state machine definitions for real (Wait states, timeouts and callbacks included).
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}}


@pytest.fixture
def stack_parameters() -> dict[str, str]:
    """Template parameters for the test's stack; override the fixture to change them."""
    return {}


@pytest.fixture
def stack(
    cfn: dict[str, Any], sam_template: dict[str, Any], stack_parameters: dict[str, str]
) -> Iterator[OfflineStack]:
    """A fresh stack per test: every resource of template.yaml, created on moto."""
    with mock_aws(config=MOTO_CONFIG):
        provisioned = Provisioner(cfn, sam_template, parameters=stack_parameters).provision()
        yield provisioned
        stop_running_executions(provisioned)


@pytest.fixture
def function(stack: OfflineStack) -> Callable[[str], InProcessFunction]:
    """A function of the stack by logical id, imported with the environment the template gives it."""
    loaded: dict[str, InProcessFunction] = {}

    def load(logical_id: str) -> InProcessFunction:
        if logical_id not in loaded:
            loaded[logical_id] = InProcessFunction(
                stack.functions[logical_id], stack.function_environment(logical_id)
            )
        return loaded[logical_id]

    return load


@pytest.fixture
def driver(stack: OfflineStack, function: Callable[[str], InProcessFunction]) -> StackDriver:
    return StackDriver(stack, function)


@pytest.fixture
def heartbeats(function: Callable[[str], InProcessFunction], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each heartbeat of the approval token consumer got back: "accepted" or the error code."""
    outcomes: list[str] = []
    client = function("ApprovalTokenFunction").module.stepfunctions
    real = client.send_task_heartbeat

    def heartbeat(**request: Any) -> Any:
        try:
            answer = real(**request)
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])
            raise
        outcomes.append("accepted")
        return answer

    monkeypatch.setattr(client, "send_task_heartbeat", heartbeat)
    return outcomes


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Collect the session's garbage now, while the tests' teardown is still reported, and set the
    survivors aside: pytest collects five more times after an xdist worker reports that it finished, and
    on a heap as large as many botocore models make it, that outlasts the 5 s execnet gives a finished
    worker before it interrupts it."""
    for _ in range(5):  # as many rounds as pytest would run
        if not gc.collect():
            break
    gc.freeze()
