"""The carebus CLI's lab commands against one offline runtime: local env, token, queues, send, events, replay,
submit --sample."""

import json
import re
import shlex
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from cli_harness import (
    SAMPLE_EVENT,
    STACK,
    UUID,
    Cli,
    assert_one_line_without_traceback,
    body_file,
    printed,
    signed_in_with,
    submitted,
)

from carebus_client.samples import full_encounter
from carebus_local.runtime import OfflineRuntime
from carebus_local.serve import free_ports
from carebus_testing import wait_until

# Every command of this module reaches its own offline stack (tests/stack/conftest.py).
pytestmark = pytest.mark.usefixtures("carebus_home")

# ----- the lab commands: local env, token, queues, send, events, replay, submit --sample ------------------


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


# ----- without the stand-in clearinghouse (tests/stack/test_partner_integration.py has one) -------------
def test_the_clearinghouse_commands_need_the_stand_in(carebus):
    ran = carebus("clearinghouse", "deliveries")

    assert ran.code == 3
    assert_one_line_without_traceback(ran)
    assert "carebus local up --clearinghouse" in ran.err
