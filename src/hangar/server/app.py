"""Build the ASGI apps: the main one (every face under its prefix) and per-face ones."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from hangar.core.apikeys.cache import forget_deleted
from hangar.core.capsules.reconciler import CapsuleReconciler
from hangar.core.channels.delivery import DeliveryWorker
from hangar.core.channels.service import enqueue_deliveries
from hangar.core.db.uow import checkpoint
from hangar.core.events.envelope import Event
from hangar.core.events.nats import NatsEvents
from hangar.core.events.relay import Relay
from hangar.core.fleet.relay import watch as watch_relays
from hangar.core.fleet.static import connect_static_agents
from hangar.core.hosts import presence
from hangar.core.hosts.reconciler import HeartbeatReconciler
from hangar.core.idempotency.service import IdempotencyService
from hangar.core.platform import Platform
from hangar.server.faces import FACES
from hangar.server.settings import Settings
from hangar.web.agent_relay import router as agent_relay_router
from hangar.web.agent_uplink import router as agent_uplink_router
from hangar.web.correlation import CorrelationMiddleware
from hangar.web.events import router as events_router
from hangar.web.face import Face, mount_face
from hangar.web.health import router as health_router
from hangar.web.metrics import RequestMetrics
from hangar.web.metrics import router as metrics_router
from hangar.web.registry import FaceSpec, build_face, settings_section

if TYPE_CHECKING:
    from hangar.web.tracing import Tracing

FACE_NAMES = tuple(spec.name for spec in FACES)


async def start_events(platform: Platform, settings: Settings) -> tuple[NatsEvents | None, Relay]:
    """The outbox relay and its sinks: NATS when configured (feeding every replica's bus)."""
    if settings.nats_url:
        nats_events = NatsEvents(
            settings.nats_url,
            stream=settings.nats_stream,
            subject_prefix=settings.nats_subject_prefix,
        )
        await nats_events.connect()
        await nats_events.feed(platform.bus)
        return nats_events, Relay(
            platform.db, [nats_events.publish], transactional=[enqueue_deliveries]
        )

    async def to_bus(events: list[Event]) -> None:
        for event in events:
            platform.bus.publish(event)

    return None, Relay(platform.db, [to_bus], transactional=[enqueue_deliveries])


def build_faces(
    platform: Platform, settings: Settings, specs: Sequence[FaceSpec] = FACES
) -> dict[str, Face]:
    """Every registered face, built on one platform."""
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"two faces share a name: {names}")
    return {
        spec.name: build_face(spec, platform, settings_section(spec, settings)) for spec in specs
    }


def start_tracing(settings: Settings, platform: Platform) -> Tracing | None:
    """The OpenTelemetry pipeline when an OTLP endpoint is configured, else None (no cost)."""
    if not settings.otel.enabled():
        return None
    # Imported here so a process without an endpoint never loads OpenTelemetry.
    from hangar.web.tracing import Tracing

    tracing = Tracing(settings.otel.endpoint, settings.otel.service_name)
    platform.fleet.tracer = tracing.agent_call
    return tracing


def build_app(
    settings: Settings, platform: Platform | None = None, faces: Sequence[FaceSpec] = FACES
) -> FastAPI:
    """The main app: health probes at the root, each registered face under `/<face>`."""
    platform = platform or Platform(settings)
    built = build_faces(platform, settings, faces)
    platform.fleet.enable_relays(settings.internal_base_url(), platform.signer)
    tracing = start_tracing(settings, platform)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await platform.start()
        async with platform.db.session() as session:
            # Uplinks recorded by an earlier run at this URL ended with it.
            await presence.release_all(session, settings.internal_base_url())
            await checkpoint(session)
        # Configured agents are regular hosts (rows with stable uuid5 ids, see fleet/static.py).
        await connect_static_agents(
            platform.db,
            platform.fleet,
            settings.agents,
            settings.agent_token,
            settings.hosts.region,
        )
        reconciler = CapsuleReconciler(
            platform.db, platform.fleet, settings.capsules, settings.hosts
        )
        nats_events, relay = await start_events(platform, settings)
        tasks = [
            asyncio.create_task(reconciler.run_forever(), name="capsules:reconciler"),
            asyncio.create_task(
                watch_relays(platform.db, platform.fleet, settings.hosts.reconcile_seconds),
                name="fleet:relays",
            ),
            asyncio.create_task(relay.run_forever(), name="events:relay"),
            asyncio.create_task(
                IdempotencyService(platform.db, settings.idempotency).purge_forever(),
                name="idempotency:purge",
            ),
            asyncio.create_task(
                forget_deleted(platform.bus, platform.api_key_principals),
                name="apikeys:cache",
            ),
            asyncio.create_task(
                HeartbeatReconciler(platform.db, settings.hosts).run_forever(),
                name="hosts:heartbeats",
            ),
            asyncio.create_task(
                DeliveryWorker(
                    platform.db,
                    platform.sealer,
                    platform.channel_providers,
                    platform.http,
                    settings.channels,
                ).run_forever(),
                name="channels:delivery",
            ),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if nats_events is not None:
                await nats_events.close()
            await platform.stop()
            if tracing is not None:
                tracing.shutdown()

    app = FastAPI(title="Hangar", version="0.1.0", lifespan=lifespan, docs_url=None)
    app.state.platform = platform
    app.state.faces = built
    app.state.tracing = tracing
    app.add_middleware(CorrelationMiddleware)
    if tracing is not None:  # inside the metrics, around the correlation id's binding
        from hangar.web.tracing import TracingMiddleware

        app.add_middleware(TracingMiddleware, tracing=tracing, faces=tuple(built))
    app.add_middleware(RequestMetrics, metrics=platform.metrics, faces=tuple(built))
    app.include_router(health_router)
    app.include_router(metrics_router)
    app.include_router(events_router)
    app.include_router(agent_uplink_router)
    app.include_router(agent_relay_router)
    for face in built.values():
        mount_face(app, face)
    return app
