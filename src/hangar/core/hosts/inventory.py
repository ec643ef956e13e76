"""A host's GPU inventory and region: what its agent reports, and which GPUs are held."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.errors import Conflict, InvalidInput, NotFound
from hangar.core.hosts import rules
from hangar.core.hosts.models import Host, HostGpu

MAX_GPUS_PER_HOST = 64
MAX_GPU_MEMORY_MIB = 1 << 24  # 16 TiB: far beyond any device, yet catches garbage
_UUID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,95}")
VENDORS = ("nvidia", "amd", "fake")  # `fake`: the test inventory, refused outside tests


@dataclass(frozen=True)
class GpuDevice:
    """One GPU as an agent reports it."""

    uuid: str
    index: int
    model: str
    memory_mib: int
    vendor: str = "nvidia"

    def __post_init__(self) -> None:
        if not _UUID.fullmatch(self.uuid):
            raise InvalidInput("GPU uuid must be 1-96 letters, digits and ._:-")
        if not 0 <= self.index < MAX_GPUS_PER_HOST:
            raise InvalidInput(f"GPU index must be 0 to {MAX_GPUS_PER_HOST - 1}")
        if rules.label("GPU model", self.model) is None:
            raise InvalidInput("GPU model must be 1-64 characters of text")
        if not 0 < self.memory_mib <= MAX_GPU_MEMORY_MIB:
            raise InvalidInput("GPU memory must be a positive number of MiB")
        if self.vendor not in VENDORS:
            raise InvalidInput(f"GPU vendor must be one of {', '.join(VENDORS)}")


class GpuInventory:
    """Reads and writes host GPU rows; assignments move only by conditional UPDATEs."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _host(self, host_id: str) -> Host:
        host = await self.session.get(Host, host_id)
        if host is None:
            raise NotFound("host not found")
        return host

    async def report(self, host_id: str, region: str | None, gpus: Sequence[GpuDevice]) -> None:
        """Replace a host's inventory with what its agent reports (holders of kept GPUs stay)."""
        host = await self._host(host_id)
        if region is not None:
            host.region = rules.region(region)
        if len(gpus) > MAX_GPUS_PER_HOST or len({g.uuid for g in gpus}) != len(gpus):
            raise InvalidInput(f"at most {MAX_GPUS_PER_HOST} GPUs, each uuid once")
        known = {g.uuid: g for g in await self.gpus(host_id)}
        reported = {g.uuid for g in gpus}
        gone = set(known) - reported
        if gone:
            await self.session.execute(
                delete(HostGpu).where(HostGpu.host_id == host_id, HostGpu.uuid.in_(gone))
            )
        for device in gpus:
            row = known.get(device.uuid)
            if row is None:
                row = HostGpu(host_id=host_id, uuid=device.uuid)
                self.session.add(row)
            row.index, row.model, row.memory_mib = device.index, device.model, device.memory_mib
            row.vendor = device.vendor
        await self.session.flush()

    async def gpus(self, host_id: str) -> list[HostGpu]:
        """A host's GPUs by index."""
        result = await self.session.execute(
            select(HostGpu)
            .where(HostGpu.host_id == host_id)
            .order_by(HostGpu.index)
            # Assignments change by UPDATEs that bypass the session: read the rows afresh.
            .execution_options(populate_existing=True)
        )
        return list(result.scalars().all())

    async def free_by_model(self, host_id: str) -> dict[str, int]:
        """How many GPUs of each model nothing holds on a host."""
        rows = await self.session.execute(
            select(HostGpu.model, func.count())
            .where(HostGpu.host_id == host_id, HostGpu.holder_id.is_(None))
            .group_by(HostGpu.model)
        )
        return {model: int(n) for model, n in rows.all()}

    async def hosts_in_region(self, region: str) -> list[str]:
        """Ids of the hosts labelled `region`."""
        rows = await self.session.execute(select(Host.id).where(Host.region == region))
        return list(rows.scalars().all())

    async def assign(self, host_id: str, model: str, count: int, holder_id: str) -> list[HostGpu]:
        """Hold `count` free GPUs of `model` on a host for `holder_id`, else Conflict.

        Candidates are read, then taken by one UPDATE that still requires them free: a
        concurrent assign that took one first makes the count fall short, and the caller's
        transaction (which must then roll back) holds nothing it did not get.
        """
        free = await self.session.execute(
            select(HostGpu.uuid)
            .where(HostGpu.host_id == host_id, HostGpu.model == model, HostGpu.holder_id.is_(None))
            .order_by(HostGpu.index)
            .limit(count)
        )
        uuids = list(free.scalars().all())
        if len(uuids) < count:
            raise Conflict(f"host has {len(uuids)} free {model} GPUs, {count} needed")
        taken = await self.session.execute(
            update(HostGpu)
            .where(HostGpu.host_id == host_id, HostGpu.uuid.in_(uuids), HostGpu.holder_id.is_(None))
            .values(holder_id=holder_id)
            .returning(HostGpu.uuid)
            .execution_options(synchronize_session=False)
        )
        if len(taken.all()) != count:
            raise Conflict(f"{model} GPUs were taken meanwhile; try again")
        return [g for g in await self.gpus(host_id) if g.uuid in uuids]

    async def release(self, holder_id: str) -> int:
        """Free every GPU `holder_id` holds; how many."""
        result = await self.session.execute(
            update(HostGpu)
            .where(HostGpu.holder_id == holder_id)
            .values(holder_id=None)
            .returning(HostGpu.uuid)
            .execution_options(synchronize_session=False)
        )
        return len(result.all())
