"""GPU agents, workers and share links; a link's uses are counted by one conditional UPDATE."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from hangar.core.clock import utcnow
from hangar.core.db import Database
from hangar.core.errors import DomainError, Gone, IllegalTransition, InvalidInput, NotFound
from hangar.core.gpushare import lifecycle
from hangar.core.gpushare.models import AgentGpu, GpuWorker, ShareLink, WorkerStatus
from hangar.core.gpushare.service import GpuShareService, ReportedGpu, WorkerReport

GPUS = [
    ReportedGpu("GPU-0", "nvidia", "NVIDIA H200", 143771),
    ReportedGpu("GPU-1", "nvidia", "NVIDIA H200", 143771),
]


async def _open(db: Database, code: str) -> str:
    async with db.session() as session:
        try:
            link = await GpuShareService(session).open_share(code)
            await session.commit()
            return link.worker_id
        except DomainError as exc:
            await session.rollback()
            return exc.code


async def test_share_link_max_uses_hold_under_concurrent_opens(
    core_db: Database, team_id: str
) -> None:
    async with core_db.session() as session:
        gpugo = GpuShareService(session)
        agent, secret = await gpugo.register(
            team_id, None, hostname="box", os="linux", arch="amd64", gpus=GPUS
        )
        [default] = await gpugo.repo.workers(agent.id)
        assert default.is_default
        assert default.gpu_ids == ["GPU-0", "GPU-1"]
        link = await gpugo.create_share(team_id, default, "203.0.113.7", max_uses=5)
        await session.commit()
        assert (await gpugo.authenticate(secret)).id == agent.id
        code, worker_id = link.short_code, default.id
    assert link.hardware_vendor == "nvidia"
    assert len(code) == 8

    results = await asyncio.gather(*(_open(core_db, code) for _ in range(20)))
    assert results.count(worker_id) == 5
    assert results.count(Gone.code) == 15
    async with core_db.session() as session:
        used = await session.scalar(
            select(ShareLink.used_count).where(ShareLink.short_code == code)
        )
    assert used == 5
    assert await _open(core_db, "nosuchcode") == NotFound.code

    async with core_db.session() as session:
        gpugo = GpuShareService(session)
        worker = await gpugo.repo.worker(worker_id)
        assert worker is not None
        expired = await gpugo.create_share(
            team_id, worker, "203.0.113.7", expires_at=utcnow() - timedelta(seconds=1)
        )
        unlimited = await gpugo.create_share(team_id, worker, "203.0.113.7")
        await session.commit()
    assert await _open(core_db, expired.short_code) == Gone.code
    assert [await _open(core_db, unlimited.short_code) for _ in range(3)] == [worker_id] * 3


async def test_workers_follow_their_table_and_bump_the_config(
    core_db: Database, team_id: str
) -> None:
    async with core_db.session() as session:
        gpugo = GpuShareService(session)
        agent, _ = await gpugo.register(
            team_id, None, hostname="box", os="linux", arch="amd64", gpus=GPUS
        )
        with pytest.raises(InvalidInput, match="GPU-9"):
            await gpugo.create_worker(agent, "w", ["GPU-9"], 9000, True)
        worker = await gpugo.create_worker(agent, "w", ["GPU-1"], 9000, True)
        await gpugo.report(
            agent, {"GPU-1": worker.id}, [WorkerReport(worker.id, WorkerStatus.RUNNING, 42)]
        )
        assert worker.status == WorkerStatus.RUNNING
        assert worker.pid == 42
        await gpugo.update_worker(worker, enabled=False)
        assert worker.status == WorkerStatus.STOPPING
        # The agent has not stopped it yet: `running` is no move from `stopping`, not written.
        await gpugo.report(agent, {}, [WorkerReport(worker.id, WorkerStatus.RUNNING, 42)])
        assert worker.status == WorkerStatus.STOPPING
        await gpugo.report(agent, {}, [WorkerReport(worker.id, WorkerStatus.STOPPED)])
        assert worker.status == WorkerStatus.STOPPED
        fresh = await gpugo.agent(team_id, agent.id)
        assert fresh.config_version == 3  # created, then two changes
        await gpugo.create_share(team_id, worker, "198.51.100.1", max_uses=1)
        await session.commit()

        await gpugo.repo.delete_agent(fresh)
        await session.commit()
        for model in (AgentGpu, GpuWorker):
            rows = await session.scalar(
                select(func.count()).select_from(model).where(model.agent_id == agent.id)
            )
            assert rows == 0
        shares = await session.scalar(
            select(func.count()).select_from(ShareLink).where(ShareLink.worker_id == worker.id)
        )
        assert shares == 0
        with pytest.raises(NotFound):
            await gpugo.agent(team_id, agent.id)


def test_worker_transition_table() -> None:
    for current, targets in lifecycle.TRANSITIONS.items():
        for target in targets:
            lifecycle.check_transition(current, target)
    for current, target in [("stopping", "running"), ("stopping", "pending"), ("x", "running")]:
        with pytest.raises(IllegalTransition):
            lifecycle.check_transition(current, WorkerStatus(target))
