"""The whole stack on a laptop: moto as a server in a process of its own, template.yaml provisioned on it,
the real handlers run in-process by emulated event source mappings, rule targets and a local API Gateway."""

import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from carebus_client.stacks import DEFAULT_STACK_NAME, LOCAL_CREDENTIALS
from carebus_client.users import add_pool_user
from carebus_local.api_destinations import ApiDestinations, Backoff
from carebus_local.api_server import DEFAULT_READ_TIMEOUT_SECONDS, api_server
from carebus_local.api_stack import api_router, local_outputs
from carebus_local.apigateway import LocalRestApi
from carebus_local.clearinghouse import ClearinghouseStandIn, start_for_stack
from carebus_local.delivery import RuleTargetDelivery
from carebus_local.demo_users import DEMO_PASSWORD, DEMO_USERS
from carebus_local.environments import (
    DEFAULT_CONCURRENCY,
    ExecutionEnvironments,
    isolate_powertools_process_state,
)
from carebus_local.moto_process import MotoProcess
from carebus_local.pollers import QueuePoller
from carebus_local.provision import Provisioner
from carebus_local.stack import EventSourceMappingSpec, OfflineStack, RuleTargetSpec
from carebus_local.template import TEMPLATE_PATH, load_template, translate

log = logging.getLogger("carebus.local")

# How long stop() waits for the runtime's own threads (pollers finishing a batch, deliveries) in all.
STOP_TIMEOUT_SECONDS = 5.0


@dataclass
class RuntimeOptions:
    """Where the offline stack listens and how it is shaped."""

    host: str = "127.0.0.1"
    aws_port: int = 4566
    api_port: int = 3000
    stack_name: str = DEFAULT_STACK_NAME
    region: str = "us-east-1"
    template_path: Path = TEMPLATE_PATH
    parameters: dict[str, str] = field(default_factory=dict)
    # None keeps each queue's visibility timeout before a failed message is retried, as on Lambda; a
    # number shortens it (tests and labs do not want to wait two minutes per retry). Handlers then see a
    # function timeout no longer than it, so that the template's rule holds in lab time too: a message is
    # retried only after the invocation that failed it has timed out (Powertools' in-progress
    # idempotency records last as long as that invocation could).
    retry_failed_after_seconds: int | None = None
    # None keeps each mapping's MaximumBatchingWindowInSeconds from the template; a number is every mapping's
    # window instead (lab time: tests and labs need not wait out the window at each hop).
    batching_window_seconds: float | None = None
    env_json_path: Path | None = None
    # How long the local API waits on a client that has gone quiet mid-request before answering 400 and
    # closing; tests shorten it rather than wait out the default.
    api_read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS
    # The path each REST API is served under on the API port, by logical id: on AWS each API has a host of
    # its own, offline a path prefix stands in for it ({api_url}/partner/v1). The one API not named here is
    # served at the root ({api_url}/v1), and answers paths under no API. See carebus_local/api_stack.py.
    api_base_paths: dict[str, str] = field(default_factory=lambda: {"PartnerApi": "partner"})
    # A file that also gets the handlers' log lines (whoever runs the stack writes them there); published as
    # the stack's HandlerLogFile output, where on AWS a client would read CloudWatch Logs.
    handler_log_path: Path | None = None
    # ----- clearinghouse: the outbound API destination ----------------------------------------------
    # A stand-in clearinghouse (carebus_local.clearinghouse) started first, the template's Clearinghouse*
    # parameters pointed at it (the parameters above still win); its admin URL and CA file become outputs.
    clearinghouse: bool = False
    # Lab-time backoff between an API destination's retries (EventBridge's spreads 185 over a day).
    api_destination_backoff: Backoff = field(default_factory=Backoff)


class OfflineRuntime:
    """Start, serve, stop. Deployed code never imports this; it only runs the handlers as Lambda would."""

    def __init__(self, options: RuntimeOptions | None = None) -> None:
        self.options = options or RuntimeOptions()
        self.endpoint_url = f"http://{self.options.host}:{self.options.aws_port}"
        self.api_url = f"http://{self.options.host}:{self.options.api_port}"
        self.stack: OfflineStack | None = None
        self.functions: dict[str, ExecutionEnvironments] = {}
        self.invocations: Counter[str] = Counter()
        self._counting_lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._moto: MotoProcess | None = None
        # The API at the root, and every API by logical id.
        self.rest_api: LocalRestApi | None = None
        self.rest_apis: dict[str, LocalRestApi] = {}
        self._http: ThreadingHTTPServer | None = None
        self.clearinghouse: ClearinghouseStandIn | None = None

    @property
    def moto_pid(self) -> int | None:
        """The process moto serves from, while the runtime runs."""
        return self._moto.pid if self._moto else None

    # ----- clients ---------------------------------------------------------------------------------
    def client(self, service: str, connections: int = 10) -> Any:
        """A client of the local endpoint; `connections` as many as the threads that share it use at once
        (beyond it, each call opens a connection of its own and drops it)."""
        return boto3.client(
            service,
            region_name=self.options.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=LOCAL_CREDENTIALS["AWS_SESSION_TOKEN"],
            config=Config(retries={"max_attempts": 2}, max_pool_connections=connections),
        )

    # ----- life cycle ------------------------------------------------------------------------------
    def start(self) -> "OfflineRuntime":
        """Everything started, or (if a step fails) everything stopped again before the error is raised."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        isolate_powertools_process_state()
        # moto in a process of its own: it answers on the other core while the handlers run on this one.
        self._moto = MotoProcess(self.options.host, self.options.aws_port)
        self._moto.start()
        self._moto.configure({"stepfunctions": {"execute_state_machine": True}})
        sam_template = load_template(self.options.template_path)
        parameters = self._start_clearinghouse()
        # The transform resolves the parameters some SAM-only properties use, as CloudFormation gives them.
        cfn = translate(sam_template, parameters, region=self.options.region)
        self.stack = Provisioner(
            cfn,
            sam_template,
            stack_name=self.options.stack_name,
            region=self.options.region,
            parameters=parameters,
            endpoint_url=self.endpoint_url,
            template_dir=self.options.template_path.parent,
        ).provision()
        self.stack.outputs = local_outputs(self.stack, self.api_url, self.options.api_base_paths)
        if self.clearinghouse is not None:
            self.stack.outputs.update(self.clearinghouse.outputs())
        if self.options.handler_log_path is not None:
            self.stack.outputs["HandlerLogFile"] = str(self.options.handler_log_path)
        self._publish_outputs()
        self._seed_users()
        self.functions = {
            logical_id: ExecutionEnvironments(
                spec,
                self.function_environment(logical_id),
                self._concurrency(logical_id),
                self._lab_timeout(spec.timeout),
            )
            for logical_id, spec in self.stack.functions.items()
        }
        if self.options.env_json_path:
            self.write_env_json(self.options.env_json_path)
        self._start_pollers()
        self._start_rule_delivery()
        self._start_api()

    def stop(self) -> None:
        """Bounded: the runtime's threads get STOP_TIMEOUT_SECONDS in all, then moto is stopped (killed if
        it does not end)."""
        self._stopping.set()
        if self._http:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self.clearinghouse:
            self.clearinghouse.stop()
            self.clearinghouse = None
        if self._moto:
            self._moto.stop()
            self._moto = None

    def __enter__(self) -> "OfflineRuntime":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ----- set-up steps ----------------------------------------------------------------------------
    def _publish_outputs(self) -> None:
        """A CloudFormation stack that carries the outputs, so that clients find the offline stack
        exactly as they find a deployed one (DescribeStacks)."""
        assert self.stack is not None
        template = {
            "Resources": {
                "OfflineStackMarker": {
                    "Type": "AWS::SSM::Parameter",
                    "Properties": {
                        "Name": f"/{self.stack.name}/offline",
                        "Type": "String",
                        "Value": "carebus",
                    },
                }
            },
            "Outputs": {name: {"Value": str(value)} for name, value in self.stack.outputs.items()},
        }
        self.client("cloudformation").create_stack(
            StackName=self.stack.name, TemplateBody=json.dumps(template)
        )

    def _seed_users(self) -> None:
        assert self.stack is not None
        cognito = self.client("cognito-idp")
        for username, groups in DEMO_USERS.values():
            add_pool_user(cognito, self.stack.outputs["UserPoolId"], username, DEMO_PASSWORD, groups)

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """The function's template environment, pointed at the local endpoint."""
        assert self.stack is not None
        return {
            **self.stack.function_environment(logical_id),
            **LOCAL_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            # No X-Ray daemon offline.
            "POWERTOOLS_TRACE_DISABLED": "true",
        }

    def write_env_json(self, path: Path) -> None:
        """Environment for `sam local invoke --env-vars`: the same names, the endpoint as Docker sees it."""
        assert self.stack is not None
        docker_endpoint = f"http://host.docker.internal:{self.options.aws_port}"
        environments = {
            logical_id: {**spec.environment, "AWS_ENDPOINT_URL": docker_endpoint, **LOCAL_CREDENTIALS}
            for logical_id, spec in self.stack.functions.items()
        }
        path.write_text(json.dumps(environments, indent=2) + "\n")

    # ----- running functions -----------------------------------------------------------------------
    def _concurrency(self, logical_id: str) -> int:
        """How many environments a function may run at once: its mappings' MaximumConcurrency, if a queue
        feeds it, else the offline default."""
        assert self.stack is not None
        caps = [
            mapping.maximum_concurrency or DEFAULT_CONCURRENCY
            for mapping in self.stack.event_source_mappings
            if mapping.function_logical_id == logical_id
        ]
        return sum(caps) if caps else DEFAULT_CONCURRENCY

    def _lab_timeout(self, timeout: int) -> int | None:
        retry_after = self.options.retry_failed_after_seconds
        return None if retry_after is None else min(timeout, max(1, retry_after))

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        """One invocation, in an idle execution environment of the function (or a new one)."""
        with self._counting_lock:
            self.invocations[logical_id] += 1
        return self.functions[logical_id].invoke(event)

    def invoke_arn(self, function_arn: str, event: dict[str, Any]) -> Any:
        assert self.stack is not None
        [logical_id] = [lid for lid, spec in self.stack.functions.items() if spec.arn == function_arn]
        return self.invoke(logical_id, event)

    def _start_pollers(self) -> None:
        """Lambda polls a queue with as many concurrent batches as the mapping's MaximumConcurrency."""
        assert self.stack is not None
        mappings = self.stack.event_source_mappings
        sqs = self.client("sqs", connections=sum(_pollers_of(mapping) for mapping in mappings))
        for mapping in mappings:
            for number in range(_pollers_of(mapping)):
                poller = QueuePoller(
                    sqs,
                    mapping,
                    _Invoker(self, mapping.function_logical_id),
                    self.options.region,
                    self.options.batching_window_seconds,
                    self._stopping,
                )
                self._spawn(f"poll-{mapping.function_logical_id}-{number}", self._poll_forever, poller)

    def _poll_forever(self, poller: QueuePoller) -> None:
        while not self._stopping.is_set():
            try:
                result = poller.poll_once(
                    wait_seconds=1, retry_after_seconds=self.options.retry_failed_after_seconds
                )
            except Exception:
                if self._stopping.is_set():
                    return
                log.exception("Polling %s failed", poller.queue_url)
                self._stopping.wait(1)
                continue
            if result.failed:
                log.warning(
                    "%s: %d of %d messages failed%s",
                    poller.queue_url,
                    len(result.failed),
                    len(result.received),
                    f" ({result.error})" if result.error else "",
                )

    def _start_rule_delivery(self) -> None:
        """One delivery thread per target, each long-polling its shadow queue."""
        assert self.stack is not None
        targets = self.stack.rule_targets
        delivery = RuleTargetDelivery(
            targets,
            self.client("sqs", connections=len(targets)),
            self.client("stepfunctions", connections=len(targets)),
            self.invoke_arn,
            ApiDestinations(
                self.client("events", connections=len(targets)),
                self.client("secretsmanager", connections=len(targets)),
                ca_file=self.clearinghouse.ca_file if self.clearinghouse else None,
                backoff=self.options.api_destination_backoff,
            ),
        )
        for number, spec in enumerate(targets):
            self._spawn(f"rule-target-{number}", self._deliver_forever, delivery, spec)

    def _deliver_forever(self, delivery: RuleTargetDelivery, spec: RuleTargetSpec) -> None:
        while not self._stopping.is_set():
            try:
                delivery.deliver_waiting(spec, wait_seconds=1)
            except Exception:
                if self._stopping.is_set():
                    return
                log.exception("Delivering to the targets of rule %s failed", spec.rule_name)
                self._stopping.wait(1)

    # ----- clearinghouse stand-in ------------------------------------------------------------------
    def _start_clearinghouse(self) -> dict[str, str]:
        """The template's parameters: the options', pointed at a stand-in clearinghouse if they ask."""
        if not self.options.clearinghouse:
            return dict(self.options.parameters)
        self.clearinghouse, parameters = start_for_stack(
            self.client("secretsmanager"), self.options.stack_name, self.options.host, self.options.parameters
        )
        return parameters

    def _start_api(self) -> None:
        assert self.stack is not None
        base_paths = self.options.api_base_paths
        router, self.rest_apis = api_router(
            self.stack, base_paths, self.invoke_arn, self.client, self.endpoint_url
        )
        [root] = [logical_id for logical_id in self.rest_apis if not base_paths.get(logical_id)]
        self.rest_api = self.rest_apis[root]
        self._http = api_server(
            router, self.options.host, self.options.api_port, self.options.api_read_timeout_seconds
        )
        self._spawn("api", self._http.serve_forever)

    def _spawn(self, name: str, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"carebus-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)


def _pollers_of(mapping: EventSourceMappingSpec) -> int:
    return mapping.maximum_concurrency or DEFAULT_CONCURRENCY


class _Invoker:
    """What a poller calls: the runtime's serialized invocation of one function."""

    def __init__(self, runtime: OfflineRuntime, logical_id: str) -> None:
        self.runtime = runtime
        self.logical_id = logical_id

    def invoke(self, event: dict[str, Any]) -> Any:
        return self.runtime.invoke(self.logical_id, event)
