"""A private Hangar for one benchmark run: a `hangar agent`, a `hangar serve`, an account.

Everything lives in a temporary directory; `close()` destroys every capsule and snapshot
this run made (sandboxes outlive their agent, so this matters), stops both processes and
removes the directory. It runs on errors and Ctrl-C too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench.rawhttp import RawClient, RawResponse
from hangar.faces.wrenn import ids

PASSWORD = "bench-password-123"  # noqa: S105 - a throwaway account on a private server


class BenchError(Exception):
    """The system under test refused or failed something the benchmark needs."""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def hangar(*args: str) -> list[str]:
    """`hangar ARGS` through this interpreter (the project's environment)."""
    return [sys.executable, "-m", "hangar", *args]


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_bytes()[-limit:].decode(errors="replace")
    except OSError:
        return ""


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it lingers (only the process we started, by its pid)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    with open("/proc/self/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(prefix)]


class Stack:
    """The processes under test and authenticated clients for them."""

    def __init__(self, root: Path, say: Callable[[str], None]) -> None:
        self.root = root
        self.say = say
        self.agent_dir = root / "agent"
        self.server_dir = root / "server"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.wrenn_url = f"{self.base_url}/wrenn"
        self.agent_proc: subprocess.Popen[bytes] | None = None
        self.server_proc: subprocess.Popen[bytes] | None = None
        self.api_key = ""
        self.capsules: set[str] = set()
        self.snapshots: set[str] = set()
        self._api: httpx.AsyncClient | None = None
        self._agent: httpx.AsyncClient | None = None
        self._raw: RawClient | None = None
        self._raw_agent: RawClient | None = None
        # Figures that start more (an uplink agent, say) register their cleanup here; it runs
        # first on the way out, before the sweep of the main agent.
        self.on_close: list[Callable[[], Awaitable[None]]] = []

    # ------------------------------------------------------------------ processes

    @property
    def agent_socket(self) -> Path:
        """Where `hangar agent` listens by default."""
        return self.agent_dir / "run" / "agent.sock"

    @property
    def agent_pid(self) -> int:
        """Pid of the `hangar agent` process."""
        assert self.agent_proc is not None, "stack not started"
        return self.agent_proc.pid

    @property
    def server_pid(self) -> int:
        """Pid of the `hangar serve` process."""
        assert self.server_proc is not None, "stack not started"
        return self.server_proc.pid

    @property
    def template_rootfs(self) -> Path:
        """The agent's copy of the `minimal` template (the capsules' lower layer)."""
        return self.agent_dir / "templates" / "minimal" / "rootfs"

    def _start_agent(self) -> None:
        self.agent_dir.mkdir(parents=True, exist_ok=True)
        self.agent_socket.unlink(missing_ok=True)
        with open(self.root / "agent.log", "ab") as log:
            self.agent_proc = subprocess.Popen(
                hangar("agent", "--data-dir", str(self.agent_dir)),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "HANGAR_AGENT_RUNTIME": "jail"},
                start_new_session=True,  # Ctrl-C reaches us, not it: we stop it after cleanup
            )

    def _start_server(self) -> None:
        self.server_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "HANGAR_AGENTS": json.dumps({"local": f"unix:{self.agent_socket}"}),
            # The density figure starts up to 1,000 idle capsules on this one host: let
            # placement overcommit far past its real size (idle capsules use next to nothing).
            "HANGAR_HOSTS__CPU_OVERCOMMIT": "1000",
            "HANGAR_HOSTS__MEMORY_OVERCOMMIT": "100",
        }
        env.pop("HANGAR_DATABASE_URL", None)  # SQLite in the temp dir, always
        with open(self.root / "server.log", "ab") as log:
            self.server_proc = subprocess.Popen(
                hangar("serve", "--port", str(self.port), "--data-dir", str(self.server_dir)),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    async def _wait(self, what: str, proc: subprocess.Popen[bytes] | None, probe: Any) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc is None or proc.poll() is not None:
                raise BenchError(f"{what} exited: {_tail(self.root / f'{what}.log')}")
            with contextlib.suppress(httpx.TransportError):
                if (await probe()).status_code == 200:
                    return
            await asyncio.sleep(0.1)
        raise BenchError(f"{what} did not come up: {_tail(self.root / f'{what}.log')}")

    async def start(self) -> None:
        """Start agent and server, wait for both, sign up and mint an API key."""
        self._start_agent()
        transport = httpx.AsyncHTTPTransport(uds=str(self.agent_socket))
        self._agent = httpx.AsyncClient(transport=transport, base_url="http://agent", timeout=300)
        agent = self._agent
        await self._wait("agent", self.agent_proc, lambda: agent.get("/v1/info"))
        self._start_server()
        async with httpx.AsyncClient(base_url=self.wrenn_url, timeout=60) as anon:
            await self._wait(
                "server", self.server_proc, lambda: anon.get(f"{self.base_url}/readyz")
            )
            email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
            body = {"email": email, "password": PASSWORD, "name": "Bench"}
            signup = await anon.post("/v1/auth/signup", json=body)
            self.check(signup, 201)
            bearer = {"Authorization": f"Bearer {signup.json()['token']}"}
            key = await anon.post("/v1/api-keys", json={"name": "bench"}, headers=bearer)
            self.check(key, 201)
            self.api_key = key.json()["key"]
        self._api = httpx.AsyncClient(
            base_url=self.wrenn_url, headers={"X-API-Key": self.api_key}, timeout=300
        )
        self._raw = RawClient(port=self.port, headers={"X-API-Key": self.api_key})
        self._raw_agent = RawClient(unix=str(self.agent_socket))

    @property
    def api(self) -> httpx.AsyncClient:
        """Wrenn face client, authenticated with the run's API key."""
        assert self._api is not None, "stack not started"
        return self._api

    @property
    def agent(self) -> httpx.AsyncClient:
        """The agent's own API over its Unix socket (to split costs between layers)."""
        assert self._agent is not None, "stack not started"
        return self._agent

    @property
    def raw(self) -> RawClient:
        """A lean client for the main port (paths include `/wrenn`), API key attached.

        Latency figures use it: httpx alone costs ~2 ms per request on a small machine.
        One request at a time.
        """
        assert self._raw is not None, "stack not started"
        return self._raw

    @property
    def raw_agent(self) -> RawClient:
        """A lean client for the agent's Unix socket."""
        assert self._raw_agent is not None, "stack not started"
        return self._raw_agent

    @staticmethod
    def check(response: httpx.Response | RawResponse, status: int, what: str = "") -> None:
        """Raise BenchError unless the response has the expected status."""
        if response.status_code != status:
            if isinstance(response, httpx.Response):
                what = f"{response.request.method} {response.request.url.path}"
            raise BenchError(f"{what}: {response.status_code} {response.text[:500]}")

    # ------------------------------------------------------------------ capsules

    async def create(
        self, template: str = "minimal", memory_mb: int = 256, *, raw: bool = False
    ) -> str:
        """Create a capsule (tracked for cleanup); returns its wire id."""
        body = {"template": template, "vcpus": 1, "memory_mb": memory_mb}
        if raw:
            resp: httpx.Response | RawResponse = await self.raw.post("/wrenn/v1/capsules", body)
        else:
            resp = await self.api.post("/v1/capsules", json=body)
        self.check(resp, 201, "create capsule")
        capsule_id: str = resp.json()["id"]
        self.capsules.add(capsule_id)
        return capsule_id

    async def destroy(self, capsule_id: str) -> None:
        """Destroy a capsule this run made."""
        resp = await self.api.delete(f"/v1/capsules/{capsule_id}")
        if resp.status_code in (204, 404):
            self.capsules.discard(capsule_id)
        else:
            self.check(resp, 204)

    async def exec(
        self, capsule_id: str, cmd: str, *args: str, raw: bool = False
    ) -> dict[str, Any]:
        """Run a command in a capsule; fails unless it exits 0."""
        body = {"cmd": cmd, "args": list(args), "timeout_sec": 30}
        path = f"/v1/capsules/{capsule_id}/exec"
        if raw:
            resp: httpx.Response | RawResponse = await self.raw.post(f"/wrenn{path}", body)
        else:
            resp = await self.api.post(path, json=body)
        self.check(resp, 200, "exec")
        result: dict[str, Any] = resp.json()
        if result.get("exit_code") != 0:
            raise BenchError(f"{cmd} {args} failed in {capsule_id}: {result}")
        return result

    @staticmethod
    def sandbox_id(capsule_id: str) -> str:
        """The agent's id of a capsule (the core UUID behind the wire id)."""
        return ids.decode(ids.CAPSULE, capsule_id)

    def supervisor_socket(self, capsule_id: str) -> Path:
        """The in-sandbox supervisor's socket as the agent reaches it."""
        return self.agent_dir / "sandboxes" / self.sandbox_id(capsule_id) / "run/supervisor.sock"

    # ------------------------------------------------------------------ cleanup

    async def _destroy_everything(self) -> None:
        for hook in reversed(self.on_close):
            try:
                await hook()
            except Exception as exc:  # one failed cleanup must not skip the others
                self.say(f"cleanup step failed: {exc!r}")
        if self._api is not None:
            gate = asyncio.Semaphore(4)

            async def one(capsule_id: str) -> None:
                async with gate:
                    with contextlib.suppress(httpx.HTTPError, BenchError):
                        await self.destroy(capsule_id)

            await asyncio.gather(*(one(c) for c in list(self.capsules)))
            for name in list(self.snapshots):
                with contextlib.suppress(httpx.HTTPError):
                    await self.api.delete(f"/v1/snapshots/{name}")
        if self.agent_proc is not None and self.agent_proc.poll() is not None:
            # A dead agent leaves its sandboxes running: a new one re-adopts them.
            self.say("agent is gone; restarting it to destroy its sandboxes")
            self._start_agent()
            agent = self.agent
            with contextlib.suppress(BenchError):
                await self._wait("agent", self.agent_proc, lambda: agent.get("/v1/info"))
        if self._agent is not None:
            # Twice, a moment apart: a create interrupted in flight still finishes on the
            # agent after we stopped waiting for it, and nothing else knows its id.
            for pause in (0.0, 2.0):
                await asyncio.sleep(pause)
                with contextlib.suppress(httpx.HTTPError):
                    for sandbox in (await self.agent.get("/v1/sandboxes")).json():
                        await self.agent.delete(f"/v1/sandboxes/{sandbox['sandbox_id']}")

    async def close(self) -> None:
        """Destroy what this run made, stop the processes, remove the directory."""
        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, lambda *_: self.say("cleaning up, please wait..."))
        loop = asyncio.get_running_loop()
        loop.remove_signal_handler(signal.SIGTERM)
        loop.add_signal_handler(signal.SIGTERM, lambda: self.say("cleaning up, please wait..."))
        try:
            try:
                await asyncio.wait_for(self._destroy_everything(), timeout=900)
            except (TimeoutError, httpx.HTTPError, OSError) as exc:
                self.say(f"cleanup incomplete: {exc!r}")
            for client in (self._api, self._agent):
                if client is not None:
                    with contextlib.suppress(Exception):
                        await client.aclose()
            for raw in (self._raw, self._raw_agent):
                if raw is not None:
                    await raw.close()
            await asyncio.to_thread(_stop, self.server_proc)
            await asyncio.to_thread(_stop, self.agent_proc)
            mounts = _mounts_under(self.root)
            if mounts:
                self.say(f"left {self.root} in place: {len(mounts)} overlay(s) still mounted")
            elif os.environ.get("HANGAR_BENCH_KEEP"):
                self.say(f"kept {self.root} (HANGAR_BENCH_KEEP)")
            else:
                shutil.rmtree(self.root, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous)
            loop.remove_signal_handler(signal.SIGTERM)
