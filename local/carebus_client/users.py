"""Staff users of a stack's user pool: created in a group with a password of the pool's policy."""

from collections.abc import Sequence
from dataclasses import dataclass

from botocore.client import BaseClient

from carebus_client.stacks import Stack, aws_errors


@dataclass(frozen=True)
class StaffUser:
    username: str
    subject: str  # the Cognito sub: the opaque id the API and the records know them by
    group: str


def create_user(stack: Stack, username: str, password: str, group: str) -> StaffUser:
    """A confirmed user of the stack's pool in one group (physicians, pharmacists)."""
    with aws_errors(stack.target):
        cognito, pool_id = stack.client("cognito-idp"), stack.output("UserPoolId")
        subject = add_pool_user(cognito, pool_id, username, password, [group])
    return StaffUser(username, subject, group)


def add_pool_user(
    cognito: BaseClient, pool_id: str, username: str, password: str, groups: Sequence[str]
) -> str:
    """A confirmed user with a verified email in the groups; its Cognito sub. The temporary password is
    given, not generated: a generated one may not meet the pool's policy (MiniStack's do not), and the
    user is set to the permanent password at once."""
    created = cognito.admin_create_user(
        UserPoolId=pool_id,
        Username=username,
        TemporaryPassword=password,
        MessageAction="SUPPRESS",
        UserAttributes=[{"Name": "email", "Value": username}, {"Name": "email_verified", "Value": "true"}],
    )["User"]
    cognito.admin_set_user_password(UserPoolId=pool_id, Username=username, Password=password, Permanent=True)
    for group in groups:
        cognito.admin_add_user_to_group(UserPoolId=pool_id, Username=username, GroupName=group)
    return next(attribute["Value"] for attribute in created["Attributes"] if attribute["Name"] == "sub")


def delete_user(stack: Stack, username: str) -> None:
    with aws_errors(stack.target):
        stack.client("cognito-idp").admin_delete_user(
            UserPoolId=stack.output("UserPoolId"), Username=username
        )
