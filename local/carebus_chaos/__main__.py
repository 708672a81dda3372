"""python -m carebus_chaos (what `make chaos` runs): the fault-injection run, its ledger and its verdict."""

import argparse
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from contextlib import redirect_stdout
from pathlib import Path

from rich.console import Console
from rich.table import Table

from carebus_chaos.ledger import as_json, describe
from carebus_chaos.run import ChaosOptions, ChaosRun, run_chaos
from carebus_client.output import console as screen
from carebus_client.stacks import carebus_home
from carebus_local.runtime import RuntimeOptions
from carebus_local.serve import free_ports


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = ChaosOptions()
    parser = argparse.ArgumentParser(
        prog="python -m carebus_chaos",
        description="Encounters through the offline API under injected faults; exits 1 on any loss, "
        "duplicate, contradiction, misplaced poison or work left in flight.",
    )
    parser.add_argument(
        "--encounters", type=int, default=defaults.encounters, help="how many (default %(default)s)"
    )
    parser.add_argument("--clients", type=int, default=defaults.clients, help="concurrent physicians")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seeds the workload and the faults")
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=defaults.attempt_fault_rate,
        help="share of the handlers' HTTP attempts faulted",
    )
    parser.add_argument(
        "--call-fault-rate",
        type=float,
        default=defaults.call_fault_rate,
        help="share of their calls failed outright",
    )
    parser.add_argument(
        "--approval-wait", type=int, default=defaults.approval_wait_seconds, help="seconds per wait"
    )
    parser.add_argument("--json", type=Path, help="also write the ledger as JSON here")
    return parser.parse_args(argv)


def report(run: ChaosRun, console: Console, seconds: float) -> None:
    assert run.ledger is not None
    ledger = Table(title="Ledger", title_justify="left")
    ledger.add_column("checked")
    ledger.add_column("found")
    for name, value in describe(run.ledger):
        ledger.add_row(name, value)
    console.print(ledger)
    faults = Table(title="What the run did to the stack", title_justify="left")
    faults.add_column("fault or disturbance")
    faults.add_column("count", justify="right")
    for name, count in (*run.faults.items(), *sorted(run.disturbances.items())):
        faults.add_row(name, str(count))
    console.print(faults)
    phases = Table(title="Phases", title_justify="left")
    phases.add_column("phase")
    phases.add_column("seconds", justify="right")
    for phase in run.phases:
        phases.add_row(phase.name, f"{phase.seconds:.1f}")
    console.print(phases)
    for finding in run.ledger.findings[:40]:
        console.print(f"  [red]{finding.category}[/]: {finding.subject}: {finding.detail}", highlight=False)
    if len(run.ledger.findings) > 40:
        console.print(f"  ... and {len(run.ledger.findings) - 40} more findings")
    console.print(f"{run.ledger.verdict()} ({seconds:.0f} s)", highlight=False)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    options = ChaosOptions(
        encounters=args.encounters,
        clients=args.clients,
        seed=args.seed,
        attempt_fault_rate=args.fault_rate,
        call_fault_rate=args.call_fault_rate,
        approval_wait_seconds=args.approval_wait,
    )
    console = screen()
    defaults = RuntimeOptions()
    aws_port, api_port = free_ports(defaults.host, (0, 0))
    handler_log = carebus_home() / "chaos-handlers.log"
    handler_log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    console.print(
        f"Chaos: {options.encounters} encounters, {options.clients} physicians, faults on "
        f"{options.attempt_fault_rate:.1%} of attempts and {options.call_fault_rate:.1%} of calls, "
        f"seed {options.seed}; handler and runtime logs in {handler_log}"
    )
    started = time.monotonic()
    runtime_log = logging.getLogger("carebus.local")
    with handler_log.open("w") as log, redirect_stdout(log), warnings.catch_warnings():
        # The runtime's own warnings (every failed batch: the poison, the faults) go to the log too.
        runtime_log.addHandler(logging.StreamHandler(log))
        runtime_log.propagate = False
        # Powertools warns whenever an invocation had no business metric to flush: nothing to act on here.
        warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)
        run = run_chaos(
            options, RuntimeOptions(aws_port=aws_port, api_port=api_port, stack_name="carebus-chaos")
        )
    report(run, console, time.monotonic() - started)
    assert run.ledger is not None
    if args.json:
        args.json.write_text(as_json(run.ledger) + "\n")
    return 0 if run.ledger.clean else 1


if __name__ == "__main__":
    sys.exit(main())
