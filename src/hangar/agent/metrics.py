"""Per-sandbox metrics kept in fixed-size rings: 500 ms samples, 30 s and 5 min averages."""

from __future__ import annotations

import time
from array import array
from dataclasses import dataclass, field

from hangar.agentproto.models import MetricPoint

SAMPLE_SECONDS = 0.5
# tier name -> (seconds per point, points kept)
TIERS: dict[str, tuple[float, int]] = {
    "10m": (SAMPLE_SECONDS, 1200),
    "2h": (30.0, 240),
    "24h": (300.0, 288),
}


class Ring:
    """A fixed-capacity ring of (timestamp, cpu_pct, mem_bytes, disk_bytes) rows.

    Packed in one array of doubles: ~32 bytes a row, so a sandbox's three tiers cost
    about 55 KiB however long it runs.
    """

    __slots__ = ("_capacity", "_count", "_data", "_next")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._data = array("d", bytes(8 * 4 * capacity))
        self._next = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, ts: float, cpu: float, mem: float, disk: float) -> None:
        """Add a row, overwriting the oldest when full."""
        i = self._next * 4
        self._data[i : i + 4] = array("d", (ts, cpu, mem, disk))
        self._next = (self._next + 1) % self._capacity
        self._count = min(self._count + 1, self._capacity)

    def points(self, since: float = 0.0) -> list[MetricPoint]:
        """Rows oldest first, from `since` (unix seconds) on."""
        start = (self._next - self._count) % self._capacity
        out: list[MetricPoint] = []
        for k in range(self._count):
            i = ((start + k) % self._capacity) * 4
            ts, cpu, mem, disk = self._data[i : i + 4]
            if ts >= since:
                out.append(
                    MetricPoint(
                        timestamp_unix=int(ts),
                        cpu_pct=round(cpu, 2),
                        mem_bytes=int(mem),
                        disk_bytes=int(disk),
                    )
                )
        return out


@dataclass
class _Bucket:
    """Running sums for one averaging tier."""

    seconds: float
    ring: Ring
    started: float = 0.0
    n: int = 0
    sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])


class SandboxMetrics:
    """The three tiers of one sandbox, fed by raw samples."""

    def __init__(self, vcpus: int) -> None:
        self.vcpus = max(vcpus, 1)
        self.raw = Ring(TIERS["10m"][1])
        self._buckets = {
            name: _Bucket(seconds, Ring(size))
            for name, (seconds, size) in TIERS.items()
            if name != "10m"
        }
        self._last_cpu_ns: int | None = None
        self._last_ts = 0.0

    def record(
        self, cpu_ns: int, mem_bytes: int, disk_bytes: int, now: float | None = None
    ) -> None:
        """Turn cumulative CPU time into a percentage and add one sample to every tier."""
        now = time.time() if now is None else now
        cpu_pct = 0.0
        if self._last_cpu_ns is not None and now > self._last_ts:
            used = max(cpu_ns - self._last_cpu_ns, 0) / 1e9
            cpu_pct = min(100.0, 100.0 * used / ((now - self._last_ts) * self.vcpus))
        self._last_cpu_ns, self._last_ts = cpu_ns, now
        self.raw.append(now, cpu_pct, mem_bytes, disk_bytes)
        for bucket in self._buckets.values():
            if bucket.n and now - bucket.started >= bucket.seconds:
                bucket.ring.append(bucket.started, *(s / bucket.n for s in bucket.sums))
                bucket.n, bucket.sums = 0, [0.0, 0.0, 0.0]
            if bucket.n == 0:
                bucket.started = now
            bucket.n += 1
            bucket.sums = [
                a + b for a, b in zip(bucket.sums, (cpu_pct, mem_bytes, disk_bytes), strict=True)
            ]

    def tier(self, name: str) -> list[MetricPoint]:
        """Points of one tier over its whole window."""
        seconds, size = TIERS[name]
        since = time.time() - seconds * size
        if name == "10m":
            return self.raw.points(since)
        return self._buckets[name].ring.points(since)
