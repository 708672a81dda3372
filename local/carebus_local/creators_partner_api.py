"""Creators of the partner API's identity and metering: app clients (with their OAuth 2.0 settings), resource
servers, user pool domains, API keys and usage plans.

The usage plans' API stages name the offline REST API ids (the provisioner's, not moto's: the REST APIs are
not created on moto), so the local API finds the plans that cover it by its own id and stage name.
"""

from typing import TYPE_CHECKING, Any

from carebus_local.stack import Provisioned

if TYPE_CHECKING:
    from carebus_local.creators import Creator
    from carebus_local.provision import Provisioner


def _api_key(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    request: dict[str, Any] = {
        "name": props.get("Name") or p.physical_name(logical_id, 128),
        # CloudFormation's default, as API Gateway's: a key is disabled unless the template says otherwise.
        "enabled": bool(props.get("Enabled", False)),
        "stageKeys": [
            {"restApiId": stage["RestApiId"], "stageName": stage["StageName"]}
            for stage in props.get("StageKeys", [])
        ],
    }
    for prop, name in (("Description", "description"), ("Value", "value"), ("CustomerId", "customerId")):
        if prop in props:
            request[name] = props[prop]
    if "GenerateDistinctId" in props:
        request["generateDistinctId"] = bool(props["GenerateDistinctId"])
    if "Tags" in props:
        request["tags"] = {tag["Key"]: tag["Value"] for tag in props["Tags"]}
    key = p.client("apigateway").create_api_key(**request)
    return Provisioned(key["id"], {"APIKeyId": key["id"]})


def _throttle(props: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation ThrottleSettings as API Gateway's; numbers may come as text from parameters."""
    throttle: dict[str, Any] = {}
    if "RateLimit" in props:
        throttle["rateLimit"] = float(props["RateLimit"])
    if "BurstLimit" in props:
        throttle["burstLimit"] = int(props["BurstLimit"])
    return throttle


def _usage_plan(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    request: dict[str, Any] = {"name": props.get("UsagePlanName") or p.physical_name(logical_id, 128)}
    if "Description" in props:
        request["description"] = props["Description"]
    stages = []
    for stage in props.get("ApiStages", []):
        entry: dict[str, Any] = {"apiId": stage["ApiId"], "stage": stage["Stage"]}
        if "Throttle" in stage:
            entry["throttle"] = {method: _throttle(limits) for method, limits in stage["Throttle"].items()}
        stages.append(entry)
    request["apiStages"] = stages
    if "Throttle" in props:
        request["throttle"] = _throttle(props["Throttle"])
    if "Quota" in props:
        quota = props["Quota"]
        request["quota"] = {
            "limit": int(quota["Limit"]),
            "period": quota["Period"],
            **({"offset": int(quota["Offset"])} if "Offset" in quota else {}),
        }
    if "Tags" in props:
        request["tags"] = {tag["Key"]: tag["Value"] for tag in props["Tags"]}
    plan = p.client("apigateway").create_usage_plan(**request)
    return Provisioned(plan["id"], {"Id": plan["id"]})


def _usage_plan_key(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    key = p.client("apigateway").create_usage_plan_key(
        usagePlanId=props["UsagePlanId"], keyId=props["KeyId"], keyType=props["KeyType"]
    )
    return Provisioned(key["id"], {"Id": key["id"]})


def _user_pool_client(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    """An app client, its OAuth 2.0 settings included: the offline token endpoint checks a client
    credentials request against them (oauth_tokens.py)."""
    request = {
        name: props[name]
        for name in (
            "ExplicitAuthFlows",
            "GenerateSecret",
            "PreventUserExistenceErrors",
            "EnableTokenRevocation",
            "AccessTokenValidity",
            "IdTokenValidity",
            "RefreshTokenValidity",
            "TokenValidityUnits",
            "AllowedOAuthFlows",
            "AllowedOAuthScopes",
            "AllowedOAuthFlowsUserPoolClient",
            "SupportedIdentityProviders",
            "CallbackURLs",
        )
        if name in props
    }
    client = p.client("cognito-idp").create_user_pool_client(
        UserPoolId=props["UserPoolId"], ClientName=props.get("ClientName", logical_id), **request
    )["UserPoolClient"]
    return Provisioned(client["ClientId"], {"ClientSecret": client.get("ClientSecret", "")})


def _resource_server(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    p.client("cognito-idp").create_resource_server(
        UserPoolId=props["UserPoolId"],
        Identifier=props["Identifier"],
        Name=props["Name"],
        Scopes=props.get("Scopes", []),
    )
    return Provisioned(props["Identifier"])


def _user_pool_domain(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    request: dict[str, Any] = {"Domain": props["Domain"], "UserPoolId": props["UserPoolId"]}
    for name in ("CustomDomainConfig", "ManagedLoginVersion"):
        if name in props:
            request[name] = props[name]
    answer = p.client("cognito-idp").create_user_pool_domain(**request)
    return Provisioned(props["Domain"], {"CloudFrontDistribution": answer.get("CloudFrontDomain", "")})


PARTNER_API_CREATORS: dict[str, "Creator"] = {
    "AWS::ApiGateway::ApiKey": _api_key,
    "AWS::ApiGateway::UsagePlan": _usage_plan,
    "AWS::ApiGateway::UsagePlanKey": _usage_plan_key,
    "AWS::Cognito::UserPoolClient": _user_pool_client,
    "AWS::Cognito::UserPoolResourceServer": _resource_server,
    "AWS::Cognito::UserPoolDomain": _user_pool_domain,
}
