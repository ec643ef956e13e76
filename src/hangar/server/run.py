"""Run the main port and any per-face ports in one process and one event loop."""

from __future__ import annotations

import asyncio

import uvicorn
from fastapi import FastAPI

from hangar.server.app import build_app
from hangar.server.settings import Settings
from hangar.web.face import Face


def _config(app: FastAPI, host: str, port: int, *, lifespan: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan=lifespan,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        ws_ping_interval=20,
        timeout_graceful_shutdown=10,
    )


async def serve(settings: Settings) -> None:
    """Serve until interrupted."""
    app = build_app(settings)
    faces: dict[str, Face] = app.state.faces
    unknown = set(settings.face_ports) - set(faces)
    if unknown:
        raise SystemExit(f"unknown face(s) in --face-port: {', '.join(sorted(unknown))}")
    main = uvicorn.Server(_config(app, settings.host, settings.port, lifespan="on"))
    extra = [
        # The main server's lifespan starts the shared platform; face ports only route.
        uvicorn.Server(_config(faces[name].app, settings.host, port, lifespan="off"))
        for name, port in settings.face_ports.items()
    ]

    async def extra_after_main() -> None:
        while not main.started:
            if main.should_exit:
                return
            await asyncio.sleep(0.05)
        await asyncio.gather(*(s.serve() for s in extra))

    async def stop_extra_with_main() -> None:
        try:
            await main.serve()
        finally:
            for s in extra:
                s.should_exit = True

    await asyncio.gather(stop_extra_with_main(), extra_after_main())
