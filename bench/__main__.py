"""`uv run python -m bench [--quick] [--only NAME[,NAME]] [--json PATH] [--max-capsules N]`.

Starts a private `hangar agent` + `hangar serve` (temp data dir, SQLite), signs up, mints an
API key, measures each figure beside its baseline, prints a table (stderr) and the JSON
document (stdout), and cleans up everything it made, also on errors and Ctrl-C. A figure
that fails is reported as skipped with its error; the command itself exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import (
    fig_api,
    fig_density,
    fig_exec,
    fig_pause,
    fig_pty,
    fig_snapshot,
    fig_start,
    fig_uplink,
    fig_vmstart,
)
from bench.procfs import machine
from bench.report import table
from bench.stack import Stack
from bench.stats import Figure, Skipped

FIGURES = ("start", "exec", "pty", "pause", "api", "snapshot", "uplink", "vmstart", "density")
err = Console(stderr=True, soft_wrap=True)


def say(message: str) -> None:
    """Progress on stderr."""
    err.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}", highlight=False)


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, 50 capsules max")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these figures (repeat or comma-separate): {', '.join(FIGURES)}",
    )
    parser.add_argument("--json", type=Path, help="also write the JSON document here")
    parser.add_argument("--max-capsules", type=int, help="density ceiling (1000; quick: 50)")
    parser.add_argument(
        "--density-budget", type=float, default=1800.0, help="seconds to spend filling the host"
    )
    args = parser.parse_args(argv)
    only = {n.strip() for item in args.only for n in item.split(",") if n.strip()}
    unknown = only - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(sorted(unknown))}")
    args.only = [f for f in FIGURES if not only or f in only]
    if args.max_capsules is None:
        args.max_capsules = 50 if args.quick else 1000
    return args


def _plan(stack: Stack, args: argparse.Namespace) -> dict[str, Callable[[], Awaitable[Any]]]:
    q = args.quick
    return {
        "start": lambda: fig_start.measure(stack, 8 if q else 40),
        "exec": lambda: fig_exec.measure(stack, 50 if q else 300),
        "pty": lambda: fig_pty.measure(stack, 50 if q else 300),
        "pause": lambda: fig_pause.measure(stack, 20 if q else 100),
        "api": lambda: fig_api.measure(stack, 3.0 if q else 8.0, 1 if q else 3),
        "snapshot": lambda: fig_snapshot.measure(stack, 2 if q else 5),
        "uplink": lambda: fig_uplink.measure(
            stack, 50 if q else 300, 8 if q else 32, 3 if q else 8
        ),
        "vmstart": lambda: fig_vmstart.measure(stack, 5 if q else 20, 20 if q else 100),
        "density": lambda: fig_density.measure(stack, args.max_capsules, args.density_budget),
    }


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the jail runtime needs root (overlay mounts, cgroups)"
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed"
    return None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure the chosen figures; always cleans up."""
    doc: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "figures": [],
    }
    cores = doc["machine"]["nproc"] or 1
    if doc["machine"]["load_avg"][0] > 0.5 * cores:
        say(f"[yellow]warning:[/] load average {doc['machine']['load_avg']}: figures will be noisy")
    reason = _unavailable()
    if reason:
        doc["figures"] = [Skipped(name, reason).as_json() for name in args.only]
        return doc
    root = Path(tempfile.mkdtemp(prefix="hangar-bench-"))
    stack = Stack(root, say)
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    try:
        say(f"starting hangar agent + hangar serve in {root}")
        await stack.start()
        plan = _plan(stack, args)
        for name in args.only:
            say(f"measuring {name}")
            started = time.monotonic()
            try:
                figures: list[Figure] = await plan[name]()
            except Exception as exc:
                say(f"[red]{name} failed:[/] {exc!r}")
                traceback.print_exc(file=sys.stderr)
                doc["figures"].append(Skipped(name, f"failed: {exc!r}"[:500]).as_json())
                continue
            for figure in figures:
                doc["figures"].append(figure.as_json())
            say(f"{name} done in {time.monotonic() - started:.0f} s")
    finally:
        say("cleaning up")
        await stack.close()
    doc["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    doc["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return doc


def main(argv: list[str] | None = None) -> int:
    """Run, print, write; 0 unless the harness itself could not run at all."""
    args = _args(argv)
    try:
        doc = asyncio.run(run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        say("interrupted (everything this run made was cleaned up)")
        return 130
    text = json.dumps(doc, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    wide = Console(stderr=True, width=max(err.width, 132))  # a table is useless wrapped
    wide.print(table(doc))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
