"""The target stack, staff users on it, and waiting for the asynchronous parts of the flow."""

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from carebus_client.api import ApiClient
from carebus_client.e2e.targets import Capability, E2ETarget, offline_stack, target_from_environment
from carebus_client.stacks import Stack, sign_in
from carebus_client.users import StaffUser, create_user, delete_user
from carebus_client.waiting import wait_until

# A password of the pool's policy for the suite's own users, who are deleted afterwards.
PASSWORD = f"E2e-{uuid.uuid4().hex[:12]}-Aa1!"


@pytest.fixture(scope="session")
def e2e_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2ETarget]:
    named = target_from_environment()
    if named is not None:
        yield named
        return
    with offline_stack(tmp_path_factory.mktemp("offline-stack")) as started:
        yield started


@pytest.fixture(scope="session")
def stack(e2e_target: E2ETarget) -> Stack:
    return Stack.find(e2e_target.target)


@pytest.fixture
def needs(e2e_target: E2ETarget) -> Callable[[Capability], None]:
    """Skip the check, saying why, when the target cannot show what it needs."""

    def check(capability: Capability) -> None:
        missing = e2e_target.lacks(capability)
        if missing:
            pytest.skip(f"{e2e_target.kind} lacks {capability.name}: {missing}")

    return check


@pytest.fixture(scope="session")
def staff(stack: Stack) -> Iterator[dict[str, StaffUser]]:
    run = uuid.uuid4().hex[:8]
    users = {
        role: create_user(stack, f"e2e-{role}-{run}@carebus.test", PASSWORD, group)
        for role, group in (("physician", "physicians"), ("pharmacist", "pharmacists"))
    }
    yield users
    for user in users.values():
        delete_user(stack, user.username)


@pytest.fixture(scope="session")
def physician(stack: Stack, staff: dict[str, StaffUser]) -> ApiClient:
    return stack.api(sign_in(stack, staff["physician"].username, PASSWORD))


@pytest.fixture(scope="session")
def pharmacist(stack: Stack, staff: dict[str, StaffUser]) -> ApiClient:
    return stack.api(sign_in(stack, staff["pharmacist"].username, PASSWORD))


def eventually(check: Callable[[], Any], what: str, seconds: float = 90) -> Any:
    """check() until it returns something truthy; its value. The flow after a 202 is asynchronous."""
    return wait_until(check, timeout=seconds, what=what, interval=0.5)
