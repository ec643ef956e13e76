"""Figure 3: PTY keystroke echo round trip over the Wrenn WebSocket.

Both sides run `cat` on a fresh pseudo-terminal in canonical mode, so the echo comes from
the kernel's line discipline: the round trip measures the transport, not the program. One
sample: send one byte, wait until it is echoed. Every 100 keys a newline flushes the line
(canonical lines are capped at 4096 bytes). Baseline: a raw local PTY (os.openpty + cat),
written and read directly. The agent's own PTY WebSocket is measured too, to split costs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import time
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect, unix_connect

from bench.stack import Stack
from bench.stats import Figure, ms, p50

KEY = b"k"
FLUSH_EVERY = 100


class Terminal(Protocol):
    """Something that takes keystrokes and yields terminal output."""

    async def send(self, data: bytes) -> None:
        """Type bytes."""

    async def recv(self) -> bytes:
        """The next output chunk."""


class WsTerminal:
    """A PTY behind a WebSocket speaking start/started/input/output (face and agent alike)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def start(self, start: dict[str, object]) -> None:
        await self.ws.send(json.dumps(start))
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if message.get("type") == "started":
                return
            if message.get("type") in ("error", "exit"):
                raise RuntimeError(f"PTY did not start: {message}")

    async def send(self, data: bytes) -> None:
        payload = {"type": "input", "data": base64.b64encode(data).decode()}
        await self.ws.send(json.dumps(payload))

    async def recv(self) -> bytes:
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            kind = message.get("type")
            if kind == "output":
                return base64.b64decode(message["data"])
            if kind in ("error", "exit"):
                raise RuntimeError(f"PTY ended: {message}")


class LocalTerminal:
    """`cat` on a local pseudo-terminal: the baseline."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            ["cat"], stdin=slave, stdout=slave, stderr=slave, start_new_session=True
        )
        os.close(slave)
        os.set_blocking(self.master, False)
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self.queue.put_nowait(os.read(self.master, 65536))

    async def send(self, data: bytes) -> None:
        os.write(self.master, data)

    async def recv(self) -> bytes:
        return await asyncio.wait_for(self.queue.get(), 30)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        self.proc.kill()
        self.proc.wait()
        os.close(self.master)


async def _until(term: Terminal, done: bytes, count: int = 1) -> None:
    seen = b""
    while seen.count(done) < count:
        seen += await term.recv()


async def echo_once(term: Terminal, typed: int) -> tuple[float, int]:
    """One keystroke round trip; flushes the line now and then. Returns (seconds, typed)."""
    started = time.perf_counter()
    await term.send(KEY)
    await _until(term, KEY)
    elapsed = time.perf_counter() - started
    typed += 1
    if typed >= FLUSH_EVERY:
        await term.send(b"\r")
        await _until(term, b"\n", 2)  # the echoed newline, then cat's copy of the line
        typed = 0
    return elapsed, typed


async def measure(stack: Stack, samples: int) -> list[Figure]:
    """Interleave the face's PTY, the agent's PTY and a local PTY, one keystroke each."""
    capsule = await stack.create()
    local = LocalTerminal()
    ws_face = ws_agent = None
    try:
        url = stack.wrenn_url.replace("http", "ws", 1) + f"/v1/capsules/{capsule}/pty"
        ws_face = await connect(url, additional_headers={"X-API-Key": stack.api_key})
        face = WsTerminal(ws_face)
        await face.start({"type": "start", "cmd": "/bin/cat", "cols": 80, "rows": 24})
        agent_url = f"ws://agent/v1/sandboxes/{stack.sandbox_id(capsule)}/pty"
        ws_agent = await unix_connect(str(stack.agent_socket), agent_url)
        agent = WsTerminal(ws_agent)
        await agent.start({"type": "start", "argv": ["/bin/cat"], "cols": 80, "rows": 24})
        terms: dict[str, Terminal] = {"api": face, "agent": agent, "raw": local}
        typed = dict.fromkeys(terms, 0)
        times: dict[str, list[float]] = {name: [] for name in terms}
        for i in range(samples + 20):
            for name, term in terms.items():
                elapsed, typed[name] = await echo_once(term, typed[name])
                if i >= 20:  # the first 20 are warm-up
                    times[name].append(elapsed)
    finally:
        for ws in (ws_face, ws_agent):
            if ws is not None:
                with contextlib.suppress(Exception):
                    await ws.close()
        local.close()
        await stack.destroy(capsule)
    return [
        Figure.latency(
            "pty_echo_round_trip",
            times["api"],
            times["raw"],
            baseline="raw local PTY (os.openpty + cat), write a byte, read its echo",
            target="p50 <= 2 ms",
            limits=(
                "each keystroke crosses two WebSockets (client -> server -> agent) as JSON "
                "with base64 payloads, then the supervisor's Unix socket into the sandbox, "
                "and the echo comes back the same way: 6 hops of Python asyncio per byte"
            ),
            extra={"agent_ws_p50_ms": ms(p50(times["agent"])), "program": "cat (canonical)"},
        )
    ]
