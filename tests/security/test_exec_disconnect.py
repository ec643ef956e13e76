"""An HTTP exec whose client goes away is killed in the sandbox, on both faces."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from fastvm.conftest import Org, cleanup, new_org
from fastvm.helpers import create_vm
from support import jail_agent
from support.jail_agent import serve_on_agent
from support.live import LiveServer
from support.processes import AgentProcess
from support.wrenn import Account, Wrenn

agent = jail_agent.agent  # a real jail agent per backend


@pytest.fixture(scope="module")
def exec_server(
    backend: str, agent: AgentProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    data_dir: Path = tmp_path_factory.mktemp(f"exec-disconnect-{backend}")
    with serve_on_agent(backend, data_dir, agent) as live:
        yield live


def start_and_hang_up(url: str, headers: dict[str, str], body: dict[str, object]) -> socket.socket:
    """POST over a raw socket (so the test decides when the client leaves); the socket."""
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    head = [
        f"POST {parts.path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80))
    sock.sendall("\r\n".join(head).encode() + b"\r\n\r\n" + payload)
    return sock


def wait_for(check: Callable[[], str | None], what: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def hang_up_and_check(
    sock: socket.socket, marker: str, run: Callable[[str], tuple[int, str]]
) -> None:
    """Wait for the command to start, drop its client, and see its processes end soon."""

    def pid() -> str | None:
        code, out = run(f"cat /tmp/{marker} 2>/dev/null")
        return (out.strip() or None) if code == 0 else None

    started = wait_for(pid, "the long exec never started", timeout=60)
    assert run(f"test -d /proc/{started} && echo alive")[1].strip() == "alive"
    sock.close()  # the client goes away mid-exec
    sleepers = (
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done"
        " | grep -c '^sleep 30[0-9] ' || true"
    )

    def gone() -> str | None:
        alive = run(f"test -d /proc/{started} && echo alive || echo gone")[1].strip()
        return "gone" if alive == "gone" and run(sleepers)[1].strip() == "0" else None

    wait_for(gone, "the abandoned command is still running", timeout=10)


@pytest.fixture
def owner(exec_server: LiveServer) -> Account:
    with httpx.Client(base_url=exec_server.wrenn_url, timeout=60) as client:
        return Wrenn(client).signup(name="Exec Owner")


def test_wrenn_exec_is_killed_when_its_client_leaves(
    exec_server: LiveServer, owner: Account
) -> None:
    with httpx.Client(base_url=exec_server.wrenn_url, timeout=120) as capi:
        made = capi.post("/v1/capsules", json={"memory_mb": 256}, headers=owner.headers)
        assert made.status_code == 201, made.text
        capsule_id = made.json()["id"]
        try:

            def run(command: str) -> tuple[int, str]:
                resp = capi.post(
                    f"/v1/capsules/{capsule_id}/exec",
                    json={"cmd": command, "timeout_sec": 30},
                    headers=owner.headers,
                )
                assert resp.status_code == 200, resp.text
                return resp.json()["exit_code"], resp.json()["stdout"]

            marker = f"pid-{uuid.uuid4().hex[:8]}"
            sock = start_and_hang_up(
                f"{exec_server.wrenn_url}/v1/capsules/{capsule_id}/exec",
                owner.headers,
                {"cmd": f"echo $$ > /tmp/{marker}; sleep 301", "timeout_sec": 600},
            )
            hang_up_and_check(sock, marker, run)
        finally:
            capi.delete(f"/v1/capsules/{capsule_id}", headers=owner.headers)


def test_fastvm_exec_is_killed_when_its_client_leaves(exec_server: LiveServer) -> None:
    org: Org = new_org(exec_server)
    with httpx.Client(base_url=f"{exec_server.url}/fastvm", timeout=120) as fvm:
        try:
            vm = create_vm(fvm, org)

            def run(command: str) -> tuple[int, str]:
                resp = fvm.post(
                    f"/v1/vms/{vm['id']}/exec",
                    json={"command": ["/bin/sh", "-c", command], "timeoutSec": 30},
                    headers=org.headers,
                )
                assert resp.status_code == 200, resp.text
                return resp.json()["exitCode"], resp.json()["stdout"]

            marker = f"pid-{uuid.uuid4().hex[:8]}"
            sock = start_and_hang_up(
                f"{exec_server.url}/fastvm/v1/vms/{vm['id']}/exec",
                org.headers,
                {
                    "command": ["/bin/sh", "-c", f"echo $$ > /tmp/{marker}; sleep 302"],
                    "timeoutSec": 600,
                },
            )
            hang_up_and_check(sock, marker, run)
        finally:
            cleanup(fvm, org)
