"""The security parameters on the offline stack: what it creates, what it refuses, and signing in with MFA.

The web ACL is off unless EnableWaf says otherwise, and moto has no WAFv2 to create it on; the pool gets
the template's MFA configuration, so a user with an authenticator app answers its code as on AWS.
"""

import base64
import time
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from moto import mock_aws

from carebus_client.errors import AuthenticationError
from carebus_client.stacks import Stack, Target, sign_in
from carebus_client.users import add_pool_user
from carebus_local.provision import Provisioner
from carebus_local.stack import OfflineStack, UnsupportedResourceError

USERNAME = "doctor@example.org"
PASSWORD = "Offline-Passw0rd-2026!"


def client_stack(stack: OfflineStack) -> Stack:
    """The client's view of the in-process stack (moto answers every call, no endpoint)."""
    return Stack(Target(stack.name, None, stack.region, offline=False), stack.outputs)


def current_code(secret: str) -> str:
    """What an authenticator app shows for a Cognito TOTP secret (base32, 6 digits, 30 s)."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=True)
    totp = TOTP(key, 6, SHA1(), 30, enforce_key_length=False)  # noqa: S303 - TOTP's hash (RFC 6238)
    return totp.generate(time.time()).decode()


def enrol_authenticator(stack: OfflineStack) -> str:
    """The user signs in, associates an authenticator app and makes it their MFA; the app's secret."""
    cognito = boto3.client("cognito-idp")
    tokens = cognito.initiate_auth(
        ClientId=stack.outputs["UserPoolClientId"],
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": USERNAME, "PASSWORD": PASSWORD},
    )["AuthenticationResult"]
    secret = cognito.associate_software_token(AccessToken=tokens["AccessToken"])["SecretCode"]
    cognito.verify_software_token(AccessToken=tokens["AccessToken"], UserCode=current_code(secret))
    cognito.set_user_mfa_preference(
        AccessToken=tokens["AccessToken"], SoftwareTokenMfaSettings={"Enabled": True, "PreferredMfa": True}
    )
    return secret


def test_the_web_acl_is_not_created_offline_and_asking_for_it_is_refused_by_name(
    cfn: dict[str, Any], sam_template: dict[str, Any]
):
    with mock_aws():
        stack = Provisioner(cfn, sam_template).provision()
        assert "CarebusApiWebAcl" not in stack.resources
        assert "CarebusApi" in stack.resources
        with pytest.raises(UnsupportedResourceError, match=r"AWS::WAFv2::WebACL\b.*WebACLAssociation"):
            Provisioner(
                cfn, sam_template, stack_name="with-waf", parameters={"EnableWaf": "true"}
            ).provision()


@pytest.fixture
def stack_parameters() -> dict[str, str]:
    return {"StaffMfa": "ON"}


def test_a_pool_that_requires_mfa_gets_the_totp_configuration_of_the_template(stack):
    config = boto3.client("cognito-idp").get_user_pool_mfa_config(UserPoolId=stack.outputs["UserPoolId"])

    assert config["MfaConfiguration"] == "ON"
    assert config["SoftwareTokenMfaConfiguration"] == {"Enabled": True}


def test_offline_a_user_without_an_authenticator_still_signs_in_where_aws_would_ask_to_enrol_one(stack):
    # moto's USER_PASSWORD_AUTH never answers MFA_SETUP: the offline stack's demo users keep working with
    # StaffMfa=ON, where AWS would first ask each of them to enrol an authenticator app.
    add_pool_user(
        boto3.client("cognito-idp"), stack.outputs["UserPoolId"], USERNAME, PASSWORD, ["physicians"]
    )

    assert sign_in(client_stack(stack), USERNAME, PASSWORD).id_token


def test_an_enrolled_user_signs_in_with_the_current_code_of_their_authenticator_app(stack, monkeypatch):
    monkeypatch.setenv("MOTO_COGNITO_IDP_USER_POOL_ENABLE_TOTP", "true")  # moto checks codes, as AWS does
    add_pool_user(
        boto3.client("cognito-idp"), stack.outputs["UserPoolId"], USERNAME, PASSWORD, ["physicians"]
    )
    secret = enrol_authenticator(stack)

    with pytest.raises(AuthenticationError, match="authenticator app"):
        sign_in(client_stack(stack), USERNAME, PASSWORD)
    wrong_code = f"{(int(current_code(secret)) + 1) % 1_000_000:06d}"
    with pytest.raises(AuthenticationError, match="failed"):
        sign_in(client_stack(stack), USERNAME, PASSWORD, mfa_code=wrong_code)
    assert sign_in(client_stack(stack), USERNAME, PASSWORD, mfa_code=current_code(secret)).id_token
