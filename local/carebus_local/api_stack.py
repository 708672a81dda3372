"""The stack's REST APIs and token endpoint on the runtime's one API port: where each is served, the outputs
that name them, and the router that serves them (api_router.py).

On AWS an output names an API as https://{api-id}.execute-api.{region}.amazonaws.com/{stage} and a user pool
domain's token endpoint as https://{domain}.auth.{region}.amazoncognito.com/oauth2/token. Offline, the API
with no base path is at {api_url}/{stage}, another at {api_url}/{base path}/{stage} (a path prefix standing
in for its own host), and the token endpoint at {api_url}/oauth2/token: every output that names one of
these AWS URLs names the local one instead.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.client import BaseClient

from carebus_local.api_router import ApiRouter
from carebus_local.apigateway import Invoke, LocalRestApi
from carebus_local.cognito import CognitoVerifier
from carebus_local.oauth_tokens import TOKEN_PATH, TokenEndpoint
from carebus_local.stack import ACCOUNT_ID, OfflineStack, UnsupportedResourceError
from carebus_local.usage_plans import UsagePlanMeter


@dataclass(frozen=True)
class ServedApi:
    """One REST API stage of the stack and the base path it is served under ("" at the root)."""

    logical_id: str
    api_id: str
    stage: str
    base_path: str
    body: dict[str, Any]


def served_apis(stack: OfflineStack, base_paths: Mapping[str, str]) -> list[ServedApi]:
    """Each REST API's stage and base path; exactly one API is at the root. A base path for an API the
    template lacks is ignored (the defaults name PartnerApi; another template may have none)."""
    apis = []
    for logical_id, api in stack.rest_apis.items():
        if len(api["stages"]) != 1:
            raise UnsupportedResourceError(f"{logical_id}: offline, a REST API has exactly one stage")
        apis.append(
            ServedApi(logical_id, api["id"], api["stages"][0], base_paths.get(logical_id, ""), api["body"])
        )
    at_root = [api.logical_id for api in apis if not api.base_path]
    if len(at_root) != 1:
        raise ValueError(f"exactly one REST API is served at the root, not {at_root}: see api_base_paths")
    taken = [api.base_path for api in apis]
    if len(set(taken)) != len(taken):
        raise ValueError(f"two REST APIs share a base path: {taken}")
    return apis


def user_pool_domain(stack: OfflineStack) -> str | None:
    """The stack's user pool domain, whose token endpoint the runtime serves; at most one offline."""
    domains = [stack.ref(logical_id) for logical_id in stack.created("AWS::Cognito::UserPoolDomain")]
    if len(domains) > 1:
        raise UnsupportedResourceError(f"offline, a stack has at most one user pool domain, not {domains}")
    return domains[0] if domains else None


def local_outputs(stack: OfflineStack, api_url: str, base_paths: Mapping[str, str]) -> dict[str, Any]:
    """The stack's outputs, each AWS URL of an API stage or of the token endpoint made the local one."""
    local = {
        f"https://{api.api_id}.execute-api.{stack.region}.amazonaws.com/{api.stage}": (
            f"{api_url}{'/' + api.base_path if api.base_path else ''}/{api.stage}"
        )
        for api in served_apis(stack, base_paths)
    }
    domain = user_pool_domain(stack)
    if domain is not None:
        local[f"https://{domain}.auth.{stack.region}.amazoncognito.com{TOKEN_PATH}"] = (
            f"{api_url}{TOKEN_PATH}"
        )
    return {
        name: local.get(value, value) if isinstance(value, str) else value
        for name, value in stack.outputs.items()
    }


def api_router(
    stack: OfflineStack,
    base_paths: Mapping[str, str],
    invoke: Invoke,
    client: Callable[[str], BaseClient],
    endpoint_url: str,
) -> tuple[ApiRouter, dict[str, LocalRestApi]]:
    """The router over every REST API of the stack (and its token endpoint), and each API by logical id.
    client: a boto3 client of the local endpoint by service name."""
    cognito_idp = client("cognito-idp")
    verifier = CognitoVerifier(cognito_idp, endpoint_url, stack.region)
    # One meter for every API: a key's counters are its usage plan's, whichever API it calls.
    meter = UsagePlanMeter(client("apigateway"))
    apis = {
        api.logical_id: LocalRestApi(
            body=api.body,
            stage=api.stage,
            api_id=api.api_id,
            region=stack.region,
            account_id=ACCOUNT_ID,
            invoke=invoke,
            verifier=verifier,
            usage_plans=meter,
        )
        for api in served_apis(stack, base_paths)
    }
    domain = user_pool_domain(stack)
    token_endpoint = TokenEndpoint(cognito_idp, domain, stack.region) if domain is not None else None
    by_base_path = {api.base_path: apis[api.logical_id] for api in served_apis(stack, base_paths)}
    return ApiRouter(by_base_path, token_endpoint), apis
