"""`hangar serve --face-port fastvm=PORT`: the face at the root of its own port, and health.

A real `hangar serve` process without a local agent, so `/healthz` reports that no host is online.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.live import free_port, hangar_command, wait_http
from support.processes import clean_env


@pytest.fixture
def serve_without_agent(tmp_path: Path) -> Iterator[tuple[str, str]]:
    env = clean_env()
    port, face_port = free_port(), free_port()
    args = ["serve", "--port", str(port), "--data-dir", str(tmp_path), "--no-local-agent"]
    args += ["--face-port", f"fastvm={face_port}"]
    with (tmp_path / "serve.log").open("w") as log:
        proc = subprocess.Popen(
            hangar_command(*args), stdout=log, stderr=subprocess.STDOUT, env=env, text=True
        )
    try:
        main, face = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{face_port}"
        wait_http(f"{main}/livez", proc)
        wait_http(f"{face}/livez", proc)
        yield main, face
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_face_has_its_own_port_and_reports_a_missing_agent(
    serve_without_agent: tuple[str, str],
) -> None:
    main, face = serve_without_agent
    for base in (f"{main}/fastvm", face):
        assert httpx.get(f"{base}/livez").json() == {"status": "ok"}
        assert httpx.get(f"{base}/readyz").status_code == 200
        health = httpx.get(f"{base}/healthz")
        assert health.status_code == 503
        assert health.json() == {"error": "no host online"}
        unauthenticated = httpx.get(f"{base}/v1/vms")
        assert unauthenticated.status_code == 401
        assert set(unauthenticated.json()) == {"error"}
    assert httpx.get(f"{face}/openapi.json").json()["info"]["title"].startswith("FastVM")
    assert httpx.get(f"{main}/fastvm/openapi.json").status_code == 200
    # FastVM paths live at the root of the face port only.
    assert httpx.get(f"{main}/v1/vms").status_code == 404
    assert httpx.get(f"{face}/fastvm/v1/vms").status_code == 404
