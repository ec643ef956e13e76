"""A second agent that joins the bench's control plane over its uplink, and its host's owner.

As `tests/agent/uplink/procs.py` does it: a platform admin made with `hangar admin
create-user`, a host created through the Wrenn API, then `hangar agent --server URL --token
TOKEN` with its own data directory and the shared template cache. The host is BYOC for the
admin's own team, so only that team's capsules go there: the run's other figures (the bench
account's team) keep using the local agent, and the uplink's capsules never land elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
import uuid
from pathlib import Path

import httpx

from bench.rawhttp import RawClient
from bench.stack import PASSWORD, BenchError, Stack, _stop, _tail, hangar


def _env(**extra: str) -> dict[str, str]:
    """This environment without HANGAR_* settings (the template cache stays)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HANGAR_") or k == "HANGAR_TEMPLATE_CACHE"
    }
    env.update(extra)
    return env


class UplinkAgent:
    """`hangar agent --server` on this machine, registered as a BYOC host of an admin's team."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.data_dir = stack.root / "uplink-agent"
        self.log = stack.root / "uplink-agent.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.host_id = ""
        self.api_key = ""
        self.bearer: dict[str, str] = {}
        self.capsules: set[str] = set()
        self.team_id = ""
        self.closed = False
        self.raw: RawClient | None = None
        self._sock: httpx.AsyncClient | None = None
        # Without the run's API key: host routes take a user's JWT.
        self.http = httpx.AsyncClient(base_url=stack.wrenn_url, timeout=120)

    @property
    def socket(self) -> Path:
        """The agent's own Unix socket (it keeps serving it beside the uplink)."""
        return self.data_dir / "run" / "agent.sock"

    @property
    def sock(self) -> httpx.AsyncClient:
        """A client for the agent's own socket."""
        if self._sock is None:
            transport = httpx.AsyncHTTPTransport(uds=str(self.socket))
            self._sock = httpx.AsyncClient(
                transport=transport, base_url="http://agent", timeout=120
            )
        return self._sock

    async def _admin(self) -> None:
        """A platform admin in the server's database, logged in, with a team API key."""
        email = f"bench-admin-{uuid.uuid4().hex[:12]}@example.com"
        argv = hangar(
            "admin", "create-user", "--email", email, "--password", PASSWORD,
            "--platform-admin", "--data-dir", str(self.stack.server_dir),
        )  # fmt: skip
        done = await asyncio.to_thread(
            subprocess.run, argv, capture_output=True, env=_env(), timeout=120, check=False
        )
        if done.returncode != 0:
            raise BenchError(f"admin create-user: {done.stderr.decode()[-500:]}")
        api = self.http
        login = await api.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        self.stack.check(login, 200)
        self.team_id = login.json()["team_id"]
        self.bearer = {"Authorization": f"Bearer {login.json()['token']}"}
        key = await api.post("/v1/api-keys", json={"name": "uplink"}, headers=self.bearer)
        self.stack.check(key, 201)
        self.api_key = key.json()["key"]
        self.raw = RawClient(port=self.stack.port, headers={"X-API-Key": self.api_key})

    def _spawn(self, token: str | None) -> None:
        args = ["agent", "--data-dir", str(self.data_dir), "--server", self.stack.base_url]
        if token is not None:
            args += ["--token", token]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                hangar(*args),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_env(HANGAR_AGENT_RUNTIME="jail"),
                start_new_session=True,
            )

    async def start(self) -> None:
        """Create the admin and the host, start the agent, wait until the host is online."""
        await self._admin()
        body = {"type": "byoc", "team_id": self.team_id}
        made = await self.http.post("/v1/hosts", json=body, headers=self.bearer)
        self.stack.check(made, 201)
        self.host_id = made.json()["host"]["id"]
        self._spawn(made.json()["registration_token"])
        deadline = time.monotonic() + 180
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise BenchError(f"uplink agent exited: {_tail(self.log)}")
            host = await self.http.get(f"/v1/hosts/{self.host_id}", headers=self.bearer)
            self.stack.check(host, 200)
            if host.json()["status"] == "online":
                return
            if time.monotonic() > deadline:
                raise BenchError(f"uplink host stayed {host.json()['status']}: {_tail(self.log)}")
            await asyncio.sleep(0.2)

    async def create(self) -> str:
        """A capsule of the admin's team (so on this host); retried while the uplink settles."""
        assert self.raw is not None
        body = {"template": "minimal", "vcpus": 1, "memory_mb": 256}
        deadline = time.monotonic() + 120
        while True:
            resp = await self.raw.post("/wrenn/v1/capsules", body)
            if resp.status_code != 503 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        self.stack.check(resp, 201, "create capsule on the uplink host")
        capsule_id: str = resp.json()["id"]
        self.capsules.add(capsule_id)
        return capsule_id

    async def destroy(self, capsule_id: str) -> None:
        """Destroy one of this host's capsules through the control plane."""
        assert self.raw is not None
        resp = await self.raw.request("DELETE", f"/wrenn/v1/capsules/{capsule_id}")
        if resp.status_code in (204, 404):
            self.capsules.discard(capsule_id)
        else:
            self.stack.check(resp, 204, "destroy capsule")

    async def sandboxes(self) -> list[str]:
        """Sandbox ids the agent holds, from its own socket."""
        return [s["sandbox_id"] for s in (await self.sock.get("/v1/sandboxes")).json()]

    async def close(self) -> None:
        """Destroy its capsules, sweep its sandboxes, stop it, delete the host; idempotent."""
        if self.closed:
            return
        for capsule_id in list(self.capsules):
            with contextlib.suppress(httpx.HTTPError, BenchError, OSError):
                await self.destroy(capsule_id)
        if self.proc is not None and self.proc.poll() is not None and self.data_dir.exists():
            # A dead agent leaves its sandboxes running: a new one (stored credentials,
            # no token) re-adopts them so they can be destroyed.
            self.stack.say("uplink agent is gone; restarting it to destroy its sandboxes")
            self._spawn(None)
            for _ in range(300):
                if self.socket.exists() or self.proc.poll() is not None:
                    break
                await asyncio.sleep(0.2)
        if self.socket.exists():
            for pause in (0.0, 2.0):  # a create interrupted in flight still lands
                await asyncio.sleep(pause)
                with contextlib.suppress(httpx.HTTPError, OSError):
                    for sandbox in await self.sandboxes():
                        await self.sock.delete(f"/v1/sandboxes/{sandbox}")
        await asyncio.to_thread(_stop, self.proc)
        if self.host_id and self.bearer:
            with contextlib.suppress(httpx.HTTPError):
                await self.http.delete(f"/v1/hosts/{self.host_id}", headers=self.bearer)
            self.host_id = ""
        for client in (self._sock, self.http):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        self._sock = None
        if self.raw is not None:
            await self.raw.close()
        self.closed = True
