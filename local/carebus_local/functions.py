"""Run a function's real handler in-process, imported with the environment the template gives it."""

import importlib.util
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from carebus_local.stack import FunctionSpec

_import_lock = threading.Lock()
# The logical id of the function whose handler runs on this thread (None outside any invocation): what a
# fault injector uses to reach only the handlers' own AWS calls.
CURRENT_FUNCTION: ContextVar[str | None] = ContextVar("carebus_current_function", default=None)


@dataclass
class LambdaContext:
    """The context object Lambda passes a handler: name, memory, ARN, request id and a deadline."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        self.log_group_name = f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """The process environment with these variables set, restored afterwards."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class InProcessFunction:
    """One function's handler, imported once (its cold start) with the function's environment.

    Handlers read their configuration at import (module scope, as on Lambda), so each function is a
    separate module even though every handler file is called app.py.
    """

    def __init__(
        self, spec: FunctionSpec, environment_variables: Mapping[str, str], timeout_seconds: int | None = None
    ) -> None:
        self.spec = spec
        # The deadline the handler's context reports: the template's timeout unless lab time shortens it.
        self.timeout_seconds = timeout_seconds or spec.timeout
        self.environment = dict(environment_variables)
        self._handler: Callable[[dict[str, Any], Any], Any] | None = None
        # The module's __name__: the same in every execution environment of the function, as "app" is on
        # Lambda (Powertools names idempotency records after it); module_name, its key in sys.modules, is
        # made unique per environment.
        self.module_identity = f"carebus_function_{spec.logical_id}"
        self.module_name = self.module_identity

    def handler(self) -> Callable[[dict[str, Any], Any], Any]:
        if self._handler is None:
            module_file, _, function_name = self.spec.handler.rpartition(".")
            path = self.spec.code_dir / f"{module_file.replace('.', '/')}.py"
            with _import_lock, environment(self.environment):
                spec = importlib.util.spec_from_file_location(self.module_identity, path)
                if spec is None or spec.loader is None:
                    raise ImportError(f"cannot load {path}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[self.module_name] = module
                spec.loader.exec_module(module)
            self._handler = getattr(module, function_name)
        return self._handler

    @property
    def module(self) -> Any:
        self.handler()
        return sys.modules[self.module_name]

    def context(self) -> LambdaContext:
        return LambdaContext(
            function_name=self.spec.name,
            memory_limit_in_mb=self.spec.memory_size,
            invoked_function_arn=self.spec.arn,
            timeout_seconds=self.timeout_seconds,
        )

    def invoke(self, event: dict[str, Any]) -> Any:
        handler = self.handler()
        running = CURRENT_FUNCTION.set(self.spec.logical_id)
        try:
            return handler(event, self.context())
        finally:
            CURRENT_FUNCTION.reset(running)
