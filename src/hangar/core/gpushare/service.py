"""GPU agents, their workers and share links. Services never commit; the caller does."""

from __future__ import annotations

import secrets
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.clock import utcnow
from hangar.core.errors import Conflict, Gone, InvalidInput, NotFound, Unauthenticated
from hangar.core.gpushare import lifecycle
from hangar.core.gpushare.models import (
    AgentGpu,
    AgentStatus,
    GpuAgent,
    GpuWorker,
    ShareLink,
    WorkerStatus,
)
from hangar.core.gpushare.repository import GpuShareRepository
from hangar.core.security.opaque import generate_secret, hash_secret

OFFLINE_AFTER = timedelta(minutes=3)  # GPU Go: an agent silent this long is offline
DEFAULT_WORKER_PORT = 9999
CODE_ALPHABET = string.ascii_letters + string.digits
CODE_LENGTH = 8  # 62^8: unguessable enough for links that also expire or run out of uses
CODE_ATTEMPTS = 8
VENDORS = ("nvidia", "amd")


@dataclass(frozen=True)
class ReportedGpu:
    """A GPU as an agent registers it."""

    gpu_id: str
    vendor: str
    model: str
    vram_mb: int
    driver_version: str | None = None
    cuda_version: str | None = None

    def __post_init__(self) -> None:
        if not 0 < len(self.gpu_id) <= 64 or not 0 < len(self.model) <= 128:
            raise InvalidInput("gpu_id and model must be 1-64 and 1-128 characters")
        if self.vendor not in VENDORS:
            raise InvalidInput("vendor must be nvidia or amd")
        if self.vram_mb <= 0:
            raise InvalidInput("vram_mb must be a positive integer")


@dataclass(frozen=True)
class WorkerReport:
    """What an agent says one of its workers is doing."""

    worker_id: str
    status: WorkerStatus
    pid: int | None = None
    connections: tuple[tuple[str, str], ...] = ()  # (client_ip, connected_at)


def new_code() -> str:
    """A random short code for a share link."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


class GpuShareService:
    """Agents register and report; users manage workers and share links; anyone opens links."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = GpuShareRepository(session)

    async def register(
        self,
        team_id: str,
        owner_id: str | None,
        *,
        hostname: str,
        os: str,
        arch: str,
        gpus: Sequence[ReportedGpu],
        network_ips: Sequence[str] = (),
    ) -> tuple[GpuAgent, str]:
        """A new agent with its GPUs and a default worker on all of them; its secret, once."""
        if len({g.gpu_id for g in gpus}) != len(gpus):
            raise InvalidInput("each gpu_id may be reported once")
        secret = generate_secret(nbytes=32)
        agent = GpuAgent(
            team_id=team_id,
            owner_id=owner_id,
            hostname=hostname,
            os=os,
            arch=arch,
            network_ips=list(network_ips),
            secret_hash=hash_secret(secret),
            status=AgentStatus.ONLINE,
            last_seen_at=utcnow(),
        )
        await self.repo.add(agent)
        for g in gpus:
            self.session.add(AgentGpu(agent_id=agent.id, **asdict(g)))
        await self.repo.add(
            GpuWorker(
                agent_id=agent.id,
                name="default",
                gpu_ids=[g.gpu_id for g in gpus],
                listen_port=DEFAULT_WORKER_PORT,
                is_default=True,
            )
        )
        return agent, secret

    async def authenticate(self, secret: str) -> GpuAgent:
        """The agent presenting `secret` (looked up by its hash), else Unauthenticated."""
        agent = await self.repo.agent_by_secret(hash_secret(secret))
        if agent is None:
            raise Unauthenticated("unknown agent secret")
        return agent

    async def agent(self, team_id: str, agent_id: str) -> GpuAgent:
        """A team's agent, else NotFound."""
        agent = await self.repo.agent(agent_id)
        if agent is None or agent.team_id != team_id:
            raise NotFound("agent not found")
        return agent

    async def report(
        self,
        agent: GpuAgent,
        used_by: dict[str, str | None],
        workers: Sequence[WorkerReport],
    ) -> None:
        """Apply a status report: seen now, GPU users, and each worker's reported state.

        A report the table forbids (`running` while the control plane asked `stopping`) is
        not written: the agent has yet to act on the change, and its next report will say.
        """
        agent.last_seen_at, agent.status = utcnow(), AgentStatus.ONLINE
        for gpu in await self.repo.gpus(agent.id):
            if gpu.gpu_id in used_by:
                gpu.used_by_worker = used_by[gpu.gpu_id]
        mine = {w.id: w for w in await self.repo.workers(agent.id)}
        for report in workers:
            worker = mine.get(report.worker_id)
            if worker is None:
                continue  # deleted meanwhile; the agent learns it from its next config
            if report.status != worker.status:
                if report.status not in lifecycle.TRANSITIONS[WorkerStatus(worker.status)]:
                    continue
                if report.status == WorkerStatus.RUNNING and worker.status == WorkerStatus.STOPPED:
                    worker.restarts += 1
                worker.status = report.status
            worker.pid = report.pid
            worker.connections = [
                {"client_ip": ip, "connected_at": at} for ip, at in report.connections
            ]
        await self.session.flush()

    async def mark_offline(self) -> int:
        """Agents silent for OFFLINE_AFTER become offline; how many."""
        return await self.repo.mark_offline(utcnow() - OFFLINE_AFTER)

    async def _check_gpus(self, agent_id: str, gpu_ids: Sequence[str]) -> list[str]:
        known = {g.gpu_id for g in await self.repo.gpus(agent_id)}
        unknown = [g for g in gpu_ids if g not in known]
        if not gpu_ids or unknown or len(set(gpu_ids)) != len(gpu_ids):
            raise InvalidInput(f"gpu_ids must be distinct GPUs of the agent; unknown: {unknown}")
        return list(gpu_ids)

    async def create_worker(
        self, agent: GpuAgent, name: str, gpu_ids: Sequence[str], listen_port: int, enabled: bool
    ) -> GpuWorker:
        """A new worker on some of the agent's GPUs."""
        worker = GpuWorker(
            agent_id=agent.id,
            name=name,
            gpu_ids=await self._check_gpus(agent.id, gpu_ids),
            listen_port=listen_port,
            enabled=enabled,
        )
        await self.repo.add(worker)
        await self.repo.bump_config(agent.id)
        return worker

    async def update_worker(
        self,
        worker: GpuWorker,
        *,
        name: str | None = None,
        gpu_ids: Sequence[str] | None = None,
        listen_port: int | None = None,
        enabled: bool | None = None,
    ) -> GpuWorker:
        """Change a worker; disabling a running one asks its agent to stop it (`stopping`)."""
        if name is not None:
            worker.name = name
        if gpu_ids is not None:
            worker.gpu_ids = await self._check_gpus(worker.agent_id, gpu_ids)
        if listen_port is not None:
            worker.listen_port = listen_port
        if enabled is not None:
            if not enabled and worker.enabled and worker.status == WorkerStatus.RUNNING:
                lifecycle.check_transition(worker.status, WorkerStatus.STOPPING)
                worker.status = WorkerStatus.STOPPING
            worker.enabled = enabled
        await self.session.flush()
        await self.repo.bump_config(worker.agent_id)
        return worker

    async def delete_worker(self, worker: GpuWorker) -> None:
        """Delete a worker and its share links."""
        await self.session.delete(worker)
        await self.session.flush()
        await self.repo.bump_config(worker.agent_id)

    async def create_share(
        self,
        team_id: str,
        worker: GpuWorker,
        connection_ip: str,
        *,
        expires_at: datetime | None = None,
        max_uses: int | None = None,
    ) -> ShareLink:
        """A share link with a unique short code; its vendor is that of the worker's GPUs."""
        if max_uses is not None and max_uses < 1:
            raise InvalidInput("max_uses must be a positive integer")
        vendors = {
            g.vendor for g in await self.repo.gpus(worker.agent_id) if g.gpu_id in worker.gpu_ids
        }
        vendor = vendors.pop() if len(vendors) == 1 else ("mixed" if vendors else "unknown")
        for _ in range(CODE_ATTEMPTS):
            link = ShareLink(
                team_id=team_id,
                worker_id=worker.id,
                short_code=new_code(),
                connection_ip=connection_ip,
                hardware_vendor=vendor,
                max_uses=max_uses,
                expires_at=expires_at,
            )
            try:
                # A savepoint: a clashing code costs a retry, not the caller's transaction.
                async with self.session.begin_nested():
                    await self.repo.add(link)
                return link
            except IntegrityError:
                continue
        raise Conflict("no free short code found; try again")

    async def open_share(self, short_code: str) -> ShareLink:
        """Count one use of a link: NotFound when unknown, Gone when expired or used up."""
        link = await self.repo.open_share(short_code, utcnow())
        if link is not None:
            return link
        if await self.repo.share_by_code(short_code) is None:
            raise NotFound("share not found")
        raise Gone("share link expired or used up")
