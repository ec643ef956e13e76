"""Host GPU inventories and regions, and the machine spec every face asks for."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from hangar.core.compute.firewall import FirewallPolicy
from hangar.core.compute.spec import (
    GpuRequest,
    MachineSpec,
    Network,
    Resources,
    Source,
    SourceKind,
)
from hangar.core.config import CoreSettings
from hangar.core.db import Database
from hangar.core.errors import Conflict, DomainError, InvalidInput, NotFound
from hangar.core.fleet.static import upsert_static_host
from hangar.core.hosts.inventory import GpuDevice, GpuInventory
from hangar.core.hosts.models import Host, HostStatus, HostType

H200 = "NVIDIA H200"


@pytest.fixture
async def host_id(core_db: Database) -> str:
    async with core_db.session() as session:
        host = Host(type=HostType.REGULAR, status=HostStatus.ONLINE)
        session.add(host)
        await session.commit()
        assert host.region == "local"  # the default label
        return host.id


async def test_host_gpu_inventory_round_trip(core_db: Database, host_id: str) -> None:
    devices = [
        GpuDevice("GPU-aaaa", 0, H200, 143771),
        GpuDevice("GPU-bbbb", 1, H200, 143771),
        GpuDevice("GPU-cccc", 2, "NVIDIA L4", 23034),
    ]
    async with core_db.session() as session:
        await GpuInventory(session).report(host_id, "us-buffalo-1", devices)
        await session.commit()
    async with core_db.session() as session:
        inventory = GpuInventory(session)
        gpus = await inventory.gpus(host_id)
        assert [
            GpuDevice(g.uuid, g.index, g.model, g.memory_mib, g.vendor) for g in gpus
        ] == devices
        assert host_id in await inventory.hosts_in_region("us-buffalo-1")
        assert await inventory.free_by_model(host_id) == {H200: 2, "NVIDIA L4": 1}
        held = await inventory.assign(host_id, H200, 1, "alloc-1")
        assert [g.uuid for g in held] == ["GPU-aaaa"]
        assert held[0].holder_id == "alloc-1"
        await session.commit()

    async def assign(holder: str) -> str:
        async with core_db.session() as session:
            try:
                await GpuInventory(session).assign(host_id, H200, 1, holder)
                await session.commit()
                return holder
            except DomainError as exc:
                await session.rollback()
                return exc.code

    # One H200 left and three takers at once: exactly one gets it.
    results = await asyncio.gather(*(assign(f"alloc-{n}") for n in range(2, 5)))
    assert len([r for r in results if r.startswith("alloc-")]) == 1
    assert results.count(Conflict.code) == 2

    async with core_db.session() as session:
        inventory = GpuInventory(session)
        # A new report keeps who holds the GPUs that stay, and forgets the one that left.
        await inventory.report(host_id, None, devices[:2])
        assert next(g.holder_id for g in await inventory.gpus(host_id)) == "alloc-1"
        assert await inventory.release("alloc-1") == 1
        assert await inventory.free_by_model(host_id) == {H200: 1}
        with pytest.raises(InvalidInput):
            await inventory.report(host_id, None, [devices[0], devices[0]])
        with pytest.raises(InvalidInput):
            await inventory.report(host_id, "Bad Region", [])
        with pytest.raises(NotFound):
            await inventory.report("no-such-host", None, [])
        await inventory.report(host_id, None, [])  # no GPUs (no driver): an empty inventory
        assert await inventory.gpus(host_id) == []
        await session.commit()


def test_gpu_devices_are_checked() -> None:
    for bad in (
        {"uuid": "", "index": 0, "model": H200, "memory_mib": 1},
        {"uuid": "GPU-1", "index": -1, "model": H200, "memory_mib": 1},
        {"uuid": "GPU-1", "index": 0, "model": "", "memory_mib": 1},
        {"uuid": "GPU-1", "index": 0, "model": H200, "memory_mib": 0},
        {"uuid": "GPU-1", "index": 0, "model": H200, "memory_mib": 1, "vendor": "intel"},
    ):
        with pytest.raises(InvalidInput):
            GpuDevice(**bad)


def test_machine_spec() -> None:
    spec = MachineSpec(
        Resources(8, 65536, 100, (GpuRequest("h200", 2), GpuRequest("l4"))),
        Source(SourceKind.IMAGE, "ubuntu-24.04"),
        Network(enabled=True),
        region="us-buffalo-1",
    )
    assert spec.resources.gpu_count == 3
    assert spec.resources.gpus_by_model() == {"h200": 2, "l4": 1}
    assert spec.network.policy == FirewallPolicy()
    assert (
        MachineSpec(Resources(1, 256), Source(SourceKind.TEMPLATE, "minimal")).network.policy
        is None
    )
    for make in (
        lambda: Resources(0, 256),
        lambda: Resources(1, 256, 0),
        lambda: Resources(1, 256, gpus=(GpuRequest("h200"), GpuRequest("H200"))),
        lambda: Resources(1, 256, gpus=(GpuRequest("h200", 16), GpuRequest("l4"))),
        lambda: GpuRequest("h200", 0),
        lambda: GpuRequest("bad/model"),
        lambda: Source(SourceKind.SNAPSHOT, ""),
        lambda: Network(enabled=False, firewall=FirewallPolicy()),
        lambda: Network(enabled=True, firewall=FirewallPolicy(mode="sideways")),
        lambda: MachineSpec(Resources(1, 1), Source(SourceKind.TEMPLATE, "m"), region="Us East"),
    ):
        with pytest.raises(InvalidInput):
            make()


async def test_configured_agents_get_the_configured_region(core_db: Database) -> None:
    name = f"edge-{uuid.uuid4().hex[:8]}"
    async with core_db.session() as session:
        host = await upsert_static_host(session, name, "unix:/nowhere", None, "eu-west-1")
        await session.commit()
        assert host.region == "eu-west-1"
        assert CoreSettings().hosts.region == "local"
