"""A function's execution environments, as Lambda keeps them, so that the offline stack runs invocations
concurrently as AWS does: each environment is its own import of the handler (its own clients, resolver,
loggers and metrics objects) and runs one invocation at a time; when every environment is busy a new one
starts (a cold start), up to the function's concurrency.
"""

import threading
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from carebus_local.functions import InProcessFunction
from carebus_local.stack import FunctionSpec

# What caps a function's concurrency offline when nothing in the template does (Lambda's would be the
# account's limit); the queue consumers are capped by their mappings' MaximumConcurrency.
DEFAULT_CONCURRENCY = 10


class _PerThreadDict(MutableMapping[str, Any]):
    """A dict whose contents belong to the thread that touches it."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _data(self) -> dict[str, Any]:
        data: dict[str, Any] | None = getattr(self._local, "data", None)
        if data is None:
            data = self._local.data = {}
        return data

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data()))

    def __len__(self) -> int:
        return len(self._data())

    def copy(self) -> dict[str, Any]:
        return dict(self._data())


class _PerThreadAttribute:
    """A class attribute whose value belongs to the thread that set it."""

    def __init__(self) -> None:
        self._local = threading.local()

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        return getattr(self._local, "value", None)

    def __set__(self, instance: Any, value: Any) -> None:
        self._local.value = value


_isolated = False
_isolation_lock = threading.Lock()


def isolate_powertools_process_state() -> None:
    """What Powertools keeps once per process, kept once per thread instead. On Lambda a process runs one
    invocation at a time; here one process runs many functions' invocations at once, each on its own
    thread, so each thread gets what its own process would have:
    - the metric set every Metrics object shares (so that one function can create several);
    - the event and context the event handler's resolvers publish on BaseRouter (so that routers split
      over modules can read them); shared, concurrent requests would read each other's.
    Call before any handler is imported (idempotent)."""
    global _isolated
    with _isolation_lock:
        if _isolated:
            return
        from aws_lambda_powertools.event_handler.api_gateway import BaseRouter
        from aws_lambda_powertools.metrics import Metrics

        for name in ("_metrics", "_dimensions", "_metadata", "_default_dimensions"):
            setattr(Metrics, name, _PerThreadDict())
        # BaseRouter.current_event = ... is a class attribute assignment: it goes through the metaclass,
        # so the per-thread attribute sits on a metaclass of BaseRouter's own (and, for reads through an
        # instance, on BaseRouter itself).
        attributes = {name: _PerThreadAttribute() for name in ("current_event", "lambda_context")}
        for name, attribute in attributes.items():
            setattr(BaseRouter, name, attribute)
        BaseRouter.__class__ = type("PerThreadRouterMeta", (type(BaseRouter),), attributes)
        _isolated = True


class ExecutionEnvironments:
    """The environments of one function; invoke() runs an event in an idle one, starting one if needed."""

    def __init__(
        self,
        spec: FunctionSpec,
        variables: Mapping[str, str],
        concurrency: int,
        timeout_seconds: int | None = None,
    ) -> None:
        self.spec = spec
        self.variables = dict(variables)
        self.concurrency = concurrency
        self.timeout_seconds = timeout_seconds
        self.started = 0
        self._idle: list[InProcessFunction] = []
        self._available = threading.Condition()

    def _environment(self) -> InProcessFunction:
        with self._available:
            while not self._idle and self.started >= self.concurrency:
                self._available.wait()
            if self._idle:
                return self._idle.pop()
            self.started += 1
            number = self.started
        environment = InProcessFunction(self.spec, self.variables, self.timeout_seconds)
        if number > 1:
            environment.module_name = f"{environment.module_name}_environment_{number}"
        return environment

    def warm(self) -> None:
        """Start one environment now (its cold start: the handler's import) and leave it idle."""
        environment = self._environment()
        try:
            environment.handler()
        finally:
            self._release(environment)

    def _release(self, environment: InProcessFunction) -> None:
        with self._available:
            self._idle.append(environment)
            self._available.notify()

    def invoke(self, event: dict[str, Any]) -> Any:
        environment = self._environment()
        try:
            return environment.invoke(event)
        finally:
            self._release(environment)
