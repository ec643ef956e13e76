"""Hangar as subprocesses in tests: their environment, a local agent, stopping, and polling."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from support.live import LiveServer, hangar_command, run_cli


def clean_env(database_url: str | None = None, **extra: str) -> dict[str, str]:
    """The caller's environment without HANGAR_* settings (the template cache stays), plus
    HANGAR_DATABASE_URL when a database is given and the `extra` settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HANGAR_") or k == "HANGAR_TEMPLATE_CACHE"
    }
    if database_url:
        env["HANGAR_DATABASE_URL"] = database_url
    env.update(extra)
    return env


def cli_env(database_url: str | None, **extra: str) -> dict[str, str]:
    """`clean_env` for running `hangar` commands the way an operator would, on `database_url`."""
    # A control plane starts a local host agent; the fake runtime keeps these tests hermetic.
    return clean_env(database_url, HANGAR_AGENT_RUNTIME="fake", **extra)


def server_cli(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    """`hangar ARGS --data-dir DIR` on a live server's database, as an operator would run it."""
    return run_cli(
        *args, "--data-dir", str(server.data_dir), env=clean_env(server.settings.database_url)
    )


def spawn(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `command` with its stdout and stderr appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)


def wait_until(
    what: str, check: Callable[[], Any], timeout: float = 60.0, every: float = 0.25
) -> Any:
    """Poll `check()` until it returns something truthy, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def stop_process(
    proc: subprocess.Popen[Any] | None, how: signal.Signals = signal.SIGINT, timeout: float = 30
) -> int | None:
    """Signal a running process to stop and wait for it, killing it if it takes too long."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(how)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def kill_process(proc: subprocess.Popen[Any] | None) -> None:
    """SIGKILL, as a crash would: an agent's sandboxes keep running."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


def agent_client(socket: Path, timeout: float = 60) -> httpx.Client:
    """A client for an agent's own API on its Unix socket."""
    transport = httpx.HTTPTransport(uds=str(socket))
    return httpx.Client(transport=transport, base_url="http://agent", timeout=timeout)


def destroy_sandboxes(socket: Path) -> None:
    """Remove every sandbox through the agent's own socket (test cleanup)."""
    with agent_client(socket) as c:
        for sandbox in c.get("/v1/sandboxes").json():
            c.delete(f"/v1/sandboxes/{sandbox['sandbox_id']}")


@dataclass
class AgentProcess:
    """A `hangar agent --runtime RUNTIME` subprocess serving on its Unix socket."""

    data_dir: Path
    runtime: str = "jail"
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] | None = None  # added to (or replacing) its clean environment
    wait_for_templates: bool = True  # a jail agent's start waits for its `minimal` build

    @property
    def socket(self) -> Path:
        return self.data_dir / "run" / "agent.sock"

    @property
    def address(self) -> str:
        return f"unix:{self.socket}"

    @property
    def log(self) -> Path:
        return self.data_dir / "agent.log"

    def start(self) -> None:
        """Start it and wait until its API answers."""
        self.socket.unlink(missing_ok=True)
        command = hangar_command(
            "agent", "--data-dir", str(self.data_dir), "--runtime", self.runtime
        )
        self.proc = spawn(command, self.log, clean_env(**(self.env or {})))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited: {self.log.read_text()[-2000:]}")
            if self.socket.exists():
                with contextlib.suppress(httpx.TransportError), self.direct() as c:
                    if c.get("/v1/info").status_code == 200:
                        self._wait_for_templates()
                        return
            time.sleep(0.1)
        raise RuntimeError("agent did not start")

    def _wait_for_templates(self, timeout: float = 900) -> None:
        """Let a jail agent's first `minimal` build finish: creates meanwhile answer 503.

        Gives up quietly (a test that needs the template then says why); an unhealthy agent
        builds nothing.
        """
        if self.runtime != "jail" or not self.wait_for_templates:
            return
        deadline = time.monotonic() + timeout
        with self.direct() as c:
            while time.monotonic() < deadline:
                info = c.get("/v1/info").json()
                if not info.get("healthy", True) or (
                    not info.get("building")
                    and any(t["name"] == "minimal" for t in c.get("/v1/templates").json())
                ):
                    return
                time.sleep(0.2)

    def direct(self) -> httpx.Client:
        """A client for the agent's own API, bypassing the control plane."""
        return agent_client(self.socket, timeout=30)

    def freeze(self) -> None:
        """SIGSTOP: it stops answering (as a hung or partitioned host), its state intact."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after `freeze`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, as a crash would: sandboxes must survive it."""
        kill_process(self.proc)

    def stop(self) -> None:
        """Thaw it if frozen, then SIGTERM (SIGKILL after 20 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.thaw()
            stop_process(self.proc, signal.SIGTERM, timeout=20)

    def destroy_all(self) -> None:
        """Remove every sandbox it runs."""
        destroy_sandboxes(self.socket)
