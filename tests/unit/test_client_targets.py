"""Which stack and which API the client talks to."""

from datetime import UTC, datetime

from carebus_client.stacks import DEFAULT_STACK_NAME, SignedIn, Stack, Target

SIGNED_IN = SignedIn("someone", "id-token", datetime.max.replace(tzinfo=UTC))
OUTPUTS = {"ApiUrl": "https://abc123.execute-api.us-east-1.amazonaws.com/v1"}


def test_the_api_is_the_stacks_api_url_output_by_default(monkeypatch):
    monkeypatch.delenv("CAREBUS_API_URL", raising=False)

    api = Stack(Target.select(), OUTPUTS).api(SIGNED_IN)

    assert api.api_url == OUTPUTS["ApiUrl"]


def test_an_api_url_given_or_in_the_environment_overrides_the_output(monkeypatch):
    emulated = "http://127.0.0.1:4567/_aws/execute-api/abc123/v1"
    monkeypatch.setenv("CAREBUS_API_URL", emulated)

    from_environment = Stack(Target.select("carebus-rehearsal", region="us-east-1"), OUTPUTS).api(SIGNED_IN)
    given = Stack(Target.select(api_url="https://api.example.org/v1"), OUTPUTS).api(SIGNED_IN)

    assert from_environment.api_url == emulated
    assert given.api_url == "https://api.example.org/v1"


def test_without_a_stack_name_the_target_is_the_offline_stack(monkeypatch):
    monkeypatch.delenv("CAREBUS_ENDPOINT_URL", raising=False)

    target = Target.select()

    assert (target.stack_name, target.offline, target.endpoint_url) == (
        DEFAULT_STACK_NAME,
        True,
        "http://127.0.0.1:4566",
    )
