"""Fixtures of the API Gateway emulation's tests: a moto server per test module, the template on it."""

import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from moto.server import ThreadedMotoServer
from pool_users import sign_in

from carebus_local.provision import Provisioner
from carebus_local.stack import OfflineStack

REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    yield url
    # The server shares moto's in-process backends: leave them empty for whatever runs next.
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))  # noqa: S310
    server.stop()


@pytest.fixture(scope="module")
def local_stack_parameters() -> dict[str, str]:
    """Template parameters of the module's stack; a module overrides this fixture to change them."""
    return {}


@pytest.fixture(scope="module")
def offline_stack(
    cfn: dict[str, Any], sam_template: dict[str, Any], moto_url: str, local_stack_parameters: dict[str, str]
) -> OfflineStack:
    return Provisioner(
        cfn, sam_template, parameters=local_stack_parameters, endpoint_url=moto_url
    ).provision()


@pytest.fixture(scope="module")
def cognito(moto_url: str) -> BaseClient:
    return boto3.client("cognito-idp", region_name=REGION, endpoint_url=moto_url)


@pytest.fixture(scope="module")
def physician(cognito: BaseClient, offline_stack: OfflineStack) -> dict[str, str]:
    """A signed-in physician: ID, access and refresh tokens of the staff app client."""
    pool, client = offline_stack.ref("UserPool"), offline_stack.ref("UserPoolClient")
    return sign_in(cognito, pool, client, "physician@example.org", "physicians")
