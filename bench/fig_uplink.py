"""Figure 8: exec and file transfer through the control plane to an agent joined over its uplink.

The uplink agent (`hangar agent --server URL --token TOKEN`, see `bench/remote.py`) runs on
this same machine, so the figure is the cost of the transport itself: every call from the
control plane is a channel on one WebSocket (request head, body chunks with per-channel flow
control, end) instead of an HTTP request on the agent's Unix socket.

Baseline: the same calls through the same control plane to the run's local agent, reached on
its Unix socket (`HANGAR_AGENTS`), interleaved sample by sample. The uplink agent's own socket
is timed too (`extra`), to show its agent is no slower than the local one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import httpx

from bench.fig_start import COMMAND
from bench.procfs import cpu_seconds
from bench.rawhttp import RawClient
from bench.remote import UplinkAgent
from bench.stack import BenchError, Stack
from bench.stats import Figure, interleaved, ms, p50, percentile, timed

MiB = 1024 * 1024
FILE = "/home/user/bench.bin"


async def _upload(client: httpx.AsyncClient, capsule: str, path: str, payload: bytes) -> None:
    resp = await client.post(
        f"/v1/capsules/{capsule}/files/write",
        data={"path": path},
        files={"file": ("payload.bin", payload, "application/octet-stream")},
    )
    Stack.check(resp, 204)


async def _download(client: httpx.AsyncClient, capsule: str, path: str, size: int) -> None:
    got = 0
    async with client.stream(
        "POST", f"/v1/capsules/{capsule}/files/read", json={"path": path}
    ) as resp:
        if resp.status_code != 200:
            await resp.aread()
            Stack.check(resp, 200)
        async for chunk in resp.aiter_raw():
            got += len(chunk)
    if got != size:
        raise BenchError(f"download of {path}: {got} bytes, expected {size}")


def _throughput(
    name: str,
    size: int,
    up: list[float],
    base: list[float],
    what: str,
    limits: str,
    cpu: dict[str, float],
) -> Figure:
    rate = [size / MiB / s for s in up]
    base_rate = [size / MiB / s for s in base]
    value, base_value = p50(rate), p50(base_rate)
    return Figure(
        name=name,
        unit="MiB/s",
        samples=len(rate),
        p50=round(value, 1),
        p95=None,
        baseline=f"the same {what} through the control plane to the local agent's Unix socket",
        baseline_p50=round(base_value, 1),
        ratio=round(value / base_value, 3) if base_value else None,
        ratio_meaning="MiB/s / baseline MiB/s (higher is better)",
        limits=limits,
        extra={
            "bytes": size,
            "seconds_p50": round(p50(up), 3),
            "baseline_seconds_p50": round(p50(base), 3),
            "worst_mib_s": round(min(rate), 1),
            "baseline_worst_mib_s": round(min(base_rate), 1),
            **cpu,  # upload and download together, per MiB moved
        },
    )


async def measure(stack: Stack, samples: int, size_mib: int, rounds: int) -> list[Figure]:
    """Start the uplink agent, then interleave exec and transfers on both hosts."""
    remote = UplinkAgent(stack)
    stack.on_close.append(remote.close)
    try:
        started = time.perf_counter()
        await remote.start()
        joined_s = time.perf_counter() - started
        far = await remote.create()
        near = await stack.create()
        if stack.sandbox_id(far) not in await remote.sandboxes():
            raise BenchError("the uplink capsule did not land on the uplink agent")
        if stack.sandbox_id(near) in await remote.sandboxes():
            raise BenchError("the baseline capsule landed on the uplink agent")
        assert remote.raw is not None
        raw_far = remote.raw
        body = {"cmd": COMMAND[0], "args": list(COMMAND[1:]), "timeout_sec": 30}
        agent_body = {"argv": list(COMMAND), "timeout": 30}
        far_sandbox = stack.sandbox_id(far)

        async def uplink() -> None:
            resp = await raw_far.post(f"/wrenn/v1/capsules/{far}/exec", body)
            stack.check(resp, 200, "exec over the uplink")

        async def local() -> None:
            resp = await stack.raw.post(f"/wrenn/v1/capsules/{near}/exec", body)
            stack.check(resp, 200, "exec on the local agent")

        far_agent = RawClient(unix=str(remote.socket))
        stack.on_close.append(far_agent.close)
        near_sandbox = stack.sandbox_id(near)

        async def far_socket() -> None:
            resp = await far_agent.post(f"/v1/sandboxes/{far_sandbox}/exec", agent_body)
            stack.check(resp, 200, "exec on the uplink agent's socket")

        async def near_socket() -> None:
            resp = await stack.raw_agent.post(f"/v1/sandboxes/{near_sandbox}/exec", agent_body)
            stack.check(resp, 200, "exec on the local agent's socket")

        layers: dict[str, Callable[[], Awaitable[Any]]] = {
            "uplink": uplink,
            "local": local,
            "uplink_agent_socket": far_socket,
            "local_agent_socket": near_socket,
        }
        times = await interleaved(layers, samples)

        size = size_mib * MiB
        payload = os.urandom(size)  # incompressible; nothing on the path compresses anyway
        far_http = httpx.AsyncClient(
            base_url=stack.wrenn_url, headers={"X-API-Key": remote.api_key}, timeout=600
        )
        up: dict[str, list[float]] = {"uplink": [], "local": []}
        down: dict[str, list[float]] = {"uplink": [], "local": []}
        cpu = {"uplink": [0.0, 0.0], "local": [0.0, 0.0]}  # control plane, agent: CPU s
        try:
            targets = {"uplink": (far_http, far), "local": (stack.api, near)}
            assert remote.proc is not None
            agent_pid = {"uplink": remote.proc.pid, "local": stack.agent_pid}
            for r in range(rounds + 1):  # the first round warms up
                for name, (client, capsule) in targets.items():
                    before = (cpu_seconds(stack.server_pid), cpu_seconds(agent_pid[name]))
                    t_up = await timed(partial(_upload, client, capsule, FILE, payload))
                    t_down = await timed(partial(_download, client, capsule, FILE, size))
                    if r:
                        up[name].append(t_up)
                        down[name].append(t_down)
                        cpu[name][0] += cpu_seconds(stack.server_pid) - before[0]
                        cpu[name][1] += cpu_seconds(agent_pid[name]) - before[1]
        finally:
            await far_http.aclose()
        await far_agent.close()
        await remote.destroy(far)
        await stack.destroy(near)
    finally:
        await remote.close()
    moved = 2 * rounds * size / MiB  # MiB each way, up and down
    cpu_ms_per_mib = {
        f"{where}_{proc}_cpu_ms_per_mib": round(cpu[where][i] * 1000 / moved, 2)
        for where in ("uplink", "local")
        for i, proc in enumerate(("control_plane", "agent"))
    }
    exec_limits = (
        "an exec is a few small frames on the WebSocket (head, end, response, body) instead "
        "of an HTTP request on a Unix socket: both cost about the same; the rest of the path "
        "(API key, SQLite, supervisor fork) is shared with the baseline"
    )
    transfer_limits = (
        "64 KiB frames, each acknowledged by a credit grant, through one more process hop "
        "than the baseline; permessage-deflate is off (it cost ~15-18 ms of CPU per MiB in "
        "each process and held transfers to 0.12-0.17x)"
    )
    return [
        Figure.latency(
            "uplink_exec_round_trip",
            times["uplink"],
            times["local"],
            baseline="the same exec through the control plane to the local agent's Unix socket",
            limits=exec_limits,
            extra={
                "p99_ms": ms(percentile(times["uplink"], 99)),
                "baseline_p99_ms": ms(percentile(times["local"], 99)),
                "uplink_agent_own_socket_p50_ms": ms(p50(times["uplink_agent_socket"])),
                "local_agent_own_socket_p50_ms": ms(p50(times["local_agent_socket"])),
                "setup_seconds": round(joined_s, 2),
                "command": " ".join(COMMAND),
            },
        ),
        _throughput(
            "uplink_upload",
            size,
            up["uplink"],
            up["local"],
            "upload",
            transfer_limits,
            cpu_ms_per_mib,
        ),
        _throughput(
            "uplink_download",
            size,
            down["uplink"],
            down["local"],
            "download",
            transfer_limits,
            cpu_ms_per_mib,
        ),
    ]
