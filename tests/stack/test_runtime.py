"""The offline runtime's own behaviour over real HTTP with real Cognito tokens: what the gateway answers
without a function, the outputs, env.json and the wiring it reads from the template. The flow a user
sees is the end-to-end suite's (local/carebus_client/e2e), which runs against this runtime too."""

import http.client
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from carebus.approvals import Decision
from carebus.prescribing import prescription_id_for
from carebus_client.samples import full_encounter
from carebus_local.api_server import api_server
from carebus_local.demo_users import DEMO_PASSWORD, DEMO_USERS
from carebus_local.moto_process import MotoProcess
from carebus_local.pollers import QueuePoller
from carebus_local.runtime import OfflineRuntime, RuntimeOptions
from carebus_local.stack import EventSourceMappingSpec
from carebus_local.template import TEMPLATE_PATH
from carebus_testing import sample_body, wait_until


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_runtime(**options: Any) -> OfflineRuntime:
    return OfflineRuntime(
        RuntimeOptions(
            aws_port=free_port(),
            api_port=free_port(),
            stack_name=f"carebus-test-{uuid.uuid4().hex[:6]}",
            retry_failed_after_seconds=0,
            **options,
        )
    ).start()


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfflineRuntime]:
    env_json = tmp_path_factory.mktemp("runtime") / "env.json"
    started = start_runtime(env_json_path=env_json)
    yield started
    started.stop()


def id_token(runtime: OfflineRuntime, role: str) -> str:
    username, _ = DEMO_USERS[role]
    answer = runtime.client("cognito-idp").initiate_auth(
        ClientId=runtime.stack.outputs["UserPoolClientId"],
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": DEMO_PASSWORD},
    )
    return answer["AuthenticationResult"]["IdToken"]


def call(
    runtime: OfflineRuntime,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    **headers: str,
) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(  # noqa: S310 - the runtime's own local API
        runtime.stack.outputs["ApiUrl"] + path, data=data, method=method
    )
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", token)
    for name, value in headers.items():
        request.add_header(name.replace("_", "-"), value)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            status, answer_headers, raw = answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, raw = error.code, dict(error.headers), error.read()
    return status, answer_headers, json.loads(raw) if raw else None


def submit(runtime: OfflineRuntime, body: dict[str, Any], key: str | None = None) -> str:
    """A submission under the given Idempotency-Key (a new one if none); the encounter id."""
    extra = {"Idempotency_Key": key or str(uuid.uuid4())}
    status, _, answer = call(runtime, "POST", "/encounters", body, id_token(runtime, "physician"), **extra)
    assert status == 202, answer
    return answer["encounterId"]


def state_of(runtime: OfflineRuntime, encounter_id: str) -> dict[str, Any]:
    status, _, answer = call(
        runtime, "GET", f"/encounters/{encounter_id}", token=id_token(runtime, "physician")
    )
    assert status == 200, answer
    return answer


def settled(runtime: OfflineRuntime, encounter_id: str) -> dict[str, Any] | None:
    state = state_of(runtime, encounter_id)
    done = (
        state["claim"] is not None
        and state["appointment"] is not None
        and len(state["prescriptions"]) == state["expected"]["prescriptions"]
    )
    return state if done else None


def test_no_token_is_401_from_the_gateway_and_runs_no_function(runtime):
    before = runtime.invocations["IntakeFunction"]

    status, headers, problem = call(runtime, "POST", "/encounters", sample_body())

    assert status == 401
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["WWW-Authenticate"] == "Bearer"
    assert problem["status"] == 401
    assert runtime.invocations["IntakeFunction"] == before


def test_a_forged_token_is_401(runtime):
    header, payload, _ = id_token(runtime, "physician").split(".")

    status, _, _ = call(runtime, "POST", "/encounters", sample_body(), f"{header}.{payload}.c2lnbmF0dXJl")

    assert status == 401


def test_a_body_the_model_refuses_is_400_before_any_function_runs(runtime):
    before = runtime.invocations["IntakeFunction"]
    body = sample_body()
    del body["patient"]

    status, headers, problem = call(runtime, "POST", "/encounters", body, id_token(runtime, "physician"))

    assert status == 400
    assert headers["Content-Type"] == "application/problem+json"
    assert [(error["field"], error["code"]) for error in problem["errors"]] == [("body", "gateway_model")]
    assert runtime.invocations["IntakeFunction"] == before


def test_the_same_idempotency_key_twice_is_one_encounter_fanned_out_once(runtime):
    key = f"visit-{uuid.uuid4()}"
    body = full_encounter(datetime.now(UTC).date())

    first = submit(runtime, body, key)
    second = submit(runtime, body, key)

    assert first == second
    wait_until(lambda: settled(runtime, first), 30, "the fan-out")
    claims = runtime.client("dynamodb").scan(TableName=runtime.stack.outputs["ClaimsTableName"])["Items"]
    assert sum(item["encounterId"]["S"] == first for item in claims) == 1


# ----- moto in a process of its own -------------------------------------------------------------------------
def test_moto_serves_from_its_own_process_patched_to_accept_a_task_token_once(runtime):
    """The fidelity patches apply where moto runs: a spent token is refused as AWS refuses it (moto alone
    accepts it again)."""
    assert runtime.moto_pid not in (None, os.getpid())
    encounter_id = submit(runtime, full_encounter(datetime.now(UTC).date()))
    approval_key = {"approvalId": {"S": f"apr-{prescription_id_for(encounter_id, 2)}"}}
    approvals = runtime.client("dynamodb")
    table = runtime.stack.outputs["ApprovalsTableName"]

    def stored_token() -> str | None:
        item = approvals.get_item(TableName=table, Key=approval_key, ConsistentRead=True).get("Item", {})
        return item.get("taskToken", {}).get("S")

    token = wait_until(stored_token, 30, "the approval's task token")
    decision = Decision(
        decision_id="d-1", decision="APPROVE", decided_by="someone", decided_at="2026-12-01T00:00:00+00:00"
    ).to_callback()
    stepfunctions = runtime.client("stepfunctions")

    stepfunctions.send_task_success(taskToken=token, output=decision)

    with pytest.raises(ClientError) as refused:
        stepfunctions.send_task_success(taskToken=token, output=decision)
    assert refused.value.response["Error"]["Code"] == "TaskTimedOut"


def test_stopping_moto_kills_a_process_that_does_not_end_on_sigterm():
    moto = MotoProcess("127.0.0.1", free_port())
    moto.start()
    pid = moto.pid
    os.kill(pid, signal.SIGSTOP)  # a stopped process acts on no SIGTERM

    moto.stop(timeout_seconds=0.5)

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_stopped_runtime_leaves_no_moto_process():
    started = start_runtime()
    pid = started.moto_pid

    started.stop()

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# ----- the batching window ----------------------------------------------------------------------------------
class RecordingQueue:
    """An SQS client with one message waiting, that records how long each receive may wait."""

    def __init__(self) -> None:
        self.waits: list[int] = []
        self.waiting = [{"MessageId": "m-1", "ReceiptHandle": "r-1", "Body": "{}"}]
        self.deleted: list[str] = []

    def get_queue_url(self, QueueName: str) -> dict[str, str]:
        return {"QueueUrl": f"https://sqs.local/{QueueName}"}

    def receive_message(self, WaitTimeSeconds: int, **_: Any) -> dict[str, Any]:
        self.waits.append(WaitTimeSeconds)
        messages, self.waiting = self.waiting, []
        return {"Messages": messages}

    def delete_message_batch(self, Entries: list[dict[str, str]], **_: Any) -> None:
        self.deleted += [entry["ReceiptHandle"] for entry in Entries]


class RecordingFunction:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        return {"batchItemFailures": []}


def a_mapping(batching_window_seconds: int) -> EventSourceMappingSpec:
    return EventSourceMappingSpec(
        function_logical_id="F",
        queue_arn="arn:aws:sqs:us-east-1:123456789012:q",
        batch_size=10,
        batching_window_seconds=batching_window_seconds,
        report_batch_item_failures=True,
        maximum_concurrency=2,
    )


def test_a_lab_batching_window_replaces_the_mappings_and_its_fraction_of_a_second_is_waited_out():
    queue, function = RecordingQueue(), RecordingFunction()
    poller = QueuePoller(queue, a_mapping(20), function, "us-east-1", batching_window_seconds=0.05)

    result = poller.poll_once(wait_seconds=1)

    assert result.received == ["m-1"]
    assert [record["messageId"] for record in function.events[0]["Records"]] == ["m-1"]
    # The first message long-polled for; then, with under a second of the window left, one receive that
    # does not wait (SQS long-polls in whole seconds), not the mapping's 20 s.
    assert queue.waits == [1, 0]
    assert queue.deleted == ["r-1"]


def test_without_a_lab_window_the_mappings_window_is_kept():
    poller = QueuePoller(RecordingQueue(), a_mapping(2), RecordingFunction(), "us-east-1")

    assert poller.batching_window_seconds == 2


# ----- the HTTP edge: whatever a client sends, an answer ----------------------------------------------------
def exchange(
    address: tuple[str, int], head: str, body: bytes = b"", *, close_writing: bool = False
) -> tuple[http.client.HTTPResponse, bytes, bool]:
    """Send raw bytes (head's lines end in \\n here, CRLF on the wire) and read one answer: it, its body,
    and whether the server hung up after it."""
    with socket.create_connection(address, timeout=10) as connection:
        connection.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        if close_writing:
            connection.shutdown(socket.SHUT_WR)
        answer = http.client.HTTPResponse(connection, method=head.split(" ", 1)[0])
        answer.begin()
        raw = answer.read()
        # The server hangs up right after an answer it ends with; a kept-alive connection times out here.
        connection.settimeout(2)
        try:
            closed = connection.recv(1) == b""
        except TimeoutError:
            closed = False
        return answer, raw, closed


def api_address(runtime: OfflineRuntime) -> tuple[str, int]:
    return runtime.options.host, runtime.options.api_port


def refused(answer: http.client.HTTPResponse, raw: bytes, status: int) -> dict[str, Any]:
    assert answer.status == status, raw
    assert answer.headers["Content-Type"] == "application/problem+json"
    return json.loads(raw)


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("TRACE", "/v1/approvals"),
        ("CONNECT", "carebus.local:443"),
        ("PROPFIND", "/v1/approvals"),
        ("FOO", "/v1/encounters"),
    ],
)
def test_a_method_without_a_route_is_the_gateways_403_not_pythons_501(runtime, method, target):
    answer, raw, _ = exchange(
        api_address(runtime), f"{method} {target} HTTP/1.1\nHost: localhost\nConnection: close\n"
    )

    assert refused(answer, raw, 403)["detail"] == "Missing Authentication Token"
    assert answer.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
def test_head_and_options_are_answered_by_the_api_as_before(runtime, method):
    answer, _, _ = exchange(
        api_address(runtime), f"{method} /v1/approvals HTTP/1.1\nHost: localhost\nConnection: close\n"
    )

    assert answer.status == 403
    assert answer.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/encounters", "[" * 10000 + "]" * 10000),
        ("/approvals/a-7/decision", '{"a":' * 10000 + "1" + "}" * 10000),
    ],
    ids=["arrays", "objects"],
)
def test_a_body_nested_too_deeply_is_400_over_http(runtime, path, body):
    status, headers, problem = call(runtime, "POST", path, body.encode(), id_token(runtime, "physician"))

    assert status == 400
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["x-amzn-ErrorType"] == "BadRequestException"
    assert problem["type"] == "https://carebus.dev/problems/validation-error"


@pytest.mark.parametrize("lengths", [["abc"], ["-5"], ["+5"], [""], ["2", "3"], ["0x10"]], ids=repr)
def test_a_content_length_that_is_not_one_number_is_400_and_closes(runtime, lengths):
    announced = "".join(f"Content-Length: {length}\n" for length in lengths)
    head = f"POST /v1/encounters HTTP/1.1\nHost: localhost\nContent-Type: application/json\n{announced}"

    answer, raw, closed = exchange(api_address(runtime), head, b"{}")

    assert "Content-Length" in refused(answer, raw, 400)["detail"]
    assert answer.headers["Connection"] == "close"
    assert closed


def test_a_body_larger_than_api_gateway_takes_is_413_unread(runtime):
    head = "POST /v1/encounters HTTP/1.1\nHost: localhost\nContent-Length: 1000000000000\n"

    answer, raw, closed = exchange(api_address(runtime), head, b"{}")

    assert refused(answer, raw, 413)["detail"] == "Request Too Long"
    assert closed


def test_a_body_shorter_than_its_content_length_is_400_once_the_client_stops_sending(runtime):
    head = "POST /v1/encounters HTTP/1.1\nHost: localhost\nContent-Length: 100\n"

    answer, raw, closed = exchange(api_address(runtime), head, b'{"a": 1}', close_writing=True)

    assert "100 bytes" in refused(answer, raw, 400)["detail"]
    assert closed


def test_a_client_that_goes_quiet_mid_body_is_answered_400_after_the_read_timeout(runtime):
    server = api_server(runtime.rest_api, "127.0.0.1", 0, read_timeout_seconds=0.5)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        head = "POST /v1/encounters HTTP/1.1\nHost: localhost\nContent-Length: 100\n"
        started = time.monotonic()

        answer, raw, closed = exchange(server.server_address[:2], head, b'{"a": 1}')

        assert "100 bytes" in refused(answer, raw, 400)["detail"]
        assert answer.headers["Connection"] == "close"
        assert closed
        assert time.monotonic() - started < 5
    finally:
        server.shutdown()
        server.server_close()


def test_outputs_are_published_as_a_cloudformation_stack(runtime):
    [described] = runtime.client("cloudformation").describe_stacks(StackName=runtime.stack.name)["Stacks"]
    outputs = {output["OutputKey"]: output["OutputValue"] for output in described["Outputs"]}

    assert outputs == {name: str(value) for name, value in runtime.stack.outputs.items()}
    assert outputs["ApiUrl"].startswith("http://127.0.0.1:")


def test_env_json_gives_every_function_its_environment_and_the_local_endpoint(runtime):
    environments = json.loads(Path(runtime.options.env_json_path).read_text())

    assert set(environments) == set(runtime.stack.functions)
    for logical_id, environment in environments.items():
        assert environment["AWS_ENDPOINT_URL"].endswith(f":{runtime.options.aws_port}")
        for name, value in runtime.stack.functions[logical_id].environment.items():
            assert environment[name] == value


@pytest.mark.slow
def test_the_runtime_follows_the_template_it_is_given(tmp_path):
    """Route billing on follow-ups in a copy of the template: the served stack routes accordingly."""
    text = TEMPLATE_PATH.read_text()
    template = text.replace(
        '        procedureCount: [{numeric: [">", 0]}]\n', '        followUpRequested: ["true"]\n', 1
    )
    assert template != text
    copy_path = tmp_path / "template.yaml"
    copy_path.write_text(template)
    for folder in ("functions", "src", "statemachines"):
        (tmp_path / folder).symlink_to(TEMPLATE_PATH.parent / folder)
    changed = start_runtime(template_path=copy_path)
    try:
        body = sample_body()
        del body["followUp"]
        encounter_id = submit(changed, body)
        wait_until(
            lambda: len(state_of(changed, encounter_id)["prescriptions"]) == 2, 30, "the prescriptions"
        )
        assert state_of(changed, encounter_id)["claim"] is None
    finally:
        changed.stop()
