"""Figure 2: exec round trip on a running capsule, through the Wrenn API.

Baseline: a raw local subprocess of the same command (asyncio.create_subprocess_exec).
To show where the time goes, the same command is also run one layer down at a time: on
the agent's own API (its Unix socket) and on the in-sandbox supervisor's socket directly,
and `GET /livez` on the server gives the HTTP client + server floor.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bench.fig_start import COMMAND, run_raw
from bench.stack import Stack
from bench.stats import Figure, interleaved, ms, p50
from hangar.agent.supervisor.client import SupervisorClient


async def measure(stack: Stack, samples: int) -> list[Figure]:
    """Interleave the API exec with each lower layer and the raw subprocess."""
    capsule = await stack.create()
    try:
        sandbox = stack.sandbox_id(capsule)
        supervisor = SupervisorClient(stack.supervisor_socket(capsule))
        body = {"cmd": COMMAND[0], "args": list(COMMAND[1:]), "timeout_sec": 30}
        agent_body = {"argv": list(COMMAND), "timeout": 30}

        async def api() -> None:
            resp = await stack.raw.post(f"/wrenn/v1/capsules/{capsule}/exec", body)
            stack.check(resp, 200, "exec")

        async def httpx_api() -> None:
            resp = await stack.api.post(f"/v1/capsules/{capsule}/exec", json=body)
            stack.check(resp, 200)

        async def agent() -> None:
            resp = await stack.raw_agent.post(f"/v1/sandboxes/{sandbox}/exec", agent_body)
            stack.check(resp, 200, "agent exec")

        async def direct() -> None:
            result = await supervisor.exec(list(COMMAND))
            assert result.stdout == b"hello\n"

        async def raw() -> None:
            await run_raw(list(COMMAND))

        async def floor() -> None:
            stack.check(await stack.raw.get("/livez"), 200, "livez")

        layers: dict[str, Callable[[], Awaitable[Any]]] = {
            "api": api,
            "httpx_api": httpx_api,
            "agent": agent,
            "supervisor": direct,
            "raw": raw,
            "http_floor": floor,
        }
        times = await interleaved(layers, samples)
    finally:
        await stack.destroy(capsule)
    return [
        Figure.latency(
            "exec_round_trip",
            times["api"],
            times["raw"],
            baseline="raw local subprocess of /bin/echo (asyncio.create_subprocess_exec)",
            target="p50 <= 3 ms",
            limits=(
                "two HTTP hops (client -> server -> agent over a Unix socket), API key "
                "lookup and a last_active_at write + commit in SQLite per exec, a new "
                "supervisor connection and a fork/exec as uid 1000 inside the sandbox"
            ),
            extra={
                "agent_api_p50_ms": ms(p50(times["agent"])),
                "supervisor_direct_p50_ms": ms(p50(times["supervisor"])),
                "http_floor_livez_p50_ms": ms(p50(times["http_floor"])),
                "via_httpx_p50_ms": ms(p50(times["httpx_api"])),
                "command": " ".join(COMMAND),
            },
        )
    ]
