"""Prometheus metrics of one platform: one registry each, so servers sharing a process (tests,
a replica beside its agent) never count into each other's series."""

from __future__ import annotations

import time

import anyio
import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from hangar.core.capsules.models import CapsuleStatus
from hangar.core.capsules.repository import CapsuleRepository
from hangar.core.channels.repository import DeliveryRepository
from hangar.core.clock import utcnow
from hangar.core.db import Database
from hangar.core.events.outbox import oldest_pending
from hangar.core.hosts.models import HostStatus
from hangar.core.hosts.repository import HostRepository

log = structlog.get_logger("hangar.metrics")
REFRESH_TIMEOUT = 2.0  # seconds; a scrape must answer even when the database is slow
# Agent calls run from milliseconds (info) to minutes (a create pulling a template).
AGENT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


class Metrics:
    """The platform's series; request and agent-call ones are fed as they happen, the
    database-backed gauges are read at scrape time by `refresh`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            "hangar_http_requests",
            "HTTP requests answered, by face, route template, method and status.",
            ["face", "route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "hangar_http_request_duration_seconds",
            "Time to answer an HTTP request (body included), by face, route and method.",
            ["face", "route", "method"],
            registry=r,
        )
        self.agent_call_seconds = Histogram(
            "hangar_agent_call_duration_seconds",
            "Calls from this control plane to host agents, by operation and outcome.",
            ["operation", "outcome"],
            buckets=AGENT_BUCKETS,
            registry=r,
        )
        self.capsules = Gauge(
            "hangar_capsules",
            "Capsules by state (every replica's, from the database).",
            ["state"],
            registry=r,
        )
        self.hosts = Gauge("hangar_hosts", "Hosts by state.", ["state"], registry=r)
        self.outbox_lag = Gauge(
            "hangar_outbox_lag_seconds",
            "Age of the oldest event the outbox relay has not published yet (0: caught up).",
            registry=r,
        )
        self.delivery_failures = Gauge(
            "hangar_channel_delivery_failures",
            "Channel deliveries that failed: `retrying` (pending again) or `failed` (gave up).",
            ["provider", "state"],
            registry=r,
        )
        self.refresh_failures = Counter(
            "hangar_metrics_refresh_failures",
            "Scrapes that could not read the database-backed gauges (they kept their values).",
            registry=r,
        )

    def observe_request(
        self, face: str, route: str, method: str, status: int, seconds: float
    ) -> None:
        """Count one answered request."""
        self.requests.labels(face, route, method, str(status)).inc()
        self.request_seconds.labels(face, route, method).observe(seconds)

    def observe_agent_call(self, operation: str, outcome: str, seconds: float) -> None:
        """Time one call to an agent (the agent client's observer hook)."""
        self.agent_call_seconds.labels(operation, outcome).observe(seconds)

    async def refresh(self, db: Database) -> None:
        """Read the database-backed gauges; on failure they keep their last values."""
        started = time.perf_counter()
        try:
            with anyio.fail_after(REFRESH_TIMEOUT):
                async with db.session() as session:
                    capsules = await CapsuleRepository(session).count_by_status()
                    hosts = await HostRepository(session).count_by_status()
                    oldest = await oldest_pending(session)
                    failures = await DeliveryRepository(session).failures()
        except Exception:
            self.refresh_failures.inc()
            log.warning("metrics.refresh_failed", exc_info=True)
            return
        # Every known state is set (0 included), so a series never vanishes when it empties.
        for state in {*CapsuleStatus, *capsules}:
            self.capsules.labels(str(state)).set(capsules.get(state, 0))
        for state in {*HostStatus, *hosts}:
            self.hosts.labels(str(state)).set(hosts.get(state, 0))
        lag = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        self.outbox_lag.set(max(lag, 0.0))
        # Providers come and go with channels: start afresh (no await between, so no scrape
        # sees the gauge half rebuilt).
        self.delivery_failures.clear()
        for (provider, state), count in failures.items():
            self.delivery_failures.labels(provider, state).set(count)
        log.debug("metrics.refreshed", duration_ms=round((time.perf_counter() - started) * 1000))
