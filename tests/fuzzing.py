"""Fuzzing the carebus API from its published description (docs/openapi.yaml) with Schemathesis.

What it generates: the string formats the description names (npi, dea-registration-number, date), drawn
the way the formats define them. What it holds the API to (the verdict): no 5xx; every status and body
as documented; no valid request refused: data generated from the description ("positive") gets one of the
role's expected answers, or a 400 whose every error is a rule the description says only the function
applies (its x-function-only-rules, as carebus.models.FUNCTION_ONLY_RULES) and that the request really
broke, as an oracle here checks apart from the function. The ledger counts what
was sent and collects every distinct failure with a command to reproduce it, instead of stopping at the
first one.
"""

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import hypothesis.errors
from fuzz_oracles import SEED, broke
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)


# ----- the verdict's checks ---------------------------------------------------------------------------------
class ValidRequestRefused(Failure):
    """Data the description allows got a 4xx outside the role's expected answers (not a function-only
    rule the request broke)."""

    kind_title = "Valid request refused"


@dataclass(frozen=True)
class Role:
    """A signed-in user and the answers they may get to a valid request, by operation label."""

    name: str
    id_token: str
    expected: Mapping[str, frozenset[int]]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": self.id_token}


def _problem_codes(response: Response) -> list[str] | None:
    """The codes of a 400 problem's field errors; None when it lists none."""
    try:
        document = response.json()
    except ValueError:
        return None
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list) or not errors:
        return None
    return [str(error.get("code")) if isinstance(error, dict) else "" for error in errors]


def _integral_floats(value: Any) -> bool:
    if isinstance(value, float):
        return value.is_integer()
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return any(_integral_floats(child) for child in children)


# JSON Schema counts 9.0 as an integer; the description says on every integer field that carebus takes
# JSON integers only ("written without a fraction or exponent"), and so do the gateway and the function.
INTEGER_AS_FLOAT = "integer_written_as_float"


def function_only_excuse(case: Case, response: Response, rules: Mapping[str, str]) -> tuple[str, ...] | None:
    """The function-only rules a 400 names, if they are all it names and the request broke each one that
    the oracle knows; None when the refusal is not excused."""
    if response.status_code == 400 and _integral_floats(case.body):
        return (INTEGER_AS_FLOAT,)
    codes = _problem_codes(response) if response.status_code == 400 else None
    if not codes or not set(codes) <= rules.keys():
        return None
    if any(broke(code, case.body) is False for code in set(codes)):
        return None  # the function named a rule the request kept
    return tuple(sorted(set(codes)))


def valid_request_accepted(role: Role, rules: Mapping[str, str], excused: Counter) -> Callable[..., None]:
    def valid_request_accepted(ctx: CheckContext, response: Response, case: Case) -> None:
        meta = case.meta
        if meta is None or not meta.generation.mode.is_positive:
            return
        status = response.status_code
        if status >= 500 or status in role.expected.get(case.operation.label, frozenset()):
            return
        excuse = function_only_excuse(case, response, rules)
        if excuse is not None:
            for code in excuse:
                unknown = code != INTEGER_AS_FLOAT and broke(code, case.body) is None
                excused[(role.name, case.operation.label, code + (" (unverified)" if unknown else ""))] += 1
            return
        expected = ", ".join(map(str, sorted(role.expected.get(case.operation.label, ())))) or "none"
        codes = _problem_codes(response)
        raise ValidRequestRefused(
            operation=case.operation.label,
            title=f"Valid request refused: {status}",
            message=f"as {role.name}; expected {expected} (or a 400 naming only function-only rules it "
            f"broke); error codes: {codes}; body: {response.text[:300]}",
        )

    return valid_request_accepted


VERDICT_CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    missing_required_header,
)


# ----- the ledger -------------------------------------------------------------------------------------------
@dataclass
class Finding:
    role: str
    operation: str
    status: int
    title: str
    message: str
    reproduce: str
    count: int = 1


@dataclass
class Ledger:
    """What was sent, what came back, and every distinct failure (by role, operation, status, check)."""

    sent: Counter = field(default_factory=Counter)  # (role, operation, mode, status) -> requests
    excused: Counter = field(default_factory=Counter)  # (role, operation, rule) -> 400s excused
    findings: dict[tuple[str, str, int, str], Finding] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds, by part of the run

    def record(self, role: Role, case: Case, response: Response, failures: Iterable[Failure]) -> None:
        mode = case.meta.generation.mode.value if case.meta is not None else "?"
        self.sent[(role.name, case.operation.label, mode, response.status_code)] += 1
        for failure in failures:
            key = (role.name, case.operation.label, response.status_code, failure.title)
            if key in self.findings:
                self.findings[key].count += 1
                continue
            try:
                reproduce = case.as_curl_command(headers={"Authorization": f"<{role.name} ID token>"})
            except Exception as error:  # noqa: BLE001 - a command is a courtesy; the failure stays
                reproduce = f"(no command: {error})"
            self.findings[key] = Finding(
                role.name,
                case.operation.label,
                response.status_code,
                failure.title,
                " ".join(str(failure.message).split())[:600],
                reproduce[:1500],
            )

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    def answered(self, operation: str, status: int) -> int:
        """How many requests to the operation got this status."""
        return sum(n for (_, label, _, got), n in self.sent.items() if label == operation and got == status)

    def summary(self) -> str:
        lines = [f"{self.total} requests (seed {SEED}); by role, operation, generation mode and status:"]
        by_operation: dict[tuple[str, str, str], Counter] = {}
        for (role, operation, mode, status), count in sorted(self.sent.items()):
            by_operation.setdefault((role, operation, mode), Counter())[status] += count
        for (role, operation, mode), statuses in by_operation.items():
            shown = ", ".join(f"{status}x{count}" for status, count in sorted(statuses.items()))
            lines.append(f"  {role:<10} {operation:<38} {mode:<8} {shown}")
        if self.excused:
            lines.append("400s excused by function-only rules the request broke:")
            lines += [f"  {r:<10} {o:<38} {rule} x{n}" for (r, o, rule), n in sorted(self.excused.items())]
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"time: {part}: {seconds:.1f} s" for part, seconds in self.timings.items()]
        lines.append(f"{len(self.findings)} distinct failures")
        for finding in self.findings.values():
            lines += [
                f"- {finding.role} {finding.operation} -> {finding.status}: {finding.title}"
                f" (x{finding.count})",
                f"    {finding.message}",
                f"    {finding.reproduce}",
            ]
        return "\n".join(lines)


# ----- running it -------------------------------------------------------------------------------------------
IDEMPOTENCY_KEY = "Idempotency-Key"


def one_key_per_body(case: Case) -> None:
    """Valid data as the description's client sends it: one Idempotency-Key per encounter ("sent again on
    every retry"), so the generated key is suffixed with a digest of the body; the same key and body
    still come again (a retry), and a key never stands for two bodies (a 409, by the description)."""
    if case.meta is None or not case.meta.generation.mode.is_positive or not case.headers:
        return
    name = next((header for header in case.headers if header.lower() == IDEMPOTENCY_KEY.lower()), None)
    if name is None or not isinstance(case.headers[name], str):
        return
    digest = hashlib.sha256(json.dumps(case.body, sort_keys=True, default=str).encode()).hexdigest()[:16]
    case.headers[name] = f"{case.headers[name][:238]}-{digest}"


@dataclass
class Fuzzer:
    """Sends cases as a role, checks each answer against the verdict and records it in the ledger. Runs are
    bounded by counts (examples, scenarios, steps), never by the clock: the same code sends the same
    requests however loaded the machine is."""

    ledger: Ledger
    function_only: Mapping[str, str]  # error code -> rule, as the description declares them

    def exercise(self, case: Case, role: Role) -> Response:
        one_key_per_body(case)
        response = case.call(headers=role.headers)
        checks = [*VERDICT_CHECKS, valid_request_accepted(role, self.function_only, self.ledger.excused)]
        try:
            case.validate_response(
                response, checks=checks, headers=role.headers, transport_kwargs={"headers": role.headers}
            )
        except FailureGroup as group:
            self.ledger.record(role, case, response, group.exceptions)
        except Failure as failure:
            self.ledger.record(role, case, response, [failure])
        else:
            self.ledger.record(role, case, response, [])
        return response

    def coverage(self, operation: Any, role: Role, modes: Iterable[GenerationMode]) -> None:
        """Schemathesis's coverage phase: boundary values, missing and unexpected members (deterministic)."""
        schema = operation.schema
        cases = schema.iter_coverage_cases(
            operation,
            generation_modes=list(modes),
            generation_config=schema.config.generation_for(operation=operation),
        )
        started = time.monotonic()
        for case in cases:
            self.exercise(case, role)
        self.ledger.timings[f"coverage of {operation.label} as {role.name}"] = time.monotonic() - started

    def fuzz(self, operation: Any, role: Role, mode: GenerationMode, examples: int) -> None:
        """Hypothesis's generation for the operation, seeded, without shrinking (failures are collected)."""

        @hypothesis.seed(SEED)
        @hypothesis.settings(fuzz_settings(examples))
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Case) -> None:
            self.exercise(case, role)

        started = time.monotonic()
        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            # No value breaks the schema where it can be sent (a path parameter of any string, say).
            self.ledger.notes.append(f"no {mode.value} data for {operation.label}")
        self.ledger.timings[f"{mode.value} fuzzing of {operation.label} as {role.name}"] = (
            time.monotonic() - started
        )

    def stateful(self, schema: Any, role_of: Callable[[Case], Role], scenarios: int, steps: int) -> None:
        """Scenarios along the description's links (and the ones Schemathesis infers), each step as the
        role that owns the operation."""
        fuzzer = self

        def run(seed: int) -> None:
            @hypothesis.seed(seed)
            class Scenarios(schema.as_state_machine()):  # type: ignore[misc]
                rule_order_seed = seed

                def call(self, case: Case, **kwargs: Any) -> Response:
                    return fuzzer.exercise(case, role_of(case))

                def validate_response(self, response: Response, case: Case, *_: Any, **__: Any) -> None:
                    pass  # done, and recorded, by exercise()

            Scenarios.run(settings=hypothesis.settings(fuzz_settings(scenarios), stateful_step_count=steps))

        # What a link offers (an approval in the list) depends on what the API holds, which earlier scenarios
        # change: when Hypothesis walks a known prefix and finds other choices offered, it stops the run as
        # flaky. That says nothing of the API, so the scenarios go on from the next seed (answers already
        # checked stay in the ledger).
        for attempt in range(_STATEFUL_ATTEMPTS):
            try:
                run(SEED + attempt)
                return
            except hypothesis.errors.FlakyStrategyDefinition:
                self.ledger.notes.append(f"scenarios from seed {SEED + attempt} stopped: API state changed")


_STATEFUL_ATTEMPTS = 3


def fuzz_settings(examples: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=examples,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],  # no shrinking: every failure is kept
        database=None,
        deadline=None,
        derandomize=False,
        print_blob=False,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
