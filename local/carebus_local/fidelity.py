"""Where moto is more lenient than AWS, make it behave as AWS documents, so that offline tests see the paths
that AWS's stricter behaviour opens. Applied by the offline runtime and by the test suite, never deployed.

- Step Functions accepts a task token once. A token whose task already closed (it succeeded, failed, timed
  out or its execution ended) is refused with TaskTimedOut, a token nobody issued with InvalidToken. moto
  accepts a spent token again while the execution runs and a late one after its wait timed out.
- SendTaskFailure carries its cause into the workflow: moto's API layer drops it.
- Every DynamoDB request is atomic, as on AWS: moto's threaded server checks a condition and writes in two
  steps, and a cancelled transaction restores a snapshot of the table, undoing concurrent writes.
- An EventBridge event has one time, whichever rules match it: moto stamps each rule's copy anew.
"""

import functools
import threading
import time
import types
from typing import Any

_applied = False
_apply_lock = threading.Lock()
# One DynamoDB request at a time in this process: DynamoDB applies each request atomically.
_dynamodb_request_lock = threading.RLock()
# Checking that a token's task is open and closing it is one step, as in Step Functions.
_callback_lock = threading.Lock()


def make_moto_behave_like_aws() -> None:
    """Patch moto once per process (idempotent)."""
    global _applied
    with _apply_lock:
        if _applied:
            return
        _close_callbacks_when_their_task_ends()
        _close_a_callback_task_atomically_with_its_timeout()
        _let_only_the_task_close_a_wait()
        _accept_each_task_token_once()
        _carry_the_cause_of_a_task_failure()
        _make_dynamodb_requests_atomic()
        _give_each_event_one_time()
        _replay_only_the_window()
        _applied = True


def _close_callbacks_when_their_task_ends() -> None:
    """moto interrupts a task's callback endpoint whatever ended the task; remember that it is closed."""
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint

    interrupt_all = CallbackEndpoint.interrupt_all

    @functools.wraps(interrupt_all)
    def close(self: Any) -> None:
        self.closed = True
        interrupt_all(self)

    CallbackEndpoint.interrupt_all = close  # type: ignore[method-assign]


def _close_a_callback_task_atomically_with_its_timeout() -> None:
    """moto's ExecutionState._evaluate_with_timeout (5.2.5), except that for a task that waits on a token
    the timeout and the close happen as one step with the callbacks: a decision that arrived before the
    task closed is taken (as Step Functions takes it), one after it is refused, and none is ever accepted
    and then dropped because the wait timed out in between. A stopped execution stops waiting too."""
    import copy

    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import EvalTimeoutError
    from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState
    from moto.stepfunctions.parser.utils import TMP_THREADS

    original = ExecutionState._evaluate_with_timeout

    def evaluate_with_timeout(self: Any, env: Any) -> None:
        token = (env.states.context_object.context_object_data.get("Task") or {}).get("Token")
        endpoint = env.callback_pool_manager.get(token) if token else None
        if endpoint is None:
            return original(self, env)
        self.timeout.eval(env=env)
        timeout_seconds = env.stack.pop()
        frame = env.open_frame()
        frame.states.reset(input_value=env.states.get_input())
        frame.stack = copy.deepcopy(env.stack)
        outputs: list[Any] = []
        exceptions: list[Exception | None] = [None]
        terminated = threading.Event()

        def execute_and_notify() -> None:
            try:
                self._eval_execution(frame)
                outputs.extend(frame.stack)
            except Exception as error:  # noqa: BLE001 - handed to the caller, as moto does
                exceptions.append(error)
            terminated.set()

        thread = threading.Thread(target=execute_and_notify, daemon=True)
        TMP_THREADS.append(thread)
        thread.start()
        # Waiting in slices: a StopExecution ends the wait as it ends the execution (moto waits it out).
        deadline = time.monotonic() + timeout_seconds
        finished_on_time = False
        while env.is_running() and not finished_on_time and (left := deadline - time.monotonic()) > 0:
            finished_on_time = terminated.wait(min(left, 0.1))
        if not finished_on_time:
            with _callback_lock:
                decided_in_time = endpoint.get_outcome() is not None
                endpoint.closed = True
            if decided_in_time:
                # The decision arrived before the task closed: Step Functions takes it.
                finished_on_time = terminated.wait(30)
            else:
                endpoint.interrupt_all()  # the waiting side stops waiting: the task timed out
        frame.set_ended()
        env.close_frame(frame)
        exception = exceptions.pop()
        if exception:
            raise exception
        if not finished_on_time:
            raise EvalTimeoutError()
        env.stack.append(outputs.pop())
        if not self._is_language_query_jsonpath():
            env.states.set_result(env.stack[-1])
        if self.assign_decl:
            self.assign_decl.eval(env=env)
        if self.result_selector:
            self.result_selector.eval(env=env)
        if self.result_path:
            self.result_path.eval(env)
        else:
            env.states.reset(input_value=env.stack.pop())
        return None

    ExecutionState._evaluate_with_timeout = evaluate_with_timeout  # type: ignore[method-assign]


def _let_only_the_task_close_a_wait() -> None:
    """The side that waits for a token must not time out on its own between the task's timeout and its
    close, or a decision accepted in between is dropped."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_callback,
    )
    from moto.stepfunctions.parser.asl.eval.callback.callback import HeartbeatTimedOut

    StateTaskServiceCallback = state_task_service_callback.StateTaskServiceCallback

    def wait_until_decided_or_closed(self: Any, timeout_seconds: int, callback_endpoint: Any) -> Any:
        """The waiting side never times out by itself: the task's timeout does, atomically (above)."""
        return callback_endpoint.wait(timeout=None)

    def wait_with_heartbeats(self: Any, env: Any, callback_endpoint: Any, heartbeat_endpoint: Any) -> Any:
        """moto's heartbeat wait, except that a missed heartbeat closes the task in the same step as it
        checks that no decision arrived meanwhile."""
        outcome = None
        while env.is_running() and outcome is None:
            if not heartbeat_endpoint.clear_and_wait() and env.is_running():
                with _callback_lock:
                    outcome = callback_endpoint.get_outcome()
                    if outcome is None:
                        callback_endpoint.closed = True
                        outcome = HeartbeatTimedOut()
            else:
                outcome = callback_endpoint.get_outcome()
        return outcome

    StateTaskServiceCallback._wait_for_task_token_timeout = wait_until_decided_or_closed  # type: ignore[method-assign]
    StateTaskServiceCallback._wait_for_task_token_heartbeat = wait_with_heartbeats  # type: ignore[method-assign]


def _accept_each_task_token_once() -> None:
    from moto.core.exceptions import AWSError
    from moto.stepfunctions.parser.api import (
        ExecutionStatus,
        SendTaskFailureOutput,
        SendTaskHeartbeatOutput,
        SendTaskSuccessOutput,
    )
    from moto.stepfunctions.parser.asl.eval.callback.callback import (
        CallbackOutcomeFailure,
        CallbackOutcomeSuccess,
    )
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    def open_callback(backend: Any, task_token: str) -> Any:
        """The endpoint waiting for this token; TaskTimedOut once its task closed, as AWS answers."""
        for execution in backend._get_executions():
            worker = execution.exec_worker
            if worker is None:
                continue
            endpoint = worker.env.callback_pool_manager.get(task_token)
            if endpoint is None:
                continue
            closed = getattr(endpoint, "closed", False) or endpoint.get_outcome() is not None
            if closed or execution.status != ExecutionStatus.RUNNING:
                raise AWSError("Task Timed Out: 'Provided task does not exist anymore'", "TaskTimedOut")
            return endpoint
        raise AWSError("Invalid Token: 'Invalid token'", "InvalidToken")

    def send_task_success(self: Any, task_token: str, outcome: str) -> Any:
        with _callback_lock:
            success = CallbackOutcomeSuccess(callback_id=task_token, output=outcome)
            open_callback(self, task_token).notify(success)
        return SendTaskSuccessOutput()

    def send_task_failure(self: Any, task_token: str, error: Any = None, cause: Any = None) -> Any:
        with _callback_lock:
            failure = CallbackOutcomeFailure(callback_id=task_token, error=error, cause=cause)
            open_callback(self, task_token).notify(failure)
        return SendTaskFailureOutput()

    def send_task_heartbeat(self: Any, task_token: str) -> Any:
        with _callback_lock:
            open_callback(self, task_token).notify_heartbeat()
        return SendTaskHeartbeatOutput()

    StepFunctionsParserBackend.send_task_success = send_task_success  # type: ignore[method-assign]
    StepFunctionsParserBackend.send_task_failure = send_task_failure  # type: ignore[method-assign]
    StepFunctionsParserBackend.send_task_heartbeat = send_task_heartbeat  # type: ignore[method-assign]


def _carry_the_cause_of_a_task_failure() -> None:
    from moto.core.responses import EmptyResult
    from moto.stepfunctions.responses import StepFunctionResponse

    def send_task_failure(self: Any) -> Any:
        self.stepfunction_backend.send_task_failure(
            self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
        )
        return EmptyResult()

    StepFunctionResponse.send_task_failure = send_task_failure  # type: ignore[method-assign]


def _make_dynamodb_requests_atomic() -> None:
    from moto.dynamodb.responses import DynamoHandler

    call_action = DynamoHandler.call_action

    @functools.wraps(call_action)
    def atomic(self: Any) -> Any:
        with _dynamodb_request_lock:
            return call_action(self)

    DynamoHandler.call_action = atomic  # type: ignore[method-assign]


def _give_each_event_one_time() -> None:
    from moto.core.utils import unix_time
    from moto.events.models import EventsBackend

    put_events = EventsBackend.put_events

    @functools.wraps(put_events)
    def put_events_at_one_time(self: Any, events: list[dict[str, Any]]) -> Any:
        now = unix_time()
        return put_events(self, [{"Time": now, **event} for event in events])

    EventsBackend.put_events = put_events_at_one_time  # type: ignore[method-assign]


def _replay_only_the_window() -> None:
    """StartReplay replays the archived events of its window (EventStartTime to EventEndTime); moto
    replays the whole archive."""
    from moto.events.models import Replay

    replay_events = Replay.replay_events

    @functools.wraps(replay_events)
    def replay_the_window(self: Any, archive: Any) -> None:
        start, end = float(self.event_start_time), float(self.event_end_time)
        in_window = [event for event in archive.events if start <= float(event["time"]) <= end]
        replay_events(self, types.SimpleNamespace(events=in_window))

    Replay.replay_events = replay_the_window  # type: ignore[method-assign]
