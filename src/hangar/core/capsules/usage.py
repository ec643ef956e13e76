"""Usage: per-capsule metrics and per-team stats."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from hangar.agentproto.models import MetricPoint
from hangar.core.capsules.agents import agent_call
from hangar.core.capsules.models import CapsuleStatus, UsageSample
from hangar.core.capsules.repository import CapsuleRepository
from hangar.core.capsules.service import CapsuleService
from hangar.core.clock import utcnow
from hangar.core.errors import InvalidInput, NotFound
from hangar.core.fleet.gateway import Fleet

# metrics range -> (agent tier holding it, seconds covered)
METRIC_RANGES: dict[str, tuple[str, int]] = {
    "5m": ("10m", 300),
    "10m": ("10m", 600),
    "1h": ("2h", 3600),
    "2h": ("2h", 7200),
    "6h": ("24h", 6 * 3600),
    "12h": ("24h", 12 * 3600),
    "24h": ("24h", 24 * 3600),
}
STATS_RANGES: dict[str, timedelta] = {
    "5m": timedelta(minutes=5),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "30d": timedelta(days=30),
}
SERIES_POINTS = 60


@dataclass
class Series:
    """Parallel arrays for charts."""

    labels: list[datetime] = field(default_factory=list)
    running: list[int] = field(default_factory=list)
    vcpus: list[int] = field(default_factory=list)
    memory_mb: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class TeamStats:
    """A team's current reservation, 30-day peaks and a series over the range."""

    range: str
    running: int
    vcpus: int
    memory_mb: int
    sampled_at: datetime | None
    peak_running: int
    peak_vcpus: int
    peak_memory_mb: int
    series: Series


class UsageService:
    """Reads metrics and stats."""

    def __init__(self, session: AsyncSession, fleet: Fleet, capsules: CapsuleService) -> None:
        self.fleet = fleet
        self.capsules = capsules
        self.repo = CapsuleRepository(session)

    async def metrics(self, team_id: str, capsule_id: str, range_: str) -> list[MetricPoint]:
        """Live points from the agent for a running capsule, persisted ones when paused."""
        if range_ not in METRIC_RANGES:
            raise InvalidInput(f"range must be one of {', '.join(METRIC_RANGES)}")
        tier, seconds = METRIC_RANGES[range_]
        since = int(time.time()) - seconds
        capsule = await self.capsules.get(team_id, capsule_id)
        if capsule.status == CapsuleStatus.RUNNING:
            async with agent_call():
                points = (await self.fleet.agent(capsule.host_id).metrics(capsule.id, tier)).points
            return [p for p in points if p.timestamp_unix >= since]
        if capsule.status == CapsuleStatus.PAUSED:
            rows = await self.repo.metric_samples(capsule.id, tier, since)
            return [
                MetricPoint(
                    timestamp_unix=r.timestamp_unix,
                    cpu_pct=r.cpu_pct,
                    mem_bytes=r.mem_bytes,
                    disk_bytes=r.disk_bytes,
                )
                for r in rows
            ]
        raise NotFound(f"metrics are not available for a {capsule.status} capsule")

    async def stats(self, team_id: str, range_: str) -> TeamStats:
        """Current reservation now, peaks over 30 days, and a bucketed series."""
        if range_ not in STATS_RANGES:
            raise InvalidInput(f"range must be one of {', '.join(STATS_RANGES)}")
        now = utcnow()
        live = [c for c in await self.repo.list_live(team_id) if c.status == CapsuleStatus.RUNNING]
        running, vcpus, memory = (
            len(live),
            sum(c.vcpus for c in live),
            sum(c.memory_mb for c in live),
        )
        month = await self.repo.usage_samples(team_id, now - timedelta(days=30))
        window = STATS_RANGES[range_]
        in_range = [s for s in month if s.sampled_at >= now - window]
        return TeamStats(
            range=range_,
            running=running,
            vcpus=vcpus,
            memory_mb=memory,
            sampled_at=month[-1].sampled_at if month else None,
            peak_running=max([running, *(s.running for s in month)]),
            peak_vcpus=max([vcpus, *(s.vcpus for s in month)]),
            peak_memory_mb=max([memory, *(s.memory_mb for s in month)]),
            series=_bucket(in_range, now - window, window),
        )


def _bucket(samples: list[UsageSample], start: datetime, window: timedelta) -> Series:
    """At most SERIES_POINTS buckets, each holding the maximum of its samples."""
    width = window / SERIES_POINTS
    buckets: dict[int, list[int]] = {}
    for s in samples:
        i = min(int((s.sampled_at - start) / width), SERIES_POINTS - 1)
        b = buckets.setdefault(i, [0, 0, 0])
        b[0], b[1], b[2] = max(b[0], s.running), max(b[1], s.vcpus), max(b[2], s.memory_mb)
    series = Series()
    for i in sorted(buckets):
        series.labels.append(start + width * i)
        series.running.append(buckets[i][0])
        series.vcpus.append(buckets[i][1])
        series.memory_mb.append(buckets[i][2])
    return series
