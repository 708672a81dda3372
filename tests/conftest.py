"""Fixtures shared by every level: the template, a fresh moto stack built from it, and its functions."""

import functools
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
from carebus_local.moto_caches import make_moto_cheaper  # noqa: E402
from carebus_local.provision import Provisioner  # noqa: E402
from carebus_local.stack import OfflineStack  # noqa: E402
from carebus_local.template import load_template, translate  # noqa: E402
from carebus_testing import StackDriver, stop_running_executions  # noqa: E402


def _validate_each_state_machine_definition_once() -> None:
    """moto validates a definition by parsing it with ANTLR at every CreateStateMachine: about half of a
    stack's provisioning, for the same few definitions in every test. The validation is pure (text in,
    nothing kept), so a definition that passed once passes again; one that fails is validated, and
    refused, every time."""
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    validate = StepFunctionsParserBackend._validate_definition
    valid: set[str] = set()

    @functools.wraps(validate)
    def validate_once(definition: str) -> None:
        if definition not in valid:
            validate(definition)
            valid.add(definition)

    StepFunctionsParserBackend._validate_definition = staticmethod(validate_once)  # type: ignore[method-assign]


# Tests see AWS's behaviour where moto is more lenient (task tokens work once, atomic DynamoDB requests).
make_moto_behave_like_aws()
# Provisioning each test's stack spends no time re-validating the template's state machine, and moto
# parses each definition and path expression once, as the offline stack's moto process does.
_validate_each_state_machine_definition_once()
make_moto_cheaper()
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
# Every test's stack is provisioned through the same boto3 clients: made once, they cost a third of a
# provisioning each time otherwise. mock_aws intercepts them whenever it is active (they are made after
# moto is imported, above), and each test's mock_aws starts from empty backends all the same.
_PROVISIONING_CLIENTS: dict[str, Any] = {}


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
        provisioned = Provisioner(
            cfn, sam_template, parameters=stack_parameters, clients=_PROVISIONING_CLIENTS
        ).provision()
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


# The levels that run a whole stack (a server, the CLI, minutes of work between them): they start first, so
# that on a few workers the suite does not end waiting for one of them started last.
_WHOLE_STACK_LEVELS = ("tests/stack/", "local/carebus_client/e2e/")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """For `pytest -n N --dist loadgroup --no-loadscope-reorder` (make test): a test module runs on one
    worker (its module fixtures are set up once), unless a test names a group of its own (each lab does:
    they share nothing); the whole-stack levels are handed out first."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
    items.sort(key=lambda item: not item.nodeid.startswith(_WHOLE_STACK_LEVELS))


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
