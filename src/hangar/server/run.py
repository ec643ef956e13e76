"""Run the main port and any per-face ports in one process and one event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp

from hangar.server.app import build_app
from hangar.server.settings import Settings
from hangar.web.face import Face
from hangar.web.metrics import RequestMetrics


def _config(
    app: ASGIApp, host: str, port: int, *, lifespan: Literal["on", "off"]
) -> uvicorn.Config:
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


def face_servers(app: FastAPI, settings: Settings) -> list[uvicorn.Server]:
    """One server per `--face-port NAME=PORT` (any registered face), routing only: the main
    server's lifespan starts the shared platform."""
    faces: dict[str, Face] = app.state.faces
    unknown = set(settings.face_ports) - set(faces)
    if unknown:
        raise SystemExit(f"unknown face(s) in --face-port: {', '.join(sorted(unknown))}")
    return [
        uvicorn.Server(
            _config(face_port_app(app, faces[name].app, name), settings.host, port, lifespan="off")
        )
        for name, port in settings.face_ports.items()
    ]


def face_port_app(main: FastAPI, face_app: ASGIApp, name: str) -> ASGIApp:
    """A face's app as its own port serves it: traced (when tracing is on) and counted."""
    tracing = main.state.tracing
    if tracing is not None:
        from hangar.web.tracing import TracingMiddleware  # loaded only when tracing is on

        face_app = TracingMiddleware(face_app, tracing=tracing, face=name)
    return RequestMetrics(face_app, metrics=main.state.platform.metrics, face=name)


async def serve(settings: Settings, companions: Sequence[uvicorn.Server] = ()) -> None:
    """Serve until interrupted; `companions` (a local agent) start first and stop last."""
    app = build_app(settings)
    extra = face_servers(app, settings)
    main = uvicorn.Server(_config(app, settings.host, settings.port, lifespan="on"))

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

    async def close_streams_on_exit() -> None:
        # uvicorn waits for open responses before shutting down; long-lived event streams
        # would hold it for the whole graceful timeout, so end them as soon as it stops.
        while not main.should_exit:  # noqa: ASYNC110 - uvicorn exposes a plain flag
            await asyncio.sleep(0.1)
        app.state.platform.bus.close()

    async def companions_then_main() -> None:
        tasks = [asyncio.create_task(c.serve()) for c in companions]
        while not all(c.started for c in companions):
            if any(t.done() for t in tasks):
                await asyncio.gather(*tasks)  # surfaces why a companion could not start
                raise SystemExit("a companion server stopped during startup")
            await asyncio.sleep(0.05)
        try:
            await asyncio.gather(stop_extra_with_main(), extra_after_main())
        finally:
            for c in companions:
                c.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)

    closer = asyncio.create_task(close_streams_on_exit())
    try:
        await companions_then_main()
    finally:
        closer.cancel()
