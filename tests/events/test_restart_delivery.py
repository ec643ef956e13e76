"""Nothing is lost when the control plane is killed between a change and its delivery."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.live import free_port, hangar_command
from support.receiver import Receiver, running_receiver
from support.wrenn import Wrenn


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


def _serve(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HANGAR_AGENT_RUNTIME": "fake",  # capsules without isolation: this test is about events
        "HANGAR_CHANNELS__BACKOFF_BASE_SECONDS": "0.3",
        "HANGAR_CHANNELS__BACKOFF_CAP_SECONDS": "1",
        "HANGAR_CHANNELS__MAX_ATTEMPTS": "1000",
        "HANGAR_CHANNELS__POLL_SECONDS": "0.1",
        "HANGAR_OUTBOUND__ALLOW": '["127.0.0.0/8"]',  # the receiver, on loopback
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            hangar_command("serve", "--port", str(port), "--data-dir", str(data_dir)),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.1)
    raise AssertionError("hangar serve did not start")


def test_delivery_survives_a_killed_control_plane(tmp_path: Path, receiver: Receiver) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    server = _serve(tmp_path / "data", port, log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/wrenn", timeout=30) as http:
            owner = Wrenn(http).signup(name="Restart")
            receiver.fail("/webhook/restart", 10_000)  # down until we say otherwise
            made = http.post(
                "/v1/channels",
                json={
                    "name": "restart",
                    "provider": "webhook",
                    "config": {"url": f"{receiver.url}/webhook/restart"},
                    "events": ["capsule.created"],
                },
                headers=owner.headers,
            )
            assert made.status_code == 201, made.text
            capsule = http.post("/v1/capsules", json={}, headers=owner.headers)
            assert capsule.status_code == 201, capsule.text
            receiver.wait_for("/webhook/restart", 1)  # it tried, and failed
        server.send_signal(signal.SIGKILL)
        server.wait()
        receiver.fail("/webhook/restart", 0)
        seen = len(receiver.at("/webhook/restart"))
        server = _serve(tmp_path / "data", port, log)
        delivered = receiver.wait_for("/webhook/restart", seen + 1, timeout=30)[-1]
        assert delivered.json()["type"] == "capsule.created"
        time.sleep(1.5)
        # Delivered once it succeeded: no more attempts afterwards.
        assert len(receiver.at("/webhook/restart")) == seen + 1
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
