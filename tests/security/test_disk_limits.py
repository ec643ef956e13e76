"""Every capsule has a bounded disk: a Wrenn capsule gets the configured default (issue 12).

Before, a Wrenn capsule's `df /` showed the host's filesystem and a 5 GB `fallocate`
succeeded. A real jail agent, a control plane on SQLite and PostgreSQL configured with a
1 GiB default (the shipped one is 10 GiB), and everything through the Wrenn API.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from hangar.core.config import CapsuleSettings, CoreSettings
from hangar.server.settings import Settings
from support import jail_agent
from support.jail_agent import serve_on_agent
from support.live import LiveServer
from support.processes import AgentProcess
from support.wrenn import Account, Wrenn

agent = jail_agent.agent  # a jail agent of this module's own, one per backend
DEFAULT_GB = 1


def test_the_default_disk_is_ten_gib_and_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CapsuleSettings().default_disk_gb == 10
    monkeypatch.setenv("HANGAR_CAPSULES__DEFAULT_DISK_GB", "3")
    assert CoreSettings().capsules.default_disk_gb == 3


@pytest.fixture(scope="module")
def disk_server(
    backend: str, agent: AgentProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    def configure(settings: Settings) -> None:
        settings.capsules.default_disk_gb = DEFAULT_GB

    data_dir = tmp_path_factory.mktemp(f"hangar-disk-{backend}")
    with serve_on_agent(backend, data_dir, agent, configure) as live:
        yield live


@pytest.fixture
def api(disk_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=disk_server.wrenn_url, timeout=300.0) as client:
        yield client


def sh(api: httpx.Client, who: Account, capsule_id: str, script: str) -> dict[str, object]:
    resp = api.post(
        f"/v1/capsules/{capsule_id}/exec",
        json={"cmd": script, "timeout_sec": 120},
        headers=who.headers,
    )
    assert resp.status_code == 200, resp.text
    out: dict[str, object] = resp.json()
    return out


def test_a_wrenn_capsule_has_the_default_disk_limit(
    api: httpx.Client, disk_server: LiveServer
) -> None:
    who = Wrenn(api).signup(name="Disk Filler")
    made = api.post("/v1/capsules", json={"memory_mb": 256}, headers=who.headers)
    assert made.status_code == 201, made.text
    capsule_id = made.json()["id"]
    try:
        # `df /` shows the capsule's own disk (ext4 keeps a few percent for itself), not the
        # host's filesystem.
        df = sh(api, who, capsule_id, "df -P -B1M / | tail -n 1")
        size_mb = int(str(df["stdout"]).split()[1])
        assert 0.9 * DEFAULT_GB * 1024 <= size_mb <= DEFAULT_GB * 1024, df
        # Within it writes work; beyond it the kernel refuses the space.
        fits = sh(api, who, capsule_id, "fallocate -l 100M /home/user/fits && echo ok")
        assert (fits["exit_code"], fits["stdout"]) == (0, "ok\n"), fits
        too_big = sh(api, who, capsule_id, f"fallocate -l {2 * DEFAULT_GB}G /home/user/big")
        assert too_big["exit_code"] != 0, too_big
        assert "No space left on device" in str(too_big["stderr"]), too_big
        # And the team's disk quota counts it.
        with httpx.Client(base_url=f"{disk_server.url}/fastvm", timeout=30) as fvm:
            quotas = fvm.get("/v1/org/quotas", headers=who.headers).json()
        assert quotas["usage"]["diskGiB"] == DEFAULT_GB, quotas
    finally:
        api.delete(f"/v1/capsules/{capsule_id}", headers=who.headers)
