"""A host without bubblewrap: the agent says so, the control plane names it, creates get 503.

The missing program is simulated with a PATH that links every program of the real one except
`bwrap`, so the agent (a real process on the jail runtime) finds everything else.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.jail_agent import jail_unavailable, serve_on_agent
from support.live import free_port, hangar_command, run_cli, wait_http
from support.processes import AgentProcess, clean_env, stop_process, wait_until
from support.wrenn import Wrenn, error_of


def path_without(tmp: Path, hidden: str) -> str:
    """A one-directory PATH with every program of this one but `hidden`."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not Path(directory).is_dir():
            continue
        for entry in Path(directory).iterdir():
            link = bin_dir / entry.name
            if entry.name != hidden and not link.exists() and os.access(entry, os.X_OK):
                link.symlink_to(entry)
    return str(bin_dir)


@pytest.fixture
def no_bwrap(tmp_path: Path) -> str:
    reason = jail_unavailable()
    if reason:
        pytest.skip(reason)
    return path_without(tmp_path, "bwrap")


@pytest.fixture
def sick_agent(tmp_path: Path, no_bwrap: str) -> Iterator[AgentProcess]:
    process = AgentProcess(tmp_path / "agent", runtime="jail", env={"PATH": no_bwrap})
    process.data_dir.mkdir()
    process.start()
    try:
        yield process
    finally:
        process.stop()


def test_agent_reports_the_missing_program_and_refuses_creates(sick_agent: AgentProcess) -> None:
    with sick_agent.direct() as agent:
        info = agent.get("/v1/info").json()
        assert info["healthy"] is False
        missing = {m["program"]: m for m in info["missing"]}
        assert set(missing) == {"bwrap"}
        assert missing["bwrap"]["package"] == "bubblewrap"
        assert "apt-get install bubblewrap" in missing["bwrap"]["install_hint"]

        resp = agent.post(
            "/v1/sandboxes",
            json={"sandbox_id": "sick-1", "template": "minimal", "vcpus": 1, "memory_mb": 64},
        )
        assert resp.status_code == 503, resp.text
        assert resp.json()["code"] == "host_unhealthy"
        assert "bwrap" in resp.json()["message"]
        assert "apt-get install bubblewrap" in resp.json()["message"]
        assert agent.get("/v1/sandboxes").json() == []


def test_control_plane_names_it_in_healthz_and_refuses_creates(
    backend: str, tmp_path: Path, sick_agent: AgentProcess, no_bwrap: str
) -> None:
    with (
        serve_on_agent(backend, tmp_path / "server", sick_agent) as live,
        httpx.Client(base_url=live.url, timeout=30) as main,
        live.client() as wrenn,
    ):
        health = main.get("/healthz")
        assert health.status_code == 503, health.text
        body = health.json()
        assert body["status"] == "degraded"
        assert body["checks"] == {"database": "ok", "host_programs": "error"}
        [programs] = body["missing_programs"].values()
        assert [p["program"] for p in programs] == ["bwrap"]
        assert "apt-get install bubblewrap" in programs[0]["install_hint"]

        owner = Wrenn(wrenn).signup(name="Sick Host")
        resp = wrenn.post("/v1/capsules", json={"memory_mb": 256}, headers=owner.headers)
        assert resp.status_code == 503, resp.text
        error = error_of(resp)
        assert error["code"] == "host_unavailable"  # Wrenn's name for every 503
        assert "bwrap" in error["message"]
        assert "apt-get install bubblewrap" in error["message"]
        assert wrenn.get("/v1/capsules", headers=owner.headers).json() == []

        # Installing it heals the host without restarting anything.
        (Path(no_bwrap) / "bwrap").symlink_to(shutil.which("bwrap") or "/usr/bin/bwrap")
        wait_until("a healthy host", lambda: main.get("/healthz").status_code == 200, 20)
        assert "missing_programs" not in main.get("/healthz").json()


def test_hangar_serve_says_it_in_its_first_lines(tmp_path: Path, no_bwrap: str) -> None:
    port = free_port()
    out = tmp_path / "serve.out"
    env = clean_env(HANGAR_AGENT_RUNTIME="jail", PATH=no_bwrap)
    command = hangar_command("serve", "--port", str(port), "--data-dir", str(tmp_path / "d"))
    with out.open("w") as stdout:
        proc = subprocess.Popen(
            command, stdout=stdout, stderr=subprocess.STDOUT, env=env, text=True
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/livez", proc)
        first = out.read_text().splitlines()[:4]
        said = "\n".join(first)
        assert "cannot run capsules" in said, said
        assert "bwrap" in said
        assert "apt-get install bubblewrap" in said
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
        [programs] = health["missing_programs"].values()
        assert [p["program"] for p in programs] == ["bwrap"]
    finally:
        stop_process(proc)


# -- a template still being built -------------------------------------------------------------


@pytest.fixture
def building_agent(tmp_path: Path) -> Iterator[AgentProcess]:
    """A jail agent whose `minimal` build is under way (another process holds its lock)."""
    reason = jail_unavailable()
    if reason:
        pytest.skip(reason)
    templates = tmp_path / "agent" / "templates"
    (templates / ".locks").mkdir(parents=True, mode=0o700)
    (templates / ".build-minimal-0badc0de").mkdir()
    with (templates / ".locks" / "minimal.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as `hangar template build` holds it while it works
        process = AgentProcess(tmp_path / "agent", runtime="jail", wait_for_templates=False)
        process.start()
        try:
            yield process
        finally:
            process.stop()


def test_a_create_while_the_template_builds_answers_503_with_retry_after(
    backend: str, tmp_path: Path, building_agent: AgentProcess
) -> None:
    with building_agent.direct() as agent:
        [build] = agent.get("/v1/info").json()["building"]
        assert build["template"] == "minimal"
        assert build["step"] in {"copy", "debootstrap"}
        resp = agent.post(
            "/v1/sandboxes",
            json={"sandbox_id": "early-1", "template": "minimal", "vcpus": 1, "memory_mb": 64},
        )
        assert resp.status_code == 503, resp.text
        assert resp.json()["code"] == "template_building"

    listed = run_cli("template", "list", "--agent-dir", str(building_agent.data_dir))
    assert listed.returncode == 0, listed.stderr
    assert "minimal" in listed.stderr  # the CLI writes to stderr
    assert "building" in listed.stderr

    with (
        serve_on_agent(backend, tmp_path / "server", building_agent) as live,
        live.client() as wrenn,
    ):
        owner = Wrenn(wrenn).signup(name="Early Bird")
        resp = wrenn.post("/v1/capsules", json={"memory_mb": 256}, headers=owner.headers)
        assert resp.status_code == 503, resp.text
        assert resp.headers["Retry-After"] == "15"
        assert "being built" in error_of(resp)["message"]
        assert wrenn.get("/v1/capsules", headers=owner.headers).json() == []
