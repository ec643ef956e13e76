"""Configured agents (`hangar serve`'s local one, HANGAR_AGENTS) as regular host rows."""

from __future__ import annotations

import asyncio
import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.agentproto.client import AgentClient, AgentError
from hangar.agentproto.models import AgentInfo, describe_missing
from hangar.core.db import Database
from hangar.core.db.uow import checkpoint
from hangar.core.errors import InvalidInput
from hangar.core.fleet.gateway import AgentHandle, Fleet
from hangar.core.hosts import rules
from hangar.core.hosts.inventory import GpuDevice, GpuInventory
from hangar.core.hosts.lifecycle import initial
from hangar.core.hosts.liveness import mark_up
from hangar.core.hosts.models import Host, HostStatus, HostType

log = structlog.get_logger("hangar.fleet.static")
INFO_TIMEOUT_SECONDS = 5.0

# Never change: host ids of configured agents, and migration 0007's rewrite, derive from it.
STATIC_HOST_NAMESPACE = uuid.UUID("5f1d8a3e-7c1b-4f2a-9d0e-6b3c2a1f4e57")


def static_host_id(name: str) -> str:
    """The host id of the configured agent called `name` (the same on every start)."""
    return str(uuid.uuid5(STATIC_HOST_NAMESPACE, name))


async def upsert_static_host(
    session: AsyncSession, name: str, address: str, info: AgentInfo | None, region: str = "local"
) -> Host:
    """The host row of a configured agent, made or refreshed; online when it answered.

    `info` is None when the agent did not answer: a new row then starts `unreachable` and an
    existing one is left as it is (the capsule reconciler's polls move it from there).
    """
    host = await session.get(Host, static_host_id(name))
    if host is None:
        host = Host(
            id=static_host_id(name),
            type=HostType.REGULAR,
            team_id=None,
            status=initial(HostStatus.PENDING if info is not None else HostStatus.UNREACHABLE),
            draining=False,
        )
        session.add(host)
    host.address = address[: rules.MAX_ADDRESS_LENGTH]
    host.region = rules.region(region)
    if info is not None:
        host.arch = rules.label("arch", info.arch, 32)
        host.cpu_cores = rules.count("cpu_cores", info.cpu_cores, rules.MAX_CPU_CORES)
        host.memory_mb = rules.count("memory_mb", info.memory_mb, rules.MAX_MEMORY_MB)
        host.disk_gb = rules.count("disk_gb", info.disk_gb, rules.MAX_DISK_GB)
        await session.flush()
        mark_up(session, host)
        await record_gpus(session, host.id, info)
    await session.flush()
    return host


async def record_gpus(session: AsyncSession, host_id: str, info: AgentInfo) -> None:
    """The host's GPU inventory, replaced by what its agent reports (none: emptied)."""
    try:
        devices = [GpuDevice(g.uuid, g.index, g.model, g.memory_mib, g.vendor) for g in info.gpus]
        await GpuInventory(session).report(host_id, None, devices)
    except InvalidInput as exc:
        # A report we cannot take leaves the last good inventory; the host still serves CPUs.
        log.warning("host.gpu_report_refused", host_id=host_id, error=exc.message)
        return
    if not info.gpus and info.gpu_reason:
        log.debug("host.no_gpus", host_id=host_id, reason=info.gpu_reason)


async def connect_static_agents(
    db: Database, fleet: Fleet, agents: dict[str, str], token: str | None, region: str = "local"
) -> None:
    """Add each configured agent (name -> address) to the fleet and give it its host row."""
    for name, address in agents.items():
        client = AgentClient(address, token=token)
        try:
            info: AgentInfo | None = await asyncio.wait_for(client.info(), INFO_TIMEOUT_SECONDS)
        except (AgentError, TimeoutError) as exc:
            # Still starting (`hangar serve`'s own agent) or down: the reconciler's polls
            # bring the host up once it answers.
            log.warning("host.static_agent_not_answering", name=name, error=str(exc))
            info = None
        async with db.session() as session:
            host = await upsert_static_host(session, name, address, info, region)
            await checkpoint(session)
        handle = AgentHandle(
            host.id,
            client,
            host_ip="127.0.0.1" if address.startswith("unix:") else "",
            static=True,
        )
        if info is not None:
            handle.note(info)
            if not info.healthy:
                log.warning(
                    "host.unhealthy",
                    name=name,
                    host_id=host.id,
                    missing=[p.program for p in info.missing],
                    hint=describe_missing(info.missing),
                )
        fleet.add(handle)
