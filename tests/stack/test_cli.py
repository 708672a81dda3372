"""The carebus CLI, run in-process through main(argv) against one offline runtime: sign-in, submit,
trace, approvals, dead-letter queues, its errors and exit codes, `--stack`, `local up` and the demo."""

import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from carebus_cli.cli import main
from carebus_client.samples import full_encounter
from carebus_local.runtime import DEMO_PASSWORD, DEMO_USERS, OfflineRuntime, RuntimeOptions
from carebus_local.serve import free_ports
from carebus_testing import EVENTS_DIR, sample_body, wait_until

STACK = f"carebus-cli-{uuid.uuid4().hex[:6]}"
SAMPLE_EVENT = EVENTS_DIR / "intake" / "submit_encounter.json"
INVALID_EVENT = EVENTS_DIR / "intake" / "submit_invalid_encounter.json"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# What `submit` prints; stdout also carries what the handlers print (logs with their own ids).
ACCEPTED = re.compile(rf"Encounter ({UUID}) ACCEPTED")
PHYSICIAN, _ = DEMO_USERS["physician"]


@pytest.fixture(scope="module")
def runtime() -> Iterator[OfflineRuntime]:
    aws_port, api_port = free_ports("127.0.0.1", (0, 0))
    started = OfflineRuntime(
        RuntimeOptions(aws_port=aws_port, api_port=api_port, stack_name=STACK, retry_failed_after_seconds=0)
    ).start()
    # Imported now, each handler's logger writes to the session's output, not to one test's capsys.
    for function in started.functions.values():
        function.warm()
    yield started
    started.stop()


@pytest.fixture(scope="module", autouse=True)
def carebus_home(runtime: OfflineRuntime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Sessions in a temporary home; every command reaches the runtime through CAREBUS_ENDPOINT_URL."""
    home = tmp_path_factory.mktemp("carebus-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CAREBUS_HOME", str(home))
        patch.setenv("CAREBUS_ENDPOINT_URL", runtime.endpoint_url)
        yield home


@dataclass
class Ran:
    """What one command did: its exit code and what it wrote."""

    code: int
    out: str
    err: str

    def error_lines(self) -> list[str]:
        return self.err.splitlines()


Cli = Callable[..., Ran]


@pytest.fixture
def carebus(capsys: pytest.CaptureFixture[str]) -> Cli:
    """`carebus ARGS...` in-process, against the runtime's stack.

    Its name is unique to this module (the demo's runtime shares this process's moto state), so commands
    name it with --stack; without it they would look for carebus-local on CAREBUS_ENDPOINT_URL.
    """

    def run(*argv: str, stack: str | None = STACK) -> Ran:
        code = main([*(["--stack", stack] if stack else []), *argv])
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run


def submitted(carebus: Cli, path: Path, *options: str) -> str:
    ran = carebus("submit", str(path), *options)
    assert ran.code == 0, ran.err
    match = ACCEPTED.search(ran.out)
    assert match, ran.out
    return match.group(1)


def body_file(tmp_path: Path, body: dict[str, Any] | None = None) -> Path:
    path = tmp_path / f"encounter-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(body or sample_body()))
    return path


def assert_one_line_without_traceback(ran: Ran) -> None:
    assert len(ran.error_lines()) == 1, ran.err
    assert ran.err.startswith("carebus: error: ")
    assert "Traceback" not in ran.err


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


def signed_in_with(carebus: Cli, home: Path, **changes: str) -> None:
    """Signed in as the physician, then the stored session changed (a token forged, an expiry passed)."""
    carebus("login", "--as", "physician")
    sessions = home / "sessions.json"
    stored = json.loads(sessions.read_text())
    for entry in stored.values():
        entry.update(changes)
    sessions.write_text(json.dumps(stored))


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


# ----- approvals -----------------------------------------------------------------------------------------
def pending_approval_id(carebus: Cli, tmp_path: Path) -> str:
    """Submit the sample body (one controlled prescription) and wait until a pharmacist can decide it."""
    carebus("login", "--as", "physician")
    encounter_id = submitted(carebus, body_file(tmp_path))
    carebus("login", "--as", "pharmacist")
    approval = re.compile(rf"apr-rx-{encounter_id}-\d+")

    def listed() -> str | None:
        match = approval.search(carebus("approvals", "list").out)
        return match.group(0) if match else None

    return wait_until(listed, 30, "the approval to be pending")


def decided(carebus: Cli, *argv: str) -> Ran:
    """A decision, retried while the workflow has not yet handed over its wait (409, still pending)."""

    def attempt() -> Ran | None:
        ran = carebus("approvals", *argv)
        return None if ran.code == 1 and "not ready" in ran.err else ran

    return wait_until(attempt, 30, "the approval to become decidable")


def test_a_pharmacist_lists_shows_and_approves(carebus, tmp_path):
    approval_id = pending_approval_id(carebus, tmp_path)

    shown = carebus("approvals", "show", approval_id)
    approved = decided(carebus, "approve", approval_id)
    again = carebus("approvals", "approve", approval_id)
    contradicted = carebus("approvals", "reject", approval_id, "--reason", "changed my mind")

    assert shown.code == 0
    assert all(field in shown.out for field in ("drug", "deaSchedule", "PENDING"))
    assert approved.code == 0, approved.err
    assert f"{approval_id} APPROVED" in approved.out
    # Sending the same decision again is safe: it is answered as it stands.
    assert again.code == 0
    assert again.out.splitlines()[-1] == approved.out.splitlines()[-1]
    assert contradicted.code == 1
    assert contradicted.error_lines()[0].startswith("carebus: error: 409 ")
    listed = wait_until(
        lambda: (
            (ran := carebus("approvals", "list", "--status", "APPROVED")).code == 0
            and approval_id in ran.out
            and ran
        ),
        10,
        "the approval to be listed as approved",
    )
    assert approval_id in listed.out


def test_a_pharmacist_rejects_with_a_reason(carebus, tmp_path):
    approval_id = pending_approval_id(carebus, tmp_path)

    rejected = decided(carebus, "reject", approval_id, "--reason", "duplicate therapy")

    assert rejected.code == 0, rejected.err
    assert f"{approval_id} REJECTED" in rejected.out


def test_a_rejection_without_a_reason_is_a_usage_error(carebus):
    ran = carebus("approvals", "reject", "apr-rx-anything-1")

    assert ran.code == 2
    assert "--reason" in ran.err


def test_a_physician_may_not_list_approvals(carebus):
    carebus("login", "--as", "physician")

    ran = carebus("approvals", "list")

    assert ran.code == 1
    assert ran.error_lines()[0].startswith("carebus: error: 403 ")


# ----- dead-letter queues --------------------------------------------------------------------------------
def test_dlq_list_shows_every_dead_letter_queue_of_the_outputs_with_its_depth(carebus, runtime):
    ran = carebus("dlq", "list")

    assert ran.code == 0, ran.err
    dead_letter_keys = [key for key in runtime.stack.outputs if key.endswith("DeadLetterQueueUrl")]
    assert len(dead_letter_keys) >= 4
    for key in dead_letter_keys:
        assert key in ran.out
    [billing_row] = [line for line in ran.out.splitlines() if "BillingDeadLetterQueueUrl" in line]
    assert re.search(r"billing\W+BillingDeadLetterQueueUrl\W+\d+\W+\d+", billing_row)


def test_a_malformed_message_is_shown_in_its_dlq_and_redriven_to_its_source_queue(carebus, runtime):
    sqs = runtime.client("sqs")
    outputs = runtime.stack.outputs
    body = json.dumps({"schemaVersion": 1, "encounterId": f"malformed-{uuid.uuid4().hex[:8]}"})
    sqs.send_message(QueueUrl=outputs["BillingQueueUrl"], MessageBody=body)

    def depth(queue_url: str) -> int:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    wait_until(lambda: depth(outputs["BillingDeadLetterQueueUrl"]) == 1, 30, "the message in the billing DLQ")

    shown = carebus("dlq", "show", "billing")
    shown_by_output_key = carebus("dlq", "show", "BillingDeadLetterQueueUrl")
    redriven = carebus("dlq", "redrive", "billing")
    # Back on its source queue (waiting or being retried): it takes five more receives to die again.
    on_source_queue = depth(outputs["BillingQueueUrl"])
    left_in_dlq = depth(outputs["BillingDeadLetterQueueUrl"])

    marker = json.loads(body)["encounterId"]
    assert shown.code == 0, shown.err
    assert marker in shown.out
    assert marker in shown_by_output_key.out
    assert redriven.code == 0, redriven.err
    assert "Moved 1 message(s) from billing" in redriven.out
    assert (on_source_queue, left_in_dlq) == (1, 0)


def test_a_dlq_without_a_source_queue_cannot_be_redriven(carebus):
    ran = carebus("dlq", "redrive", "subscription")

    assert ran.code == 1
    assert_one_line_without_traceback(ran)
    assert "no source queue" in ran.err


def test_an_unknown_dlq_is_a_usage_error(carebus):
    ran = carebus("dlq", "show", "nonsense")

    assert ran.code == 2
    assert_one_line_without_traceback(ran)
    assert "billing" in ran.err


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


# ----- the lab commands: local env, token, queues, send, events, replay, submit --sample ------------------
def printed(out: str) -> list[str]:
    """The lines the command printed: in-process, stdout also carries the handlers' JSON logs and metrics."""
    return [line for line in out.splitlines() if not line.startswith("{")]


def exported(out: str) -> dict[str, str]:
    """What `eval "$(carebus local env)"` would set: every line is `export NAME=VALUE`."""
    variables = {}
    for line in printed(out):
        [word, assignment] = shlex.split(line)
        assert word == "export", line
        name, _, value = assignment.partition("=")
        variables[name] = value
    return variables


def test_local_env_exports_what_points_the_aws_cli_and_boto3_at_the_offline_stack(
    carebus, runtime, monkeypatch
):
    ran = carebus("local", "env", stack=None)

    assert ran.code == 0, ran.err
    variables = exported(ran.out)
    assert variables == {
        "AWS_ENDPOINT_URL": runtime.endpoint_url,  # from $CAREBUS_ENDPOINT_URL
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "CAREBUS_ENDPOINT_URL": runtime.endpoint_url,
        "CAREBUS_API_URL": "http://127.0.0.1:3000/v1",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    queues = boto3.client("sqs").list_queues()["QueueUrls"]  # no endpoint, region or keys given here
    assert runtime.stack.outputs["BillingQueueUrl"] in queues


def test_local_env_takes_the_endpoints_given_and_needs_no_running_stack(carebus, monkeypatch):
    [closed_port] = free_ports("127.0.0.1", (0,))
    endpoint, api = f"http://127.0.0.1:{closed_port}", "http://127.0.0.1:3999/v1"
    monkeypatch.delenv("CAREBUS_ENDPOINT_URL")
    monkeypatch.delenv("CAREBUS_API_URL", raising=False)

    by_default = exported(carebus("local", "env", stack=None).out)
    given = exported(carebus("local", "env", "--endpoint-url", endpoint, "--api-url", api, stack=None).out)
    given_first = exported(carebus("--endpoint-url", endpoint, "local", "env", stack=None).out)
    monkeypatch.setenv("CAREBUS_API_URL", api)
    from_environment = exported(carebus("local", "env", stack=None).out)

    assert (by_default["AWS_ENDPOINT_URL"], by_default["CAREBUS_API_URL"]) == (
        "http://127.0.0.1:4566",
        "http://127.0.0.1:3000/v1",
    )
    assert (given["AWS_ENDPOINT_URL"], given["CAREBUS_ENDPOINT_URL"], given["CAREBUS_API_URL"]) == (
        endpoint,
        endpoint,
        api,
    )
    assert given_first["AWS_ENDPOINT_URL"] == endpoint
    assert from_environment["CAREBUS_API_URL"] == api


def test_local_env_is_for_the_offline_stack_only(carebus):
    ran = carebus("local", "env")  # with --stack

    assert ran.code == 2
    assert_one_line_without_traceback(ran)


def test_token_prints_the_signed_in_users_id_token_that_the_api_takes(
    carebus, carebus_home, runtime, tmp_path
):
    carebus("login", "--as", "physician")
    encounter_id = submitted(carebus, body_file(tmp_path))

    ran = carebus("token")

    assert ran.code == 0, ran.err
    [token] = printed(ran.out)
    [stored] = [
        entry["idToken"]
        for key, entry in json.loads((carebus_home / "sessions.json").read_text()).items()
        if key.startswith(f"{STACK}@")
    ]
    assert token == stored
    # As curl -H "Authorization: $(carebus token)" sends it.
    request = urllib.request.Request(  # noqa: S310 - the runtime's own URL
        f"{runtime.stack.outputs['ApiUrl']}/encounters/{encounter_id}", headers={"Authorization": token}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - the runtime's own URL
        assert answer.status == 200


def test_token_without_a_session_or_with_an_expired_one_exits_4(carebus, carebus_home, monkeypatch, tmp_path):
    signed_in_with(carebus, carebus_home, expiresAt="2000-01-01T00:00:00+00:00")

    expired = carebus("token")
    monkeypatch.setenv("CAREBUS_HOME", str(tmp_path / "nobody"))
    never = carebus("token")

    assert (expired.code, never.code) == (4, 4)
    assert (expired.out, never.out) == ("", "")
    assert "expired" in expired.err
    assert "carebus login" in never.err


QUEUE_LINE = re.compile(r"^(?P<name>[a-z-]+) (?P<queue>\S+) visible=(\d+) in-flight=(\d+) delayed=(\d+)$")


def queue_lines(carebus: Cli) -> dict[str, re.Match[str]]:
    ran = carebus("queues")
    assert ran.code == 0, ran.err
    matches = [QUEUE_LINE.match(line) for line in printed(ran.out)]
    assert all(matches), ran.out
    return {match["name"]: match for match in matches if match}


def test_queues_lists_every_queue_of_the_outputs_each_work_queue_before_its_dlq(carebus, runtime):
    lines = queue_lines(carebus)

    outputs = runtime.stack.outputs
    queue_keys = [key for key in outputs if key.endswith("QueueUrl")]
    assert sorted(match["queue"] for match in lines.values()) == sorted(
        outputs[key].rsplit("/", 1)[-1] for key in queue_keys
    )
    names = list(lines)
    for work in ("billing", "scheduling", "prescriptions", "approval-token"):
        assert names.index(f"{work}-dead-letter") == names.index(work) + 1
    assert lines["billing"]["queue"] == outputs["BillingQueueUrl"].rsplit("/", 1)[-1]


def test_queues_watch_prints_the_counts_again_until_ctrl_c(carebus, monkeypatch):
    rounds = []

    def sleep(seconds: float) -> None:
        rounds.append(seconds)
        if len(rounds) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr("carebus_cli.lab_commands.time.sleep", sleep)

    ran = carebus("queues", "--watch", "2")

    assert ran.code == 0, ran.err
    stamps = [line for line in printed(ran.out) if line.startswith("# ")]
    assert len(stamps) == 2
    assert rounds == [2, 2]
    assert sum(line.startswith("billing ") for line in printed(ran.out)) == 2


def test_send_puts_a_raw_message_on_a_queue_and_prints_its_id(carebus, tmp_path):
    before = int(queue_lines(carebus)["event-delivery-dead-letter"][3])
    body = tmp_path / "message.json"
    body.write_text(json.dumps({"anything": "at all"}))

    ran = carebus("send", "event-delivery-dead-letter", f"@{body}")

    assert ran.code == 0, ran.err
    summary, message_id = printed(ran.out)
    assert re.fullmatch(UUID, message_id)
    assert summary.startswith(f"Sent {message_id} to event-delivery-dead-letter (")
    assert int(queue_lines(carebus)["event-delivery-dead-letter"][3]) == before + 1


def test_a_poison_message_sent_to_a_work_queue_ends_in_its_dlq(carebus):
    marker = f"not-an-encounter-{uuid.uuid4().hex[:8]}"

    # By the queue's own name this time: what the outputs' URL ends with.
    queue_name = queue_lines(carebus)["scheduling"]["queue"]
    ran = carebus("send", queue_name, json.dumps({"encounterId": marker}))

    assert ran.code == 0, ran.err
    assert printed(ran.out)[0].startswith("Sent ")
    wait_until(lambda: marker in carebus("dlq", "show", "scheduling").out, 30, "the poison in the DLQ")


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (("send", "billing", "{not json"), "--raw"),
        (("send", "nowhere", "{}"), "billing"),
        (("send", "billing", "@/no/such/file.json"), "no such file"),
    ],
    ids=["not-json", "unknown-queue", "missing-file"],
)
def test_send_refuses_what_it_cannot_send_with_a_usage_error(carebus, argv, complaint):
    ran = carebus(*argv)

    assert ran.code == 2
    assert_one_line_without_traceback(ran)
    assert complaint in ran.err


def test_send_raw_sends_a_body_that_is_not_json(carebus):
    ran = carebus("send", "subscription-dead-letter", "not json at all", "--raw")

    assert ran.code == 0, ran.err


EVENT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (?P<type>[A-Za-z]+) (?P<source>carebus\.[a-z]+) (?P<facts>.*)$"
)


def events_of(carebus: Cli, encounter_id: str, *options: str) -> list[str]:
    ran = carebus("events", *options)
    assert ran.code == 0, ran.err
    return [line for line in printed(ran.out) if f"encounterId={encounter_id}" in line]


def test_events_prints_each_domain_event_on_the_bus_on_one_line_with_its_ids(carebus, tmp_path):
    carebus("login", "--as", "physician")
    encounter_id = submitted(carebus, body_file(tmp_path, full_encounter(datetime.now(UTC).date())))
    expected = {
        "ClaimSubmitted",
        "PrescriptionReleased",
        "PrescriptionApprovalRequested",
        "AppointmentBooked",
    }

    lines = wait_until(
        lambda: found if len(found := events_of(carebus, encounter_id)) >= len(expected) else None,
        30,
        "the encounter's events in the audit log",
    )

    matches = [EVENT_LINE.match(line) for line in lines]
    assert all(matches), lines
    assert {match["type"] for match in matches if match} == expected
    [claim] = [line for line in lines if " ClaimSubmitted " in line]
    assert re.search(
        rf" ClaimSubmitted carebus\.billing encounterId={encounter_id} claimId=clm-{encounter_id} "
        r"lineCount=\d+ totalCents=\d+$",
        claim,
    )
    assert "Alex Sample" not in "".join(lines)  # ids only on the bus
    only_claims = events_of(carebus, encounter_id, "--detail-type", "ClaimSubmitted", "--last", "10")
    assert only_claims == [claim]
    assert (
        events_of(carebus, encounter_id, "--since", (datetime.now(UTC) + timedelta(minutes=5)).isoformat())
        == []
    )


def test_events_takes_since_or_last_not_both(carebus):
    ran = carebus("events", "--since", "2026-01-01T00:00:00Z", "--last", "5")

    assert ran.code == 2
    assert "not allowed with" in ran.err


def test_replay_puts_the_archived_events_back_on_the_bus_and_waits_until_completed(
    carebus, runtime, tmp_path
):
    carebus("login", "--as", "physician")
    since = datetime.now(UTC) - timedelta(seconds=5)
    encounter_id = submitted(carebus, body_file(tmp_path))
    wait_until(
        lambda: any(" PrescriptionApprovalRequested " in line for line in events_of(carebus, encounter_id)),
        30,
        "the approval request on the bus",
    )

    ran = carebus("replay", "--since", since.isoformat())

    assert ran.code == 0, ran.err
    lines = printed(ran.out)
    name = lines[-1].split()[1]
    assert lines[:2] == [f"archive {STACK}-CarebusBusArchive", f"bus {STACK}-bus"]
    assert re.fullmatch(r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lines[2])
    assert lines[-2:] == [f"Replay {name} STARTING", f"Replay {name} COMPLETED"]
    # Every rule saw the replayed events again: the audit rule logged them with the replay's name...
    replayed = wait_until(
        lambda: [line for line in events_of(carebus, encounter_id) if line.endswith(f" replay={name}")],
        30,
        "the replayed events in the audit log",
    )
    assert {line.split()[1] for line in replayed} >= {"ClaimSubmitted", "PrescriptionApprovalRequested"}
    # ... and the approval rule started the workflow again, which found the approval already requested.
    approvals = runtime.client("dynamodb").scan(TableName=runtime.stack.outputs["ApprovalsTableName"])[
        "Items"
    ]
    assert len([item for item in approvals if encounter_id in item["approvalId"]["S"]]) == 1
    statuses = wait_until(
        lambda: (
            found
            if len(found := workflow_statuses(runtime, encounter_id)) == 2 and "RUNNING" not in found[1:]
            else None
        ),
        30,
        "a second approval workflow for the replayed request, ended",
    )
    # The first still waits for a pharmacist; the second ended at once (AlreadyRequested).
    assert statuses == ["RUNNING", "SUCCEEDED"]


def workflow_statuses(runtime: OfflineRuntime, encounter_id: str) -> list[str]:
    """The statuses of the encounter's approval workflows, oldest first."""
    stepfunctions = runtime.client("stepfunctions")
    arn = runtime.stack.outputs["PrescriptionApprovalStateMachineArn"]
    executions = [
        stepfunctions.describe_execution(executionArn=execution["executionArn"])
        for execution in stepfunctions.list_executions(stateMachineArn=arn)["executions"]
    ]
    return [
        execution["status"]
        for execution in sorted(executions, key=lambda execution: execution["startDate"])
        if encounter_id in execution["input"]
    ]


@pytest.fixture(scope="module")
def stack_with_a_bus_without_archive(runtime: OfflineRuntime) -> str:
    """The runtime's outputs, but an EventBusName whose bus has no archive (as on MiniStack)."""
    name = f"{STACK}-no-archive"
    runtime.client("events").create_event_bus(Name=f"{name}-bus")
    outputs = {**runtime.stack.outputs, "EventBusName": f"{name}-bus"}
    template = {
        "Resources": {
            "Marker": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": f"/{name}", "Type": "String", "Value": "x"},
            }
        },
        "Outputs": {key: {"Value": str(value)} for key, value in outputs.items()},
    }
    runtime.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
    return name


def test_replay_of_a_bus_without_archive_is_refused(carebus, stack_with_a_bus_without_archive):
    ran = carebus("replay", "--last", "10", stack=stack_with_a_bus_without_archive)

    assert ran.code == 1
    assert_one_line_without_traceback(ran)
    assert "has no archive" in ran.err


@pytest.mark.parametrize(
    "argv",
    [
        ("replay",),
        ("replay", "--since", "yesterday"),
        ("replay", "--since", "2026-12-01T10:00:00Z", "--until", "2026-12-01T09:00:00Z"),
        ("replay", "--last", "0"),
    ],
    ids=["no-window", "not-a-time", "until-before-since", "no-minutes"],
)
def test_replay_needs_a_window_that_makes_sense(carebus, argv):
    ran = carebus(*argv)

    assert ran.code == 2
    assert "Traceback" not in ran.err


def test_submit_sample_books_a_follow_up_whatever_the_day_and_prints_the_id_last(carebus):
    carebus("login", "--as", "physician")

    ran = carebus("submit", "--sample")

    assert ran.code == 0, ran.err
    encounter_id = printed(ran.out)[-1]
    assert re.fullmatch(UUID, encounter_id)
    assert f"Encounter {encounter_id} ACCEPTED" in ran.out
    wait_until(
        lambda: f"apt-{encounter_id} BOOKED" in carebus("trace", encounter_id).out, 30, "the follow-up booked"
    )


def test_submit_takes_a_file_or_the_sample_not_both(carebus):
    assert carebus("submit").code == 2
    assert carebus("submit", str(SAMPLE_EVENT), "--sample").code == 2


def test_the_sample_api_event_is_one_encounter_however_often_it_is_submitted(carebus):
    carebus("login", "--as", "physician")

    first = carebus("submit", str(SAMPLE_EVENT))
    again = carebus("submit", str(SAMPLE_EVENT))

    assert (first.code, again.code) == (0, 0), first.err + again.err
    encounter_id = printed(first.out)[-1]
    assert printed(again.out)[-1] == encounter_id
    assert "(key sample-encounter-0001)" in again.out  # the file's Idempotency-Key header


def test_the_sample_api_events_window_has_passed_so_it_is_waitlisted_as_passed(carebus):
    carebus("login", "--as", "physician")
    encounter_id = printed(carebus("submit", str(SAMPLE_EVENT)).out)[-1]

    traced = wait_until(
        lambda: (ran := carebus("trace", encounter_id)).code == 0 and "appointment" in ran.out and ran,
        30,
        "the sample's appointment",
    )

    assert f"apt-{encounter_id} WAITLISTED the follow-up window has already passed" in traced.out


# ----- the offline stack and the demo --------------------------------------------------------------------
def without_aws_configuration() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "CAREBUS_"))}


@pytest.mark.slow
@dataclass
class Served:
    process: subprocess.Popen[str]
    startup: str  # what it printed up to the ready line


@contextmanager
def local_up(tmp_path: Path, *options: str, stop_with: int = signal.SIGINT) -> Iterator[Served]:
    """`carebus local up` in a process of its own, until its ready line; stopped with a signal after."""
    command = [sys.executable, "-m", "carebus_cli.cli", "local", "up", *options]
    environment = {**without_aws_configuration(), "PYTHONUNBUFFERED": "1", "CAREBUS_HOME": str(tmp_path)}
    environment["COLUMNS"] = "200"
    errors = tmp_path / "stderr.txt"
    with (
        errors.open("w") as stderr,
        subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=environment
        ) as process,
    ):
        # A start-up that never finishes fails the test rather than hanging it.
        watchdog = threading.Timer(120, process.kill)
        watchdog.start()
        assert process.stdout is not None
        printed = []
        for line in process.stdout:
            printed.append(line)
            if "Serving until Ctrl-C" in line:
                break
        try:
            yield Served(process, "".join(printed))
        finally:
            process.send_signal(stop_with)
            process.communicate(timeout=30)
            watchdog.cancel()
    assert process.returncode == 0, errors.read_text()
    assert "Traceback" not in errors.read_text()


def test_local_up_serves_until_ctrl_c_without_aws_credentials(tmp_path):
    aws_port, api_port = free_ports("127.0.0.1", (0, 0))
    env_json = tmp_path / "env.json"
    with local_up(
        tmp_path, "--port", str(aws_port), "--api-port", str(api_port), "--env-json", str(env_json)
    ) as up:
        login = main(["--endpoint-url", f"http://127.0.0.1:{aws_port}", "login", "--as", "pharmacist"])

    for expected in (f"127.0.0.1:{aws_port}", f"http://127.0.0.1:{api_port}/v1", DEMO_PASSWORD, PHYSICIAN):
        assert expected in up.startup
    assert "UserPoolClientId" in up.startup
    assert set(json.loads(env_json.read_text())) >= {"IntakeFunction", "BillingFunction"}
    assert login == 0


def test_local_up_takes_free_ports_parameters_and_lab_time_and_stops_on_sigterm(tmp_path):
    options = ("--port", "0", "--api-port", "0", "--env-json", str(tmp_path / "env.json"))
    options += ("--parameter-overrides", "LogRetentionInDays=7", "--retry-after", "2")
    with local_up(tmp_path, *options, stop_with=signal.SIGTERM) as up:
        endpoint = re.search(r"AWS endpoint\s+(http://127\.0\.0\.1:\d+)", up.startup)
        assert endpoint, up.startup
        logs = boto3.client(
            "logs",
            endpoint_url=endpoint[1],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        retention = {
            group["logGroupName"]: group.get("retentionInDays")
            for group in logs.describe_log_groups()["logGroups"]
            if "Intake" in group["logGroupName"]
        }

    assert re.search(r"REST API\s+http://127\.0\.0\.1:\d+/v1", up.startup)
    assert f"export CAREBUS_ENDPOINT_URL={endpoint[1]}" in up.startup
    assert "parameter     LogRetentionInDays=7" in up.startup
    assert "a failed message is retried after 2 s" in up.startup
    assert retention
    assert set(retention.values()) == {7}, retention


def test_local_up_refuses_a_parameter_override_that_is_not_name_equals_value(capsys):
    assert main(["local", "up", "--parameter-overrides", "LogRetentionInDays"]) == 2
    assert "Name=Value" in capsys.readouterr().err


@pytest.mark.slow
def test_the_demo_passes_end_to_end(carebus):
    # CAREBUS_ENDPOINT_URL still points at the module's runtime: the demo starts and uses its own.
    ran = carebus("demo", stack=None)

    assert ran.code == 0, ran.out + ran.err
    assert "Demo passed: 12 of 12 expected steps" in ran.out
    assert "failed" not in ran.out
    assert ran.out.count("approval workflow SUCCEEDED") == 1
