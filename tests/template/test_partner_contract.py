"""The partner API's published description (docs/partner-openapi.yaml) and the template say the same."""

from typing import Any

from carebus_tooling.partner_openapi import PARTNER_SCOPE, partner_openapi_document

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def operations(paths: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in paths.items() for method in item if method in HTTP_METHODS}


def test_the_description_has_exactly_the_partner_api_routes(cfn):
    deployed = cfn["Resources"]["PartnerApi"]["Properties"]["Body"]["paths"]
    assert operations(partner_openapi_document()["paths"]) == operations(deployed)


def test_the_description_asks_for_the_scope_the_authorizer_checks_and_the_key(cfn):
    body = cfn["Resources"]["PartnerApi"]["Properties"]["Body"]
    checked = {
        scope
        for item in body["paths"].values()
        for operation in item.values()
        for requirement in operation["security"]
        for scope in requirement.get("CognitoAuthorizer", [])
    }
    assert checked == {PARTNER_SCOPE}
    document = partner_openapi_document()
    assert document["security"] == [{"PartnerAccessToken": [PARTNER_SCOPE], "PartnerApiKey": []}]
    key = document["components"]["securitySchemes"]["PartnerApiKey"]
    assert (key["in"], key["name"]) == ("header", body["components"]["securitySchemes"]["api_key"]["name"])


def test_the_scope_is_the_resource_servers_and_the_clearinghouse_clients(sam_template):
    resources = sam_template["Resources"]
    server = resources["PartnerResourceServer"]["Properties"]
    scopes = {f"{server['Identifier']}/{scope['ScopeName']}" for scope in server["Scopes"]}
    assert scopes == {PARTNER_SCOPE}
    assert resources["ClearinghousePartnerClient"]["Properties"]["AllowedOAuthScopes"] == [PARTNER_SCOPE]
    assert sam_template["Outputs"]["PartnerScope"]["Value"] == PARTNER_SCOPE


def test_every_refusal_the_gateway_answers_on_the_partner_api_is_described(cfn):
    responses = cfn["Resources"]["PartnerApi"]["Properties"]["Body"]["x-amazon-apigateway-gateway-responses"]
    for response_type in ("UNAUTHORIZED", "INVALID_API_KEY", "THROTTLED", "QUOTA_EXCEEDED"):
        status = responses[response_type]["statusCode"]
        for item in partner_openapi_document()["paths"].values():
            assert status in item["get"]["responses"], (response_type, status)


OUTBOUND_TYPES = {
    "AWS::Events::Connection",
    "AWS::Events::ApiDestination",
}


def test_the_outbound_integration_exists_only_once_an_endpoint_is_given(sam_template):
    resources = sam_template["Resources"]
    assert sam_template["Parameters"]["ClearinghouseEndpoint"]["Default"] == ""
    assert sam_template["Conditions"]["ClearinghouseEnabled"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ClearinghouseEndpoint"}, ""]}]
    }
    outbound = {
        logical_id
        for logical_id, resource in resources.items()
        if resource["Type"] in OUTBOUND_TYPES
        or "ClearinghouseDestination" in str(resource.get("Properties", {}))
        or "ClearinghouseDeadLetterQueue" in str(resource.get("Properties", {}))
        or logical_id == "ClearinghouseDeadLetterQueue"
    }
    assert outbound == {
        "ClearinghouseConnection",
        "ClearinghouseDestination",
        "ClearinghouseRuleRole",
        "ClearinghouseRule",
        "ClearinghouseDeadLetterQueue",
        "ClearinghouseDeadLetterQueuePolicy",
        "ClearinghouseDeadLetterQueueAlarm",
    }
    assert {logical_id: resources[logical_id].get("Condition") for logical_id in outbound} == dict.fromkeys(
        outbound, "ClearinghouseEnabled"
    )
    assert sam_template["Outputs"]["ClearinghouseDeadLetterQueueUrl"]["Condition"] == "ClearinghouseEnabled"


def test_no_secret_is_in_the_template_and_an_endpoint_needs_its_keys_secret(sam_template):
    auth = sam_template["Resources"]["ClearinghouseConnection"]["Properties"]["AuthParameters"]
    value = auth["ApiKeyAuthParameters"]["ApiKeyValue"]
    # A dynamic reference, resolved by CloudFormation at deploy time: the key is never a parameter value.
    assert value == {"Fn::Sub": "{{resolve:secretsmanager:${ClearinghouseApiKeySecret}:SecretString:apiKey}}"}
    [assertion] = sam_template["Rules"]["ClearinghouseNeedsAnApiKey"]["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ClearinghouseApiKeySecret"}, ""]}]}
    assert not any(parameter.get("NoEcho") for parameter in sam_template["Parameters"].values())


def test_the_push_carries_ids_and_totals_and_nothing_of_the_patient(sam_template):
    [target] = sam_template["Resources"]["ClearinghouseRule"]["Properties"]["Targets"]
    paths = target["InputTransformer"]["InputPathsMap"]
    assert set(paths) == {"eventId", "claimId", "encounterId", "lineCount", "totalCents", "announcedAt"}
    assert all(path.startswith("$.detail.") or path == "$.time" for path in paths.values())
    assert {"MaximumRetryAttempts", "MaximumEventAgeInSeconds"} <= set(target["RetryPolicy"])
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["ClearinghouseDeadLetterQueue", "Arn"]}}
