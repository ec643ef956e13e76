"""A control plane and remote agents as real processes, optionally inside network namespaces."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from websockets.sync.client import connect

from hangar.faces.wrenn import ids
from support.jail_agent import jail_unavailable
from support.live import hangar_command, run_cli, wait_http
from support.processes import (
    clean_env,
    destroy_sandboxes,
    kill_process,
    spawn,
    stop_process,
    wait_until,
)
from support.wrenn import PASSWORD, bearer, unique_email

needs_jail = pytest.mark.skipif(jail_unavailable() is not None, reason=str(jail_unavailable()))


def uplink_env(heartbeat_timeout: float, **extra: str) -> dict[str, str]:
    """Control-plane settings for the uplink tests: quick reconcilers, info logs to read."""
    return {
        "HANGAR_HOSTS__HEARTBEAT_TIMEOUT_SECONDS": str(heartbeat_timeout),
        "HANGAR_HOSTS__RECONCILE_SECONDS": "1",
        "HANGAR_CAPSULES__RECONCILE_SECONDS": "1",
        "HANGAR_LOG_LEVEL": "info",
        **extra,
    }


@dataclass
class ControlPlane:
    """`hangar serve --no-local-agent` on SQLite."""

    data_dir: Path
    port: int
    listen: str = "127.0.0.1"
    reach: str = "127.0.0.1"  # the address this test process dials
    prefix: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.reach}:{self.port}"

    @property
    def log(self) -> Path:
        return self.data_dir / "serve.log"

    def create_admin(self) -> tuple[str, str]:
        email = unique_email("admin")
        env = clean_env(**self.env)
        done = run_cli(
            "admin",
            "create-user",
            "--email",
            email,
            "--password",
            PASSWORD,
            "--platform-admin",
            "--data-dir",
            str(self.data_dir),
            env=env,
        )
        assert done.returncode == 0, done.stderr
        return email, PASSWORD

    def start(self) -> None:
        command = hangar_command(
            "serve",
            "--no-local-agent",
            "--host",
            self.listen,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        )
        self.proc = spawn([*self.prefix, *command], self.log, clean_env(**self.env))
        # Only poll() is used, whatever the stream type.
        wait_http(f"{self.url}/livez", cast("subprocess.Popen[str]", self.proc), timeout=120)

    def stop(self) -> None:
        stop_process(self.proc)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.url}/wrenn", timeout=120.0)

    def login(self, email: str, password: str) -> dict[str, str]:
        with self.client() as c:
            r = c.post("/v1/auth/login", json={"email": email, "password": password})
            assert r.status_code == 200, r.text
            return bearer(r.json()["token"])

    def start_as_admin(self) -> dict[str, str]:
        """Create a platform admin, start, and log in: the admin's headers."""
        email, password = self.create_admin()
        self.start()
        return self.login(email, password)

    def rows(self, sql: str) -> list[Any]:
        """What `sql` selects from the control plane's (SQLite) database."""
        with sqlite3.connect(self.data_dir / "hangar.db") as db:
            return db.execute(sql).fetchall()

    def capsule_hosts(self) -> dict[str, str]:
        """Wire capsule id -> core host id, from the control plane's database."""
        rows = self.rows("SELECT id, host_id FROM capsules")
        return {ids.encode(ids.CAPSULE, cid): host for cid, host in rows}


@contextlib.contextmanager
def control_plane(
    data_dir: Path, port: int, env: dict[str, str], **kw: Any
) -> Iterator[ControlPlane]:
    """A control plane (not started yet) in a new `data_dir`, stopped when the block ends."""
    plane = ControlPlane(data_dir, port, env=env, **kw)
    plane.data_dir.mkdir()
    try:
        yield plane
    finally:
        plane.stop()


@dataclass
class RemoteAgent:
    """`hangar agent --server URL [--token TOKEN]`."""

    data_dir: Path
    server: str
    prefix: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def socket(self) -> Path:
        return self.data_dir / "run" / "agent.sock"

    def start(self, token: str | None = None) -> subprocess.Popen[bytes]:
        args = ["agent", "--data-dir", str(self.data_dir), "--server", self.server]
        if token is not None:
            args += ["--token", token]
        env = {
            "HANGAR_AGENT_RUNTIME": "jail",
            "HANGAR_AGENT_HEARTBEAT_SECONDS": "1",
            "HANGAR_AGENT_RECONNECT_MIN_SECONDS": "0.2",
            "HANGAR_AGENT_RECONNECT_MAX_SECONDS": "2",
            **self.env,
        }
        self.proc = spawn([*self.prefix, *hangar_command(*args)], self.log, clean_env(**env))
        return self.proc

    def connections(self) -> int:
        """How many times the uplink came up (and the control plane proved itself)."""
        if not self.log.exists():
            return 0
        return self.log.read_text(errors="replace").count('"uplink.connected"')

    def wait_connected(self, at_least: int, timeout: float = 120.0) -> None:
        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited: {self.log.read_text()[-3000:]}")
            return self.connections() >= at_least

        wait_until(f"uplink #{at_least}", up, timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would: its sandboxes keep running."""
        kill_process(self.proc)

    def remove(self) -> None:
        """Remove every sandbox through the agent's own socket, then kill it (test cleanup)."""
        if self.socket.exists():
            with contextlib.suppress(httpx.TransportError):
                destroy_sandboxes(self.socket)
        self.kill()


def create_host(cp: ControlPlane, admin: dict[str, str]) -> tuple[str, str]:
    """A regular host and its registration token."""
    with cp.client() as c:
        r = c.post("/v1/hosts", json={"type": "regular"}, headers=admin)
        assert r.status_code == 201, r.text
        body = r.json()
        return body["host"]["id"], body["registration_token"]


def wait_joined(
    cp: ControlPlane, admin: dict[str, str], agent: RemoteAgent, host_id: str, connections: int = 1
) -> None:
    """Wait for the agent's uplink to come up for the `connections`th time and its host to be
    online."""
    agent.wait_connected(connections)
    wait_until("host online", lambda: host_status(cp, admin, host_id) == "online")


def host_status(cp: ControlPlane, admin: dict[str, str], host_id: str) -> str:
    with cp.client() as c:
        r = c.get(f"/v1/hosts/{host_id}", headers=admin)
        assert r.status_code == 200, r.text
        return str(r.json()["status"])


def capsule_status(cp: ControlPlane, who: dict[str, str], capsule_id: str) -> str:
    with cp.client() as c:
        r = c.get(f"/v1/capsules/{capsule_id}", headers=who)
        assert r.status_code == 200, r.text
        return str(r.json()["status"])


def create_capsule(cp: ControlPlane, who: dict[str, str]) -> str:
    def made() -> str | None:
        with cp.client() as c:
            r = c.post(
                "/v1/capsules",
                json={"template": "minimal", "vcpus": 1, "memory_mb": 256},
                headers=who,
            )
        if r.status_code == 503:  # a host's uplink is not in yet
            return None
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    return str(wait_until("a capsule", made, timeout=600, every=1.0))


def exercise(cp: ControlPlane, who: dict[str, str], capsule_id: str, tag: str) -> None:
    """Exec, upload and download a file, and a PTY session, all through the control plane."""
    with cp.client() as c:
        r = c.post(
            f"/v1/capsules/{capsule_id}/exec",
            json={"cmd": f"echo {tag}-$((6*7)); hostname >/dev/null"},
            headers=who,
        )
        assert r.status_code == 200, r.text
        assert r.json()["stdout"] == f"{tag}-42\n"
        payload = os.urandom(700_000)  # several windows: flow control is exercised
        r = c.post(
            f"/v1/capsules/{capsule_id}/files/write",
            headers=who,
            data={"path": f"/home/user/{tag}.bin"},
            files={"file": ("f.bin", payload, "application/octet-stream")},
        )
        assert r.status_code in (200, 204), r.text
        r = c.post(
            f"/v1/capsules/{capsule_id}/files/read",
            headers=who,
            json={"path": f"/home/user/{tag}.bin"},
        )
        assert r.status_code == 200, r.text
        assert r.content == payload
    url = f"{cp.url}/wrenn/v1/capsules/{capsule_id}/pty".replace("http", "ws", 1)
    with connect(url, additional_headers=who, open_timeout=60) as ws:
        ws.send(json.dumps({"type": "start", "cols": 80, "rows": 24}))
        assert json.loads(ws.recv(timeout=60))["type"] == "started"
        text = f"echo pty-{tag}-$((7*6))\n"
        ws.send(json.dumps({"type": "input", "data": base64.b64encode(text.encode()).decode()}))
        seen = b""
        deadline = time.monotonic() + 60
        while f"pty-{tag}-42".encode() not in seen:
            assert time.monotonic() < deadline, seen[-300:]
            message = json.loads(ws.recv(timeout=60))
            if message["type"] == "output":
                seen += base64.b64decode(message["data"])
        ws.send(json.dumps({"type": "kill"}))
