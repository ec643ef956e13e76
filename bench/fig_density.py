"""Figure 5: how many idle capsules one host holds, and what each one costs in memory.

Capsules are created through the API in steps (50, 100, 200, then every 200 up to
`--max-capsules`). At each step, after a short settle, it records: the agent process's RSS
(plus its children outside sandboxes), the control plane's RSS, the memory charged to the
sandboxes' cgroups (and the PSS of their processes), the host's MemAvailable, the agent's
idle CPU, and create/exec latency at that density. Per-capsule costs are least-squares
slopes over the steps (one-time costs drop out). It stops early, and says why, when the
host runs low on memory or pids, a create fails, or the time budget runs out. Every capsule
is destroyed afterwards.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import httpx

from bench import procfs
from bench.fig_start import bwrap_argv
from bench.stack import BenchError, Stack
from bench.stats import Figure, ms, p50, p95, timed

CONCURRENCY = 4  # creates in flight at once
SETTLE_S = 2.0
CPU_WINDOW_S = 3.0


def steps(limit: int) -> list[int]:
    """50, 100, 200, 400, 600, ... up to `limit` (always included)."""
    marks = {n for n in (50, 100, 200) if n < limit}
    marks |= set(range(400, limit, 200))
    return sorted(marks | {limit})


def slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of y over x."""
    if len(points) < 2:
        return float("nan")
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else float("nan")


def _low_resources() -> str | None:
    """Why the host cannot take more capsules safely, if it cannot."""
    available, total = procfs.mem_available(), procfs.mem_total()
    if available < max(1 << 30, total // 20):
        return f"host memory low: {available // procfs.MIB} MiB available"
    processes = len(procfs.all_pids())
    if processes > 0.9 * procfs.pid_max():
        return f"host pids low: {processes} processes of pid_max {procfs.pid_max()}"
    return None


def raw_sandbox_pss(stack: Stack, count: int = 10) -> dict[str, float]:
    """MiB of PSS per raw bwrap sandbox (same namespaces) idling in `sleep`, and in python3."""
    out: dict[str, float] = {}
    idle = {
        "sleep": ("/bin/sleep", "3600"),
        "python3": ("/usr/bin/python3", "-I", "-B", "-c", "import time; time.sleep(3600)"),
    }
    for name, command in idle.items():
        procs = [
            subprocess.Popen(bwrap_argv(stack.template_rootfs, *command), start_new_session=True)
            for _ in range(count)
        ]
        try:
            time.sleep(SETTLE_S)
            pids = [p.pid for p in procs]
            pids += [c for p in procs for c in procfs.descendants(p.pid)]
            out[name] = sum(procfs.pss_bytes(pid) for pid in pids) / count / procfs.MIB
        finally:
            for p in procs:
                p.kill()
                p.wait()
    return out


def _snapshot(stack: Stack, sandboxes: list[str]) -> dict[str, float]:
    """Memory of everything involved right now (blocking: reads /proc and cgroupfs)."""
    charged = anon = file = pss = 0
    processes = 0
    for sandbox in sandboxes:
        mem = procfs.sandbox_memory(sandbox)
        charged, anon, file = charged + mem["charged"], anon + mem["anon"], file + mem["file"]
        pids = procfs.sandbox_pids(sandbox)
        processes += len(pids)
        pss += sum(procfs.pss_bytes(pid) for pid in pids)
    return {
        "agent_rss": procfs.tree_rss(stack.agent_pid),
        "server_rss": procfs.tree_rss(stack.server_pid),
        "charged": charged,
        "anon": anon,
        "file": file,
        "pss": pss,
        "processes": processes,
        "mem_available": procfs.mem_available(),
    }


async def _idle_cpu(pid: int) -> float:
    """CPU cores a process uses while nobody asks anything of it."""
    before = procfs.cpu_seconds(pid)
    await asyncio.sleep(CPU_WINDOW_S)
    return round((procfs.cpu_seconds(pid) - before) / CPU_WINDOW_S, 3)


async def _probe_exec(stack: Stack, capsule: str) -> float:
    times = [await timed(lambda: stack.exec(capsule, "/bin/echo", "hello")) for _ in range(5)]
    return ms(p50(times))


async def _fill(
    stack: Stack, made: list[str], target: int, deadline: float, latencies: list[float]
) -> str | None:
    """Create capsules until `target` exist; returns why it stopped short, if it did."""
    gate = asyncio.Semaphore(CONCURRENCY)
    failure: list[str] = []

    async def one() -> None:
        async with gate:
            if failure:
                return
            reason = _low_resources() or (
                "time budget spent" if time.monotonic() > deadline else None
            )
            if reason:
                failure.append(reason)
                return
            started = time.perf_counter()
            try:
                capsule = await stack.create(memory_mb=128)
            except (BenchError, httpx.HTTPError) as exc:
                failure.append(f"create failed: {exc}"[:300])
                return
            latencies.append(time.perf_counter() - started)
            made.append(capsule)

    await asyncio.gather(*(one() for _ in range(target - len(made))))
    return failure[0] if failure else None


async def _destroy_all(stack: Stack, made: list[str]) -> list[float]:
    gate = asyncio.Semaphore(CONCURRENCY)
    times: list[float] = []

    async def one(capsule: str) -> None:
        async with gate:
            times.append(await timed(lambda: stack.destroy(capsule)))

    await asyncio.gather(*(one(c) for c in made), return_exceptions=True)
    return times


async def measure(stack: Stack, max_capsules: int, budget_s: float) -> list[Figure]:
    """Fill the host step by step, measure at each step, then destroy everything."""
    made: list[str] = []
    rows: list[dict[str, Any]] = []
    stop_reason = f"reached --max-capsules {max_capsules}"
    deadline = time.monotonic() + budget_s
    await asyncio.sleep(SETTLE_S)
    raw = await asyncio.to_thread(raw_sandbox_pss, stack)
    base = await asyncio.to_thread(_snapshot, stack, [])
    base_cpu = await _idle_cpu(stack.agent_pid)
    destroy_times: list[float] = []
    try:
        for target in steps(max_capsules):
            latencies: list[float] = []
            reason = await _fill(stack, made, target, deadline, latencies)
            await asyncio.sleep(SETTLE_S)
            sandboxes = [stack.sandbox_id(c) for c in made]
            snap = await asyncio.to_thread(_snapshot, stack, sandboxes)
            rows.append(
                {
                    "capsules": len(made),
                    "agent_rss_mib": round(snap["agent_rss"] / procfs.MIB, 1),
                    "server_rss_mib": round(snap["server_rss"] / procfs.MIB, 1),
                    "sandbox_charged_mib": round(snap["charged"] / procfs.MIB, 1),
                    "sandbox_anon_mib": round(snap["anon"] / procfs.MIB, 1),
                    "sandbox_pss_mib": round(snap["pss"] / procfs.MIB, 1),
                    "sandbox_processes": snap["processes"],
                    "host_used_mib": round(
                        (base["mem_available"] - snap["mem_available"]) / procfs.MIB, 1
                    ),
                    "agent_idle_cpu_cores": await _idle_cpu(stack.agent_pid),
                    "server_idle_cpu_cores": await _idle_cpu(stack.server_pid),
                    "create_p50_ms": ms(p50(latencies)) if latencies else None,
                    "create_p95_ms": ms(p95(latencies)) if latencies else None,
                    "exec_p50_ms": await _probe_exec(stack, made[-1]) if made else None,
                }
            )
            stack.say(f"density: {rows[-1]}")
            if reason:
                stop_reason = reason
                break
    finally:
        destroy_times = await _destroy_all(stack, made)
    return _figures(rows, base, base_cpu, stop_reason, destroy_times, raw)


def _figures(
    rows: list[dict[str, Any]],
    base: dict[str, float],
    base_cpu: float,
    stop_reason: str,
    destroy_times: list[float],
    raw: dict[str, float],
) -> list[Figure]:
    reached = rows[-1]["capsules"] if rows else 0
    origin = {
        "agent_rss_mib": base["agent_rss"] / procfs.MIB,
        "server_rss_mib": base["server_rss"] / procfs.MIB,
        "sandbox_charged_mib": 0.0,
        "sandbox_anon_mib": 0.0,
        "sandbox_pss_mib": 0.0,
        "host_used_mib": 0.0,
    }

    def per_capsule(key: str) -> float:
        points = [(0, origin[key])] + [(r["capsules"], r[key]) for r in rows]
        return round(slope(points), 3)

    processes = rows[-1]["sandbox_processes"] / reached if reached else float("nan")
    steps_note = [
        {k: r[k] for k in ("capsules", "agent_rss_mib", "create_p50_ms", "exec_p50_ms")}
        for r in rows
    ]
    return [
        Figure(
            name="density_idle_capsules",
            unit="capsules",
            samples=reached,
            p50=reached,
            target=">= 1000",
            limits=f"stopped: {stop_reason}",
            extra={
                "steps": rows,
                "agent_idle_cpu_cores_at_0": base_cpu,
                "destroy_p50_ms": ms(p50(destroy_times)) if destroy_times else None,
            },
        ),
        Figure(
            name="density_agent_mib_per_capsule",
            unit="MiB",
            samples=len(rows),
            p50=per_capsule("agent_rss_mib"),
            baseline="published: Firecracker <= 5 MiB per microVM (VMM overhead)",
            ratio_meaning="",
            target="<= 1 MiB",
            limits=(
                "slope of the agent's RSS over the steps: per-sandbox records, metrics ring "
                "buffers, locks and asyncio/httpx state; the agent starts no process per "
                "sandbox (bwrap is re-parented to init)"
            ),
            extra={
                "control_plane_mib_per_capsule": per_capsule("server_rss_mib"),
                "steps": steps_note,
            },
        ),
        Figure(
            name="density_runtime_mib_per_capsule",
            unit="MiB",
            samples=len(rows),
            p50=per_capsule("sandbox_pss_mib"),
            baseline="raw bwrap sandbox (same namespaces) idling in /bin/sleep, PSS",
            baseline_p50=round(raw["sleep"], 3),
            ratio=round(per_capsule("sandbox_pss_mib") / raw["sleep"], 2) if raw["sleep"] else None,
            ratio_meaning="PSS per capsule / PSS per raw bwrap sandbox",
            limits=(
                "PSS of each sandbox's processes: the bwrap monitor plus the python3 "
                "supervisor (pid 1, stdlib only, fork per connection); python3 alone is most "
                "of it (see raw_bwrap_python3_pss_mib). cgroup charges put shared pages on "
                "whichever sandbox touched them first, so PSS is the fairer split"
            ),
            extra={
                "cgroup_charged_mib_per_capsule": per_capsule("sandbox_charged_mib"),
                "cgroup_anon_mib_per_capsule": per_capsule("sandbox_anon_mib"),
                "host_mib_per_capsule": per_capsule("host_used_mib"),
                "raw_bwrap_python3_pss_mib": round(raw["python3"], 3),
                "processes_per_capsule": round(processes, 2),
                "published": "Firecracker <= 5 MiB per microVM (VMM overhead)",
            },
        ),
    ]
