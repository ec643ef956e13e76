"""The agent's GPU inventory: NVML when a driver is there, an empty one with a reason when not,
and a fake one for tests that only the test runtime may have; the control plane records it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from hangar.agent.gpus import SHARED_NODES, FakeGpusRefused, Inventory, discover, nvml_inventory
from hangar.agent.main import build_agent
from hangar.agent.runtimes.base import InvalidRequest
from hangar.agent.runtimes.fake import FakeRuntime
from hangar.agent.service import Agent
from hangar.agent.settings import AgentSettings
from hangar.agentproto.models import GpuInfo
from hangar.core.db.engine import Database
from hangar.core.db.migrate import upgrade
from hangar.core.fleet.static import upsert_static_host
from hangar.core.hosts.inventory import GpuInventory

GPUS = [
    {"uuid": "GPU-1b2c", "index": 0, "model": "NVIDIA H200", "memory_mib": 143771},
    {"uuid": "GPU-3d4e", "index": 1, "model": "NVIDIA H200", "memory_mib": 143771},
]


def test_without_a_driver_the_inventory_is_empty_and_says_why() -> None:
    inventory = nvml_inventory()
    if inventory.gpus:
        pytest.skip("this machine has NVIDIA GPUs")
    assert inventory.reason is not None
    assert "NVIDIA" in inventory.reason or "NVML" in inventory.reason


def test_a_fake_inventory_is_refused_outside_the_test_runtime() -> None:
    with pytest.raises(FakeGpusRefused, match="HANGAR_AGENT_RUNTIME=fake"):
        discover(json.dumps(GPUS), "jail")
    with pytest.raises(FakeGpusRefused):
        discover("not json", "fake")


def test_the_agent_reports_its_gpus_and_capabilities(tmp_path: Path) -> None:
    settings = AgentSettings(
        data_dir=tmp_path / "agent", runtime="fake", fake_gpus=json.dumps(GPUS)
    )
    info = build_agent(settings).info()
    assert [g.uuid for g in info.gpus] == ["GPU-1b2c", "GPU-3d4e"]
    assert info.gpu_reason is None
    assert {"lifecycle", "exec", "files"} <= set(info.capabilities)
    assert "devices" not in info.capabilities  # no runtime gives device nodes yet


def test_an_agent_without_gpus_reports_why(tmp_path: Path) -> None:
    info = build_agent(AgentSettings(data_dir=tmp_path / "agent", runtime="fake")).info()
    if info.gpus:
        pytest.skip("this machine has NVIDIA GPUs")
    assert info.gpus == []
    assert info.gpu_reason


def test_the_control_plane_records_what_an_agent_reports(tmp_path: Path) -> None:
    settings = AgentSettings(
        data_dir=tmp_path / "agent", runtime="fake", fake_gpus=json.dumps(GPUS)
    )
    info = build_agent(settings).info()

    async def record() -> list[tuple[str, str]]:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'hangar.db'}")
        await upgrade(db)
        async with db.unit_of_work() as uow:
            host = await upsert_static_host(uow.session, "local", "unix:/x", info)
            await uow.commit()
            rows = await GpuInventory(uow.session).gpus(host.id)
            # A later report without the second GPU drops it.
            await upsert_static_host(
                uow.session, "local", "unix:/x", info.model_copy(update={"gpus": info.gpus[:1]})
            )
            await uow.commit()
            after = await GpuInventory(uow.session).gpus(host.id)
        await db.dispose()
        return [(r.uuid, r.model) for r in rows] + [("after", str(len(after)))]

    assert asyncio.run(record()) == [
        ("GPU-1b2c", "NVIDIA H200"),
        ("GPU-3d4e", "NVIDIA H200"),
        ("after", "1"),
    ]


class DeviceRuntime(FakeRuntime):
    """The test runtime, claiming it can give sandboxes device nodes."""

    capabilities = FakeRuntime.capabilities | {"devices"}


def test_an_agent_maps_gpus_to_exactly_their_nodes(tmp_path: Path) -> None:
    settings = AgentSettings(
        data_dir=tmp_path / "agent", runtime="fake", fake_gpus=json.dumps(GPUS)
    )
    plain = build_agent(settings)
    with pytest.raises(InvalidRequest, match="cannot give sandboxes GPUs"):
        plain._gpu_nodes(["GPU-1b2c"])
    agent = Agent(
        DeviceRuntime(tmp_path / "sandboxes"),
        plain.templates,
        tmp_path / "state",
        gpus=Inventory(
            [
                GpuInfo(
                    uuid="GPU-1b2c",
                    index=0,
                    model="H200",
                    memory_mib=1,
                    device_nodes=["/dev/nvidia0"],
                ),
                GpuInfo(
                    uuid="GPU-3d4e",
                    index=1,
                    model="H200",
                    memory_mib=1,
                    device_nodes=["/dev/nvidia1"],
                ),
            ]
        ),
    )
    assert agent._gpu_nodes([]) == ()
    assert agent._gpu_nodes(["GPU-3d4e"]) == ("/dev/nvidia1", *SHARED_NODES)
    with pytest.raises(InvalidRequest, match="GPU-nope"):
        agent._gpu_nodes(["GPU-1b2c", "GPU-nope"])
