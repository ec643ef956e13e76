"""What a capsule must not see or reach, and limits it must not exceed."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from capsules.helpers import run
from support.processes import AgentProcess
from support.wrenn import Account

Capsule = dict[str, Any]


def test_host_processes_are_invisible(capi: httpx.Client, owner: Account, capsule: Capsule) -> None:
    out = run(capi, owner, capsule["id"], "ps -eo pid,args")["stdout"]
    lines = out.strip().splitlines()[1:]
    assert len(lines) < 10, out
    for host_process in ("pytest", "-m hangar", "postgres", "nats-server", "redis-server"):
        assert host_process not in out


def test_host_files_are_invisible(capi: httpx.Client, owner: Account, capsule: Capsule) -> None:
    marker = Path("/root") / f"hangar-secret-{uuid.uuid4().hex}"
    marker.write_text("host secret")
    try:
        out = run(capi, owner, capsule["id"], f"cat {marker}; ls /work /root 2>&1; true")
        assert "host secret" not in out["stdout"]
        assert "No such file" in out["stdout"] or "Permission denied" in out["stdout"]
    finally:
        marker.unlink()
    # Writes land in the capsule's own layer, never on the host.
    run(capi, owner, capsule["id"], "echo inside > /tmp/escape-probe")
    assert not Path("/tmp/escape-probe").exists()


def test_other_capsules_files_are_invisible(capi: httpx.Client, owner: Account) -> None:
    a = capi.post("/v1/capsules", json={"memory_mb": 256}, headers=owner.headers).json()
    b = capi.post("/v1/capsules", json={"memory_mb": 256}, headers=owner.headers).json()
    try:
        run(capi, owner, a["id"], "echo a-secret > /tmp/a-secret; echo a-home > /home/user/a")
        out = run(capi, owner, b["id"], "cat /tmp/a-secret /home/user/a 2>&1; true")["stdout"]
        assert "a-secret" not in out.replace("/tmp/a-secret", "")
        assert "a-home" not in out
        found = run(
            capi,
            owner,
            b["id"],
            "grep -rl a-secret / --exclude-dir=proc --exclude-dir=sys 2>/dev/null; true",
        )
        assert found["stdout"] == ""
    finally:
        capi.delete(f"/v1/capsules/{a['id']}", headers=owner.headers)
        capi.delete(f"/v1/capsules/{b['id']}", headers=owner.headers)


@pytest.fixture
def host_loopback_server() -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.sendall(b"host-loopback-reached")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def test_host_loopback_is_unreachable(
    capi: httpx.Client, owner: Account, capsule: Capsule, host_loopback_server: int
) -> None:
    probe = (
        "import socket\n"
        "s = socket.socket(); s.settimeout(3)\n"
        "try:\n"
        f"    s.connect(('127.0.0.1', {host_loopback_server})); print(s.recv(100).decode())\n"
        "except OSError as e:\n"
        "    print('refused', type(e).__name__)\n"
    )
    out = run(capi, owner, capsule["id"], "python3", args=["-c", probe])["stdout"]
    assert out.startswith("refused"), out
    interfaces = run(capi, owner, capsule["id"], "cat /proc/net/dev")["stdout"]
    names = {line.split(":")[0].strip() for line in interfaces.splitlines()[2:]}
    assert names == {"lo"}


def test_memory_hog_is_killed(capi: httpx.Client, owner: Account) -> None:
    made = capi.post("/v1/capsules", json={"memory_mb": 128}, headers=owner.headers).json()
    try:
        hog = "x = []\nwhile True:\n    x.append(bytearray(16 * 1024 * 1024))\n"
        out = run(capi, owner, made["id"], "python3", args=["-c", hog], timeout_sec=60)
        assert out["exit_code"] != 0
        # The capsule survives its hog.
        assert run(capi, owner, made["id"], "echo ok")["stdout"] == "ok\n"
    finally:
        capi.delete(f"/v1/capsules/{made['id']}", headers=owner.headers)


def test_fork_bomb_hits_pids_limit(capi: httpx.Client, owner: Account, agent: AgentProcess) -> None:
    made = capi.post("/v1/capsules", json={"memory_mb": 512}, headers=owner.headers).json()
    try:
        bomb = (
            "import os, time\n"
            "n = 0\n"
            "try:\n"
            "    while n < 100000:\n"
            "        if os.fork() == 0:\n"
            "            time.sleep(30); os._exit(0)\n"
            "        n += 1\n"
            "except OSError as e:\n"
            "    print('limited', n, e.errno)\n"
        )
        out = run(capi, owner, made["id"], "python3", args=["-c", bomb], timeout_sec=60)
        assert out["stdout"].startswith("limited"), out
        assert int(out["stdout"].split()[1]) < 5000
    finally:
        capi.delete(f"/v1/capsules/{made['id']}", headers=owner.headers)
    # The host (and its agent) stayed healthy.
    transport = httpx.HTTPTransport(uds=str(agent.socket))
    with httpx.Client(transport=transport, base_url="http://agent", timeout=10) as direct:
        assert direct.get("/v1/info").status_code == 200
