"""The agent's metric rings."""

from __future__ import annotations

import time

from hangar.agent.metrics import Ring, SandboxMetrics


def test_ring_keeps_newest_rows_in_order() -> None:
    ring = Ring(3)
    for i in range(5):
        ring.append(1000.0 + i, i, i * 10, i * 100)
    points = ring.points()
    assert [p.timestamp_unix for p in points] == [1002, 1003, 1004]
    assert [p.mem_bytes for p in points] == [20, 30, 40]
    assert len(ring) == 3


def test_cpu_percent_is_normalised_to_vcpus() -> None:
    metrics = SandboxMetrics(vcpus=2)
    now = time.time()
    metrics.record(0, 100, 5, now=now)
    # One full CPU-second over one second on a 2-vCPU capsule is 50 %.
    metrics.record(1_000_000_000, 200, 5, now=now + 1)
    points = metrics.tier("10m")
    assert points[-1].cpu_pct == 50.0
    assert points[-1].mem_bytes == 200


def test_averaging_tiers_fill_after_their_period() -> None:
    metrics = SandboxMetrics(vcpus=1)
    start = time.time() - 120
    for i in range(121):  # two minutes of one sample a second
        metrics.record(0, 1000 + i, 0, now=start + i)
    averaged = metrics.tier("2h")
    assert len(averaged) == 4  # four complete 30 s buckets
    assert averaged[0].mem_bytes == 1000 + 14  # mean of 1000..1029 (rounded down)
