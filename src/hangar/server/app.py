"""Build the ASGI apps: the main one (every face under its prefix) and per-face ones."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hangar.agentproto.client import AgentClient
from hangar.core.capsules.reconciler import CapsuleReconciler
from hangar.core.fleet.gateway import AgentHandle
from hangar.core.platform import Platform
from hangar.faces import wrenn
from hangar.server.settings import Settings
from hangar.web.correlation import CorrelationMiddleware
from hangar.web.face import Face, mount_face
from hangar.web.health import router as health_router

FACE_NAMES = (wrenn.NAME,)


def build_faces(platform: Platform, settings: Settings) -> dict[str, Face]:
    """Every face, built on one platform."""
    faces = [wrenn.create_face(platform, settings.wrenn)]
    return {f.name: f for f in faces}


def build_app(settings: Settings, platform: Platform | None = None) -> FastAPI:
    """The main app: health probes at the root, each face under `/<face>`."""
    platform = platform or Platform(settings)
    faces = build_faces(platform, settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await platform.start()
        for host_id, address in settings.agents.items():
            platform.fleet.add(
                AgentHandle(
                    host_id,
                    AgentClient(address, token=settings.agent_token),
                    host_ip="127.0.0.1" if address.startswith("unix:") else "",
                )
            )
        reconciler = CapsuleReconciler(platform.db, platform.fleet, settings.capsules)
        task = asyncio.create_task(reconciler.run_forever(), name="capsules:reconciler")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await platform.stop()

    app = FastAPI(title="Hangar", version="0.1.0", lifespan=lifespan, docs_url=None)
    app.state.platform = platform
    app.state.faces = faces
    app.add_middleware(CorrelationMiddleware)
    app.include_router(health_router)
    for face in faces.values():
        mount_face(app, face)
    return app
