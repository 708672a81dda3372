"""The carebus CLI against one offline runtime: help, sign-in, submit, trace, where the stack is."""

import json
import stat
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cli_harness import (
    ACCEPTED,
    INVALID_EVENT,
    PHYSICIAN,
    SAMPLE_EVENT,
    STACK,
    Ran,
    assert_one_line_without_traceback,
    body_file,
    printed,
    signed_in_with,
    submitted,
)

from carebus_local.demo_users import DEMO_PASSWORD
from carebus_local.runtime import OfflineRuntime
from carebus_local.serve import free_ports
from carebus_testing import sample_body, wait_until

# Every command of this module reaches its own offline stack (tests/stack/conftest.py).
pytestmark = pytest.mark.usefixtures("carebus_home")


# ----- help ----------------------------------------------------------------------------------------------
def test_help_documents_the_exit_codes(carebus):
    ran = carebus("--help", stack=None)

    assert ran.code == 0
    for code in (
        "0  success",
        "1  the operation was refused",
        "2  usage error",
        "3  the stack cannot",
        "4  auth",
    ):
        assert code in ran.out


# ----- login ---------------------------------------------------------------------------------------------
def test_login_as_a_demo_role_keeps_the_id_token_readable_by_the_owner_only(carebus, carebus_home):
    ran = carebus("login", "--as", "physician")

    assert ran.code == 0, ran.err
    assert f"as {PHYSICIAN}" in ran.out
    sessions = carebus_home / "sessions.json"
    assert stat.S_IMODE(sessions.stat().st_mode) == 0o600
    [entry] = [
        value for key, value in json.loads(sessions.read_text()).items() if key.startswith(f"{STACK}@")
    ]
    assert entry["username"] == PHYSICIAN
    assert entry["idToken"].count(".") == 2  # a JWT


def test_login_with_a_username_and_password(carebus):
    ran = carebus("login", "--username", PHYSICIAN, "--password", DEMO_PASSWORD)

    assert ran.code == 0, ran.err


def test_login_asks_for_a_missing_password_without_echo(carebus, monkeypatch):
    prompts = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or DEMO_PASSWORD)

    ran = carebus("login", "--username", PHYSICIAN)

    assert ran.code == 0, ran.err
    assert prompts == [f"Password for {PHYSICIAN}: "]


def test_a_wrong_password_exits_4_with_one_line(carebus):
    ran = carebus("login", "--username", PHYSICIAN, "--password", "not-the-password")

    assert ran.code == 4
    assert_one_line_without_traceback(ran)
    assert "sign-in as" in ran.err


def test_login_needs_a_role_or_a_username(carebus):
    ran = carebus("login")

    assert ran.code == 2
    assert "--as" in ran.err


# ----- submit --------------------------------------------------------------------------------------------
def test_submit_an_api_event_file_uses_its_body(carebus):
    carebus("login", "--as", "physician")

    ran = carebus("submit", str(SAMPLE_EVENT))

    assert ran.code == 0, ran.err
    assert ACCEPTED.search(ran.out)


def test_submit_a_bare_body_twice_with_one_idempotency_key_answers_one_encounter(carebus, tmp_path):
    carebus("login", "--as", "physician")
    path = body_file(tmp_path)
    key = f"cli-{uuid.uuid4().hex}"

    first = submitted(carebus, path, "--idempotency-key", key)
    again = submitted(carebus, path, "--idempotency-key", key)

    assert first == again


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (None, "no such file"),
        ("{not json", "not JSON"),
        ("[1, 2, 3]", "not an encounter"),
        (json.dumps({"Records": []}), "not an encounter"),
        (json.dumps({"httpMethod": "POST", "body": "{broken"}), "not JSON"),
    ],
    ids=["missing", "not-json", "array", "sqs-event", "event-with-broken-body"],
)
def test_a_bad_file_is_a_usage_error_in_one_line(carebus, tmp_path, content, complaint):
    path = tmp_path / "encounter.json"
    if content is not None:
        path.write_text(content)

    ran = carebus("submit", str(path))

    assert ran.code == 2
    assert_one_line_without_traceback(ran)
    assert complaint in ran.err


def test_an_encounter_the_api_model_refuses_prints_the_gateway_problem(carebus):
    carebus("login", "--as", "physician")

    ran = carebus("submit", str(INVALID_EVENT))

    assert ran.code == 1
    assert ran.error_lines() == [
        "carebus: error: 400 The request is invalid: "
        "The body does not match the request schema (docs/openapi.yaml)",
        "  body: Does not match the request schema; API Gateway's model check names no field (gateway_model)",
    ]
    assert "Traceback" not in ran.err


def test_an_encounter_the_domain_rules_refuse_prints_each_field_error(carebus, tmp_path):
    carebus("login", "--as", "physician")
    body = sample_body()
    body["practitionerNpi"] = "1234567890"  # wrong check digit
    body["encounterDate"] = (datetime.now(UTC).date() + timedelta(days=30)).isoformat()

    ran = carebus("submit", str(body_file(tmp_path, body)))

    assert ran.code == 1
    first, *field_errors = ran.error_lines()
    assert first == "carebus: error: 400 The request is invalid: 2 fields failed validation"
    assert sorted(line.split(":")[0].strip() for line in field_errors) == ["encounterDate", "practitionerNpi"]
    assert "Traceback" not in ran.err


def test_submitting_without_a_session_exits_4(carebus, monkeypatch, tmp_path):
    monkeypatch.setenv("CAREBUS_HOME", str(tmp_path / "nobody"))

    ran = carebus("submit", str(SAMPLE_EVENT))

    assert ran.code == 4
    assert_one_line_without_traceback(ran)
    assert "carebus login" in ran.err


def test_a_token_the_api_refuses_exits_4(carebus, carebus_home):
    signed_in_with(carebus, carebus_home, idToken="eyJhbGciOiJub25lIn0.e30.not-signed")

    ran = carebus("submit", str(SAMPLE_EVENT))

    assert ran.code == 4
    assert_one_line_without_traceback(ran)
    assert "401" in ran.err


def test_an_expired_session_exits_4_before_calling_the_api(carebus, carebus_home):
    carebus("login", "--as", "physician")
    sessions = carebus_home / "sessions.json"
    stored = json.loads(sessions.read_text())
    for entry in stored.values():
        entry["expiresAt"] = "2000-01-01T00:00:00+00:00"
    sessions.write_text(json.dumps(stored))

    ran = carebus("submit", str(SAMPLE_EVENT))

    assert ran.code == 4
    assert "expired" in ran.err


# ----- trace ---------------------------------------------------------------------------------------------
def test_trace_shows_the_path_of_an_encounter_in_time_order(carebus, tmp_path):
    carebus("login", "--as", "physician")
    encounter_id = submitted(carebus, body_file(tmp_path))
    expected = ("event ClaimSubmitted", "event PrescriptionApprovalRequested", "approval workflow started")

    def traced() -> Ran | None:
        ran = carebus("trace", encounter_id)
        return ran if ran.code == 0 and all(step in ran.out for step in expected) else None

    out = wait_until(traced, 30, "the encounter's trace").out

    steps = ["API accepted", "published", "claim", "event ClaimSubmitted", "prescription", *expected]
    assert all(step in out for step in steps), out
    assert out.index("API accepted") < out.index("published") < out.index("event ClaimSubmitted")
    assert "+0.000 s" in out
    assert "Alex Sample" not in out  # the encounter's PHI never leaves its table


def test_trace_waits_for_the_steps_it_is_told_to_and_shows_the_approval_awaiting_a_pharmacist(
    carebus, tmp_path
):
    carebus("login", "--as", "physician")
    encounter_id = submitted(carebus, body_file(tmp_path))

    ran = carebus("trace", encounter_id, "--wait-for", "approval awaiting a pharmacist", "--timeout", "60")

    assert ran.code == 0, ran.out
    assert f"apr-rx-{encounter_id}-2 (expires " in ran.out
    assert "taskToken" not in ran.out


def test_trace_that_does_not_show_what_it_waits_for_in_time_exits_1_saying_what(carebus, tmp_path):
    carebus("login", "--as", "physician")
    encounter_id = submitted(carebus, body_file(tmp_path))

    ran = carebus("trace", encounter_id, "--wait-for", "a step that never happens", "--timeout", "1")

    assert ran.code == 1
    assert "API accepted" in ran.out
    assert "still no 'a step that never happens' after 1 s" in ran.out


def test_a_sample_with_a_given_number_of_procedures_is_billed_for_them(carebus):
    carebus("login", "--as", "physician")
    encounter_id = carebus("submit", "--sample", "--procedures", "3").out.splitlines()[-1]

    ran = carebus("trace", encounter_id, "--wait-for", "event ClaimSubmitted")

    assert "lineCount=3" in ran.out


def test_procedures_without_the_sample_is_a_usage_error(carebus):
    ran = carebus("submit", str(SAMPLE_EVENT), "--procedures", "1")

    assert ran.code == 2
    assert "--sample" in ran.err


def test_trace_of_an_unknown_encounter_is_refused(carebus):
    ran = carebus("trace", str(uuid.uuid4()))

    assert ran.code == 1
    assert_one_line_without_traceback(ran)


def test_trace_of_something_that_is_no_encounter_id_is_a_usage_error(carebus):
    ran = carebus("trace", "not-an-id")

    assert ran.code == 2
    assert_one_line_without_traceback(ran)


# ----- where the stack is --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [("dlq", "list"), ("login", "--as", "physician"), ("trace", "5f51a656-9daa-559d-8d95-7aa5a75d9b03")],
    ids=["dlq", "login", "trace"],
)
def test_an_unreachable_stack_exits_3_with_one_line(carebus, argv):
    [closed_port] = free_ports("127.0.0.1", (0,))

    ran = carebus("--endpoint-url", f"http://127.0.0.1:{closed_port}", *argv, stack=None)

    assert ran.code == 3
    assert_one_line_without_traceback(ran)
    assert "carebus local up" in ran.err


def test_the_stack_options_may_follow_the_command(carebus):
    ran = carebus("dlq", "list", "--stack", STACK, stack=None)

    assert ran.code == 0, ran.err
    assert f"Dead-letter queues of {STACK}" in ran.out


def test_a_stack_that_does_not_exist_exits_3(carebus):
    ran = carebus("dlq", "list", stack="no-such-carebus-stack")

    assert ran.code == 3
    assert_one_line_without_traceback(ran)
    assert "no-such-carebus-stack" in ran.err


@pytest.fixture(scope="module")
def another_stack_name(runtime: OfflineRuntime) -> str:
    """A CloudFormation stack under another name whose outputs are the runtime's: only outputs matter."""
    name = f"{STACK}-alias"
    marker = {
        "Type": "AWS::SSM::Parameter",
        "Properties": {"Name": f"/{name}/alias", "Type": "String", "Value": "x"},
    }
    template = {
        "Resources": {"Marker": marker},
        "Outputs": {key: {"Value": str(value)} for key, value in runtime.stack.outputs.items()},
    }
    runtime.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
    return name


def test_the_commands_work_through_any_stack_with_the_outputs(carebus, another_stack_name, tmp_path):
    logged_in = carebus(
        "login", "--username", PHYSICIAN, "--password", DEMO_PASSWORD, stack=another_stack_name
    )
    accepted = ACCEPTED.search(carebus("submit", str(body_file(tmp_path)), stack=another_stack_name).out)
    assert accepted, "the submission failed"
    traced = carebus("trace", accepted.group(1), stack=another_stack_name)
    dead_letters = carebus("dlq", "list", stack=another_stack_name)

    assert logged_in.code == 0, logged_in.err
    assert f"Signed in to {another_stack_name}" in logged_in.out
    assert traced.code == 0, traced.err
    assert "API accepted" in traced.out
    assert dead_letters.code == 0, dead_letters.err
    assert f"Dead-letter queues of {another_stack_name}" in dead_letters.out


def test_the_lab_commands_find_every_resource_through_the_outputs(carebus, another_stack_name, runtime):
    # The alias's name is in no resource name: what they find, they found through its outputs.
    carebus("login", "--username", PHYSICIAN, "--password", DEMO_PASSWORD, stack=another_stack_name)
    encounter_id = printed(carebus("submit", "--sample", stack=another_stack_name).out)[-1]

    queues = carebus("queues", stack=another_stack_name)
    token = carebus("token", stack=another_stack_name)
    claimed = f" ClaimSubmitted carebus.billing encounterId={encounter_id} "
    # Waited for the event asserted below: the consumers finish in any order (billing may still be
    # retrying another test's poison message when scheduling has already announced).
    events = wait_until(
        lambda: ran if claimed in (ran := carebus("events", stack=another_stack_name)).out else None,
        30,
        "the encounter's claim event through the alias",
    )
    replay = carebus("replay", "--last", "1", stack=another_stack_name)

    assert queues.code == 0, queues.err
    assert runtime.stack.outputs["BillingQueueUrl"].rsplit("/", 1)[-1] in queues.out
    assert (token.code, replay.code) == (0, 0), token.err + replay.err
    assert claimed in events.out
    assert f"bus {runtime.stack.outputs['EventBusName']}" in replay.out
