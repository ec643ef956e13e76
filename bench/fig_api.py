"""Figure 6: throughput and latency of `GET /wrenn/v1/capsules/{id}` at concurrency 32.

The load generator (bench/loadgen.py) runs as its own process. Baseline: a bare Starlette
endpoint answering the same JSON body on uvicorn with the server's settings
(bench/baseline_app.py), loaded by the same generator. Rounds alternate between the two so
drift on a noisy machine hits both alike.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.procfs import cpu_seconds
from bench.stack import BenchError, Stack, free_port
from bench.stats import Figure, ms, p50, p95

CONCURRENCY = 32


async def _load(
    stack: Stack, port: int, path: str, headers: list[str], duration: float, tag: str
) -> dict[str, Any]:
    out = stack.root / f"load-{tag}.json"
    argv = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--path", path]
    for header in headers:
        argv += ["--header", header]
    argv += ["--concurrency", str(CONCURRENCY), "--duration", str(duration), "--out", str(out)]
    proc = await asyncio.create_subprocess_exec(*argv, cwd=Path(__file__).parent.parent)
    if await proc.wait() != 0:
        raise BenchError(f"load generator failed ({tag})")
    result: dict[str, Any] = json.loads(await asyncio.to_thread(out.read_text))
    out.unlink()
    return result


def _start_baseline(port: int, body_file: Path, db: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.baseline_app", str(port), str(body_file), str(db)],
        cwd=Path(__file__).parent.parent,
        start_new_session=True,
    )


async def _wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            if proc.poll() is not None:
                raise BenchError("baseline server exited")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise BenchError("baseline server did not start")


async def measure(stack: Stack, duration: float, rounds: int) -> list[Figure]:
    """Alternate load rounds on Hangar and on the baseline; pool the results."""
    capsule = await stack.create()
    path = f"/wrenn/v1/capsules/{capsule}"
    resp = await stack.api.get(f"/v1/capsules/{capsule}")
    stack.check(resp, 200)
    body_file = stack.root / "capsule.json"
    await asyncio.to_thread(body_file.write_text, resp.text)
    port = free_port()
    baseline = _start_baseline(port, body_file, stack.server_dir / "hangar.db")
    server_pid = stack.server_pid
    names = ("hangar", "baseline", "baseline_db")
    pooled: dict[str, dict[str, list[Any]]] = {
        k: {"lat": [], "win": [], "rps": [], "cpu": []} for k in names
    }
    errors = dict.fromkeys(names, 0)
    try:
        await _wait_up(f"http://127.0.0.1:{port}/livez", baseline)
        key = [f"X-API-Key: {stack.api_key}"]
        db_path = f"/db/capsules/{stack.sandbox_id(capsule)}"
        targets = {
            "hangar": (stack.port, server_pid, path, key),
            "baseline": (port, baseline.pid, path, []),
            "baseline_db": (port, baseline.pid, db_path, key),
        }
        for i in range(rounds):
            for name, (target_port, pid, url, headers) in targets.items():
                cpu_before, started = cpu_seconds(pid), time.monotonic()
                result = await _load(stack, target_port, url, headers, duration, f"{name}{i}")
                cpu = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - started)
                pooled[name]["lat"] += result["latencies_s"]
                pooled[name]["win"] += result["windows"]
                pooled[name]["rps"].append(result["rps"])
                pooled[name]["cpu"].append(cpu)
                errors[name] += result["errors"]
    finally:
        baseline.terminate()
        baseline.wait()
        await stack.destroy(capsule)
    h, b, d = pooled["hangar"], pooled["baseline"], pooled["baseline_db"]
    rps, base_rps = sum(h["rps"]) / rounds, sum(b["rps"]) / rounds
    db_rps = sum(d["rps"]) / rounds
    limits = (
        "per request: API key hash lookup in SQLite (a fresh session + SELECTs), capsule "
        "SELECT, pydantic validation and rendering, FastAPI dependency resolution and the "
        "correlation/JSON-log middleware, all on one Python process and event loop; the "
        "load generator shares the machine's 2 cores with the server"
    )
    return [
        Figure(
            name="api_throughput_c32",
            unit="req/s",
            samples=len(h["lat"]),
            p50=round(rps, 1),
            p95=None,
            baseline="bare Starlette JSON endpoint, same uvicorn settings, same generator",
            baseline_p50=round(base_rps, 1),
            ratio=round(rps / base_rps, 3) if base_rps else None,
            ratio_meaning="req/s / baseline req/s (higher is better)",
            target=">= 0.6x baseline",
            limits=limits,
            extra={
                "rounds": rounds,
                "seconds_per_round": duration,
                "per_second_p50": p50([float(x) for x in h["win"]]),
                "baseline_per_second_p50": p50([float(x) for x in b["win"]]),
                "server_cpu_cores": round(p50(h["cpu"]), 2),
                "baseline_server_cpu_cores": round(p50(b["cpu"]), 2),
                "baseline_with_sqlite_rps": round(db_rps, 1),
                "ratio_to_baseline_with_sqlite": round(rps / db_rps, 3) if db_rps else None,
                "baseline_with_sqlite_latency_p50_ms": ms(p50(d["lat"])),
                "errors": errors,
            },
        ),
        Figure(
            name="api_latency_c32",
            unit="ms",
            samples=len(h["lat"]),
            p50=ms(p50(h["lat"])),
            p95=ms(p95(h["lat"])),
            baseline="bare Starlette JSON endpoint, same uvicorn settings, same generator",
            baseline_p50=ms(p50(b["lat"])),
            baseline_p95=ms(p95(b["lat"])),
            ratio=round(p50(h["lat"]) / p50(b["lat"]), 2) if b["lat"] else None,
            target="(follows throughput)",
            limits=limits,
        ),
    ]
