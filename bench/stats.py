"""Percentiles, timers and the shape of one reported figure."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linearly interpolated between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def p50(values: list[float]) -> float:
    """Median."""
    return percentile(values, 50)


def p95(values: list[float]) -> float:
    """95th percentile."""
    return percentile(values, 95)


def ms(seconds: float) -> float:
    """Seconds to milliseconds, rounded for reports."""
    return round(seconds * 1000, 3)


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    """Seconds one awaited call took (monotonic, high resolution)."""
    started = time.perf_counter()
    await fn()
    return time.perf_counter() - started


async def interleaved(
    layers: dict[str, Callable[[], Awaitable[Any]]], samples: int, *, budget: float = 600
) -> dict[str, list[float]]:
    """Time each layer in turn, round after round, so load drifts hit every layer alike."""
    times: dict[str, list[float]] = {name: [] for name in layers}
    for _ in range(10):  # warm-up
        for fn in layers.values():
            await fn()
    deadline = time.monotonic() + budget
    for _ in range(samples):
        for name, fn in layers.items():
            times[name].append(await timed(fn))
        if time.monotonic() > deadline:
            break
    return times


def _clean(value: Any) -> Any:
    """NaN is not JSON: report it as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


@dataclass
class Figure:
    """One reported number: Hangar's value, its baseline from the same run, and their ratio.

    For latencies `ratio` is p50 / baseline p50 (1.0 = as fast as the baseline, higher is
    slower); for throughput it is value / baseline (higher is better). `ratio_meaning`
    says which.
    """

    name: str
    unit: str
    samples: int
    p50: float | None
    p95: float | None = None
    baseline: str = ""
    baseline_p50: float | None = None
    baseline_p95: float | None = None
    ratio: float | None = None
    ratio_meaning: str = "p50 / baseline p50 (lower is better)"
    target: str = ""
    limits: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def latency(
        cls,
        name: str,
        seconds: list[float],
        baseline_seconds: list[float] | None = None,
        **kw: Any,
    ) -> Figure:
        """A latency figure in ms from raw samples in seconds."""
        base = baseline_seconds or []
        value, base_value = ms(p50(seconds)), ms(p50(base)) if base else None
        ratio = round(value / base_value, 2) if base_value else None
        return cls(
            name=name,
            unit="ms",
            samples=len(seconds),
            p50=value,
            p95=ms(p95(seconds)),
            baseline_p50=base_value,
            baseline_p95=ms(p95(base)) if base else None,
            ratio=ratio,
            **kw,
        )

    def as_json(self) -> dict[str, Any]:
        """The figure as a JSON-ready dict."""
        out: dict[str, Any] = _clean(asdict(self))
        return out


@dataclass
class Skipped:
    """A figure that could not be measured, and why."""

    name: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        """The skip as a JSON-ready dict."""
        return {"name": self.name, "skipped": self.reason}
