"""Users of a user pool on moto, signed in: what the API Gateway emulation's tests present to it."""

from typing import Any

TEST_USER_PASSWORD = "Correct-Horse-9-Battery"


def sign_in(cognito: Any, pool_id: str, client_id: str, email: str, *groups: str) -> dict[str, str]:
    """A new confirmed user in the pool and groups, signed in: its ID, access and refresh tokens."""
    cognito.admin_create_user(UserPoolId=pool_id, Username=email, MessageAction="SUPPRESS")
    cognito.admin_set_user_password(
        UserPoolId=pool_id, Username=email, Password=TEST_USER_PASSWORD, Permanent=True
    )
    for group in groups:
        cognito.admin_add_user_to_group(UserPoolId=pool_id, Username=email, GroupName=group)
    answer = cognito.initiate_auth(
        ClientId=client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": email, "PASSWORD": TEST_USER_PASSWORD},
    )
    return answer["AuthenticationResult"]
