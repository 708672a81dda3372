"""The security settings of issue 9, proven over template.yaml, its translation and samconfig.toml.

Traces carry no responses or errors; staff sign in with a TOTP second factor (required in prod); Cognito
threat protection and the WAF web ACL are behind parameters and on in prod only; the API speaks TLS 1.3
only; every function's environment is encrypted with the stack key its role may decrypt with; every
checkov skip says why. `make checkov` runs checkov itself (a gate of `make test`).
"""

import fnmatch
import shlex
import tomllib
from typing import Any

import pytest
from aws_lambda_powertools.shared import constants
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

from carebus.adapters.api import MAX_BODY_BYTES
from carebus_local.template import PROJECT_ROOT

STACK_KEY_ARN = {"Fn::GetAtt": ["CarebusKey", "Arn"]}
WEB_ACL = "CarebusApiWebAcl"
# Each web ACL association and the REST API whose stage it guards.
WEB_ACL_ASSOCIATIONS = {
    "CarebusApiWebAclAssociation": "CarebusApi",
    "PartnerApiWebAclAssociation": "PartnerApi",
}
# AWSManagedRulesCommonRuleSet's SizeRestrictions_BODY blocks bodies over 8 KB.
COMMON_RULE_SET_BODY_LIMIT = 8 * 1024
PROD = "prod"
# The config environments that must stay without the paid protections: the rehearsal's engine has no
# WebACLAssociation, and dev stacks sign in the end-to-end suite's users without an authenticator.
NOT_PROD = ("default", "dev", "rehearsal")


@pytest.fixture
def sam(sam_template: dict[str, Any]) -> dict[str, Any]:
    """template.yaml as written (the SAM template), short-form tags expanded."""
    return sam_template


def parameter_overrides(config_env: str) -> dict[str, str]:
    config = tomllib.loads((PROJECT_ROOT / "samconfig.toml").read_text())
    overrides = config[config_env]["deploy"]["parameters"].get("parameter_overrides", "")
    return dict(item.split("=", 1) for item in shlex.split(overrides))


def effective(sam: dict[str, Any], config_env: str, parameter: str) -> str:
    """The value a `sam deploy --config-env` gives a parameter: its override, else its default."""
    return parameter_overrides(config_env).get(parameter, str(sam["Parameters"][parameter]["Default"]))


def props(cfn: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return cfn["Resources"][logical_id].get("Properties", {})


def of_type(cfn: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {lid: resource for lid, resource in cfn["Resources"].items() if resource["Type"] == resource_type}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ----- traces -------------------------------------------------------------------------------------
def test_traces_record_neither_responses_nor_errors(sam, cfn):
    variables = sam["Globals"]["Function"]["Environment"]["Variables"]
    # The names are the ones the installed Powertools reads, and their values turn capture off.
    for name in (constants.TRACER_CAPTURE_RESPONSE_ENV, constants.TRACER_CAPTURE_ERROR_ENV):
        assert resolve_truthy_env_var_choice(env=variables[name]) is False, name
    # No function sets them back.
    for lid, function in of_type(cfn, "AWS::Lambda::Function").items():
        environment = function["Properties"]["Environment"]["Variables"]
        assert environment[constants.TRACER_CAPTURE_RESPONSE_ENV] == "false", lid
        assert environment[constants.TRACER_CAPTURE_ERROR_ENV] == "false", lid


# ----- staff sign-in ------------------------------------------------------------------------------
def test_staff_mfa_is_a_totp_app_optional_by_default_and_required_in_prod(sam, cfn):
    parameter = sam["Parameters"]["StaffMfa"]
    assert parameter["Default"] == "OPTIONAL"
    assert set(parameter["AllowedValues"]) == {"OPTIONAL", "ON"}
    pool = props(cfn, "UserPool")
    assert pool["MfaConfiguration"] == {"Ref": "StaffMfa"}
    assert pool["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
    assert effective(sam, PROD, "StaffMfa") == "ON"
    for config_env in NOT_PROD:
        assert effective(sam, config_env, "StaffMfa") == "OPTIONAL", config_env


def test_threat_protection_enforces_on_the_plus_plan_only_when_enabled_and_is_on_in_prod(sam, cfn):
    assert sam["Parameters"]["EnableThreatProtection"]["Default"] == "false"
    assert cfn["Conditions"]["ThreatProtectionEnabled"] == {
        "Fn::Equals": [{"Ref": "EnableThreatProtection"}, "true"]
    }
    pool = props(cfn, "UserPool")
    # Off, the pool is named Essentials (not left on Plus by an earlier deploy).
    assert pool["UserPoolTier"] == {"Fn::If": ["ThreatProtectionEnabled", "PLUS", "ESSENTIALS"]}
    assert pool["UserPoolAddOns"] == {
        "Fn::If": ["ThreatProtectionEnabled", {"AdvancedSecurityMode": "ENFORCED"}, {"Ref": "AWS::NoValue"}]
    }
    assert effective(sam, PROD, "EnableThreatProtection") == "true"
    for config_env in NOT_PROD:
        assert effective(sam, config_env, "EnableThreatProtection") == "false", config_env


# ----- the web ACL --------------------------------------------------------------------------------
def test_the_web_acl_and_its_association_exist_only_where_waf_is_enabled_and_it_is_in_prod(sam, cfn):
    assert sam["Parameters"]["EnableWaf"]["Default"] == "false"
    assert cfn["Conditions"]["WafEnabled"] == {"Fn::Equals": [{"Ref": "EnableWaf"}, "true"]}
    waf_resources = {
        lid for lid, resource in cfn["Resources"].items() if resource["Type"].startswith("AWS::WAFv2::")
    }
    assert waf_resources == {WEB_ACL, *WEB_ACL_ASSOCIATIONS}
    assert {cfn["Resources"][lid].get("Condition") for lid in waf_resources} == {"WafEnabled"}
    assert effective(sam, PROD, "EnableWaf") == "true"
    for config_env in NOT_PROD:
        assert effective(sam, config_env, "EnableWaf") == "false", config_env


def test_the_web_acl_allows_by_default_and_runs_the_common_rules_then_a_rate_limit(cfn):
    acl = props(cfn, WEB_ACL)
    assert acl["Scope"] == "REGIONAL"
    assert acl["DefaultAction"] == {"Allow": {}}
    common, rate = sorted(acl["Rules"], key=lambda rule: rule["Priority"])

    group = common["Statement"]["ManagedRuleGroupStatement"]
    assert (group["VendorName"], group["Name"]) == ("AWS", "AWSManagedRulesCommonRuleSet")
    assert common["OverrideAction"] == {"None": {}}

    limit = rate["Statement"]["RateBasedStatement"]
    assert limit == {"Limit": {"Ref": "WafRateLimit"}, "AggregateKeyType": "IP"}
    response = rate["Action"]["Block"]["CustomResponse"]
    assert response["ResponseCode"] == 429
    body = acl["CustomResponseBodies"][response["CustomResponseBodyKey"]]
    assert body["ContentType"] == "APPLICATION_JSON"
    assert '"status":429' in body["Content"]


def test_the_common_rules_only_count_bodies_the_api_accepts(cfn):
    # Encounters up to the API's own limit are valid: the rule set's 8 KB body limit must not block them.
    assert MAX_BODY_BYTES > COMMON_RULE_SET_BODY_LIMIT
    [common] = [
        rule for rule in props(cfn, WEB_ACL)["Rules"] if "ManagedRuleGroupStatement" in rule["Statement"]
    ]
    overrides = common["Statement"]["ManagedRuleGroupStatement"]["RuleActionOverrides"]
    assert {"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}} in overrides


def test_every_web_acl_metric_is_published_and_no_request_is_sampled(cfn):
    # A sampled request shows its headers in the console: staff ID tokens among them.
    acl = props(cfn, WEB_ACL)
    configs = [acl["VisibilityConfig"], *(rule["VisibilityConfig"] for rule in acl["Rules"])]
    for config in configs:
        assert config["CloudWatchMetricsEnabled"] is True
        assert config["SampledRequestsEnabled"] is False
        assert config["MetricName"]
    assert len({str(config["MetricName"]) for config in configs}) == len(configs)


def test_the_associations_put_the_web_acl_in_front_of_every_api_stage(cfn):
    stages = of_type(cfn, "AWS::ApiGateway::Stage")
    assert {stage["Properties"]["RestApiId"]["Ref"] for stage in stages.values()} == set(
        WEB_ACL_ASSOCIATIONS.values()
    )
    for association_id, api in WEB_ACL_ASSOCIATIONS.items():
        association = props(cfn, association_id)
        assert association["WebACLArn"] == {"Fn::GetAtt": [WEB_ACL, "Arn"]}
        [stage_id] = [
            lid for lid, stage in stages.items() if stage["Properties"]["RestApiId"] == {"Ref": api}
        ]
        # The stage by reference: the association waits for the stage, and follows it if it is renamed.
        assert association["ResourceArn"] == {
            "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}::"
            f"/restapis/${{{api}}}/stages/${{{stage_id}}}"
        }


# ----- TLS ----------------------------------------------------------------------------------------
def test_the_api_accepts_tls_1_3_only_and_checks_the_host_against_the_tls_connection(cfn):
    apis = of_type(cfn, "AWS::ApiGateway::RestApi")
    assert set(apis) == set(WEB_ACL_ASSOCIATIONS.values())
    for api in apis.values():
        assert api["Properties"]["SecurityPolicy"] == "SecurityPolicy_TLS13_1_3_2025_09"
        assert api["Properties"]["EndpointAccessMode"] == "STRICT"


# ----- function environments ----------------------------------------------------------------------
def test_every_function_environment_is_encrypted_with_the_stack_key_its_role_may_decrypt_with(cfn):
    functions = of_type(cfn, "AWS::Lambda::Function")
    assert functions
    for lid, function in functions.items():
        assert function["Properties"]["KmsKeyArn"] == STACK_KEY_ARN, lid
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        allowed = [
            statement
            for policy in props(cfn, role_id).get("Policies", [])
            for statement in as_list(policy["PolicyDocument"]["Statement"])
            if statement.get("Effect") == "Allow"
            and STACK_KEY_ARN in as_list(statement.get("Resource"))
            and any(fnmatch.fnmatchcase("kms:Decrypt", action) for action in as_list(statement["Action"]))
        ]
        # Without kms:Decrypt on the key the function fails at its first cold start.
        assert allowed, f"{lid}: its role {role_id} may not kms:Decrypt with the stack key"


# ----- checkov ------------------------------------------------------------------------------------
def _checkov_skips(sam: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (lid, skip)
        for lid, resource in sam["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]


def test_every_checkov_skip_names_a_check_and_says_why(sam):
    skips = _checkov_skips(sam)
    assert skips
    for lid, skip in skips:
        assert str(skip.get("id", "")).startswith("CKV"), lid
        assert len(str(skip.get("comment", ""))) >= 20, f"{lid}: skip of {skip.get('id')} gives no reason"


@pytest.mark.parametrize("check", ["CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_115"])
def test_each_function_level_skip_is_declared_on_every_function(sam, check):
    # One reason per kind of function, but on each one: a new function is checked until it says why too.
    functions = {lid for lid, r in sam["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    skipping = {lid for lid, skip in _checkov_skips(sam) if skip["id"] == check}
    assert skipping == functions
