"""Cold init of each function as `sam build` ships it, against the SDK floor and the library floor.

The build is the real `sam build` (no container) into a temporary folder; the Powertools layer, which
cannot be downloaded here, is the same release built as the deploy rehearsal builds it. Each sample is a
fresh interpreter (import_probe.py) with the function's template environment, tracing on as deployed.
"""

import compileall
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from carebus_bench.stats import Summary, interleaved, ratio, summarize
from carebus_bench.template_facts import ACCOUNT, REGION, STACK, FunctionSpec, functions
from carebus_local.template import PROJECT_ROOT, load_template
from carebus_tooling.engine import build_powertools_layer, powertools_pins

PROBE: Final = Path(__file__).with_name("import_probe.py")
# Built once per Powertools release and reused: `make clean` removes it with the rest of .aws-sam.
BENCH_CACHE: Final = PROJECT_ROOT / ".aws-sam" / "bench"
LAYER_CACHE: Final = BENCH_CACHE / "powertools-layer"
# The Lambda runtime's own packages: the SDK and what it needs, nothing else (the dev venv also holds
# pyOpenSSL and awscrt, which botocore would import if it found them, and Lambda does not ship them).
RUNTIME_CACHE: Final = BENCH_CACHE / "runtime"
RUNTIME_PACKAGES: Final = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six")
_PROBE_SECONDS: Final = 120
# What the Lambda runtime sets for every function (values plausible, none reaching AWS): the region,
# credentials no account accepts, and the variables Powertools reads to know it runs on Lambda.
_FAKE_CREDENTIALS: Final = {
    "AWS_ACCESS_KEY_ID": "ASIABENCHBENCHBENCH0",
    "AWS_SECRET_ACCESS_KEY": "carebus-bench-not-a-secret",
    "AWS_SESSION_TOKEN": "carebus-bench",
}
REFERENCES: Final = ("function", "sdk floor", "library floor")


@dataclass(frozen=True)
class Build:
    """A `sam build` output, the layers a function sees at /opt/python (in the template's order) and the
    runtime's packages after them."""

    build_dir: Path
    layer_paths: tuple[Path, ...]
    runtime: Path

    def code_dir(self, function: FunctionSpec) -> Path:
        return self.build_dir / function.logical_id


def powertools_layer(python: Path = Path(sys.executable)) -> Path:
    """The Powertools release pinned here, as a layer folder (python/ inside), compiled once: the
    references import the very same files, so compilation never lands on one side only."""
    pins = powertools_pins()
    marker = LAYER_CACHE / "pins.json"
    if not marker.exists() or json.loads(marker.read_text()) != pins:
        build_powertools_layer(python, LAYER_CACHE, pins)
        compileall.compile_dir(LAYER_CACHE / "python", quiet=1)
        marker.write_text(json.dumps(pins))
    return LAYER_CACHE / "python"


def runtime_packages(python: Path = Path(sys.executable)) -> Path:
    """The runtime's SDK at the versions installed here, in a folder of its own (built once)."""
    pins = {name: importlib.metadata.version(name) for name in RUNTIME_PACKAGES}
    marker = RUNTIME_CACHE / "pins.json"
    if not marker.exists() or json.loads(marker.read_text()) != pins:
        shutil.rmtree(RUNTIME_CACHE, ignore_errors=True)
        subprocess.run(  # noqa: S603 - this interpreter's pip, pinned requirements
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(RUNTIME_CACHE / "site"),
            ]
            + [f"{name}=={version}" for name, version in pins.items()],
            check=True,
            capture_output=True,
            timeout=600,
        )
        marker.write_text(json.dumps(pins))
    return RUNTIME_CACHE / "site"


def sam_build(build_dir: Path) -> None:
    """`make build`'s command into another folder (the venv's python3.13 first on PATH, as there)."""
    bin_dir = Path(sys.executable).parent
    environment = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SAM_CLI_TELEMETRY": "0",
    }
    subprocess.run(  # noqa: S603 - the venv's sam, fixed arguments
        [
            str(bin_dir / "sam"),
            "build",
            "--template",
            str(PROJECT_ROOT / "template.yaml"),
            "--build-dir",
            str(build_dir),
            "--cache-dir",
            str(build_dir.parent / "sam-cache"),
        ],
        check=True,
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        timeout=600,
    )


def layer_paths(build_dir: Path, powertools: Path, template: Mapping[str, Any]) -> tuple[Path, ...]:
    """Globals' layers in order: one built by `sam build` maps to its output, any other (the public
    Powertools ARN) to the locally built release."""
    paths = []
    resources = template["Resources"]
    for layer in template.get("Globals", {}).get("Function", {}).get("Layers", []):
        reference = layer.get("Ref") if isinstance(layer, dict) else None
        if reference in resources and resources[reference]["Type"] == "AWS::Serverless::LayerVersion":
            paths.append(build_dir / reference / "python")
        else:
            paths.append(powertools)
    return tuple(paths)


def lambda_environment(function: FunctionSpec, code_dir: Path, scratch: Path) -> dict[str, str]:
    """The process environment of the function on Lambda: runtime variables, then the template's."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "HOME": str(scratch),
        # No shared config or credentials file: Lambda has none, and the bench must not read the user's.
        "AWS_CONFIG_FILE": str(scratch / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(scratch / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        **_FAKE_CREDENTIALS,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": f"{STACK}-{function.logical_id}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{STACK}-{function.logical_id}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "LAMBDA_TASK_ROOT": str(code_dir),
        "LAMBDA_RUNTIME_DIR": str(scratch),
        "_HANDLER": f"{function.handler_module}.handler",
        # Active tracing: the runtime points the X-Ray SDK at a daemon; none listens here, none is needed.
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "_X_AMZN_TRACE_ID": f"Root=1-00000000-{ACCOUNT}000000000000;Parent=0000000000000000;Sampled=1",
        **function.environment,
    }


def spec_json(plan: "ColdInitPlan", reference: str) -> str:
    """The probe's argument for one reference of a plan."""
    return json.dumps(plan.spec(reference))


def probe(spec: Mapping[str, Any], environment: Mapping[str, str]) -> dict[str, Any]:
    """One fresh interpreter running import_probe.py: -I ignores PYTHON* variables, -S leaves out every
    site-packages (the spec's paths are all it sees beyond the standard library), -B writes no bytecode
    (Lambda's code folder is read-only, and `sam build` ships no .pyc)."""
    answer = subprocess.run(  # noqa: S603 - this interpreter, the bench's own probe
        [sys.executable, "-I", "-S", "-B", str(PROBE), json.dumps(dict(spec))],
        check=True,
        capture_output=True,
        text=True,
        env=dict(environment),
        timeout=_PROBE_SECONDS,
    )
    return json.loads(answer.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class ColdInitPlan:
    """What to run for one function: its environment, its sys.path, and the discovered references."""

    function: FunctionSpec
    environment: dict[str, str]
    paths: list[str]
    services: list[str]
    library_modules: list[str]
    clients_created: int
    origins: dict[str, str | None]

    def spec(self, reference: str) -> dict[str, Any]:
        mode = {"function": "function", "sdk floor": "sdk", "library floor": "library"}[reference]
        modules = self.library_modules if mode == "library" else []
        return {
            "mode": mode,
            "paths": self.paths,
            "module": self.function.handler_module,
            "services": self.services,
            "modules": modules,
        }


def plan(function: FunctionSpec, build: Build, scratch: Path) -> ColdInitPlan:
    """Import the function once, untimed, to learn which clients it creates and which library modules
    it loads; refuse to go on if its packages did not come from the build and the layers."""
    code_dir = build.code_dir(function)
    environment = lambda_environment(function, code_dir, scratch)
    paths = [str(code_dir), *map(str, build.layer_paths), str(build.runtime)]
    found = probe(
        {
            "mode": "discover",
            "paths": paths,
            "module": function.handler_module,
            "library_roots": [str(path) for path in build.layer_paths if path.parent.name != "DomainLayer"],
        },
        environment,
    )
    expected = {
        "carebus": build.layer_paths,
        "aws_lambda_powertools": build.layer_paths,
        "boto3": [build.runtime],
    }
    for package, folders in expected.items():
        origin = found["origins"].get(package) or ""
        if not origin.startswith(tuple(map(str, folders))):
            raise RuntimeError(f"{function.logical_id} imported {package} from {origin}, not from {folders}")
    return ColdInitPlan(
        function=function,
        environment=environment,
        paths=paths,
        services=sorted(set(found["services"])),
        library_modules=found["library_modules"],
        clients_created=len(found["services"]),
        origins=found["origins"],
    )


def _milliseconds(samples: Mapping[str, Sequence[dict[str, float]]], key: str) -> list[Summary]:
    return [summarize([1000 * sample[key] for sample in samples[reference]]) for reference in REFERENCES]


def _paired(samples: Mapping[str, Sequence[dict[str, float]]], reference: str) -> Summary:
    """The function's sample over the reference's of the same round, round by round."""
    pairs = zip(samples["function"], samples[reference], strict=True)
    return summarize([function["seconds"] / floor["seconds"] for function, floor in pairs])


def result_of(plan: ColdInitPlan, samples: Mapping[str, Sequence[dict[str, float]]]) -> dict[str, Any]:
    """One function's figures: medians in ms with spread, ratios of medians, paired per-round ratios,
    and the same ratios in CPU time."""
    function, sdk, library = _milliseconds(samples, "seconds")
    cpu_function, cpu_sdk, cpu_library = _milliseconds(samples, "cpu_seconds")
    return {
        "function": plan.function.logical_id,
        "services": plan.services,
        "clients_created": plan.clients_created,
        "library_modules": len(plan.library_modules),
        "init_ms": function.to_json(),
        "sdk_floor_ms": sdk.to_json(),
        "library_floor_ms": library.to_json(),
        "ratio_to_sdk_floor": ratio(function, sdk),
        "ratio_to_library_floor": ratio(function, library),
        "paired_ratio_to_sdk_floor": _paired(samples, "sdk floor").to_json(),
        "paired_ratio_to_library_floor": _paired(samples, "library floor").to_json(),
        "cpu_init_ms": cpu_function.to_json(),
        "cpu_ratio_to_sdk_floor": ratio(cpu_function, cpu_sdk),
        "cpu_ratio_to_library_floor": ratio(cpu_function, cpu_library),
        "delta_over_sdk_floor_ms": function.median - sdk.median,
        "delta_over_library_floor_ms": function.median - library.median,
    }


def measure_cold_init(
    rounds: int,
    only: Sequence[str] = (),
    attribute: Callable[["ColdInitPlan"], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Build, discover, then `rounds` round-robin passes over every (function, reference) pair, then
    where each function's init goes beyond the SDK floor, if given attribute (carebus_bench.attribution)."""

    template = load_template()
    selected = [spec for spec in functions(template) if not only or spec.logical_id in only]
    if not selected:
        raise ValueError(f"no function named {list(only)} in template.yaml")
    powertools = powertools_layer()
    runtime = runtime_packages()
    with tempfile.TemporaryDirectory(prefix="carebus-bench-") as workspace:
        build_dir = Path(workspace) / "build"
        sam_build(build_dir)
        build = Build(build_dir, layer_paths(build_dir, powertools, template), runtime)
        scratch = Path(workspace) / "home"
        scratch.mkdir()
        plans = [plan(function, build, scratch) for function in selected]
        measurements = {
            (each.function.logical_id, reference): _sampler(each, reference)
            for each in plans
            for reference in REFERENCES
        }
        samples = interleaved(measurements, rounds)
        # Untimed, after the timed rounds: -X importtime slows what it reports on.
        attributions = {each.function.logical_id: attribute(each) if attribute else None for each in plans}
    return {
        "rounds": rounds,
        "order": "round-robin over every function's (function, sdk floor, library floor), fresh processes",
        "powertools": powertools_pins()["aws-lambda-powertools"],
        "python": sys.version.split()[0],
        "functions": [
            {
                **result_of(each, _samples_of(each, samples)),
                "beyond_sdk_floor": attributions[each.function.logical_id],
            }
            for each in plans
        ],
    }


def _samples_of(each: ColdInitPlan, samples: Mapping[tuple[str, str], Any]) -> dict[str, Any]:
    return {reference: samples[(each.function.logical_id, reference)] for reference in REFERENCES}


def _sampler(each: ColdInitPlan, reference: str) -> Callable[[], dict[str, float]]:
    spec = each.spec(reference)
    return lambda: probe(spec, each.environment)


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    """The cold-init figures as plain lines, for a quick run on the console."""
    lines = [
        f"cold init, {result['rounds']} interleaved rounds: wall ms median [IQR], ratios of medians"
        " to the SDK floor and the library floor, the same ratios in CPU time"
    ]
    for row in result["functions"]:
        init = Summary(**row["init_ms"])
        sdk = Summary(**row["sdk_floor_ms"])
        library = Summary(**row["library_floor_ms"])
        lines.append(
            f"  {row['function']:<24} {init.median:6.1f} [{init.q1:.0f}-{init.q3:.0f}]"
            f"  sdk {sdk.median:6.1f} x{row['ratio_to_sdk_floor']:.2f}"
            f" (+{row['delta_over_sdk_floor_ms']:.0f})  lib {library.median:6.1f}"
            f" x{row['ratio_to_library_floor']:.2f}  cpu x{row['cpu_ratio_to_sdk_floor']:.2f}"
            f" x{row['cpu_ratio_to_library_floor']:.2f}  clients {','.join(row['services'])}"
            f" ({row['clients_created']} created)"
        )
    return lines + _attribution_lines(result["functions"])


def _attribution_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """One console line per function: where its init goes beyond the SDK floor, largest first."""
    attributed = [row for row in rows if row.get("beyond_sdk_floor")]
    if not attributed:
        return []
    lines = ["where init goes beyond the SDK floor (import self time, ms, median):"]
    for row in attributed:
        groups = sorted(row["beyond_sdk_floor"]["ms"].items(), key=lambda item: -item[1])
        lines.append(f"  {row['function']:<24} " + "  ".join(f"{name} {ms:.0f}" for name, ms in groups))
    return lines
