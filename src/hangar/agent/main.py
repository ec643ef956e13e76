"""Build and serve an agent: standalone (`hangar agent`) or beside the control plane."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from hangar.agent.api import build_agent_app
from hangar.agent.gpus import discover
from hangar.agent.hosttools import requirements
from hangar.agent.ptys import PtyRegistry
from hangar.agent.service import Agent
from hangar.agent.settings import AgentSettings


def build_agent(settings: AgentSettings) -> Agent:
    """An agent with the configured runtime and template store."""
    # Root-only: sandbox state, credentials and templates (which keep in-sandbox owners, and
    # uid 1000 is a host account too) are nobody else's business.
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if settings.data_dir.stat().st_mode & 0o077:
        settings.data_dir.chmod(0o700)
    ptys = PtyRegistry(
        idle_timeout=settings.pty_idle_timeout, replay_limit=settings.pty_replay_bytes
    )
    gpus = discover(settings.fake_gpus, settings.runtime)
    if settings.runtime == "fake":
        from hangar.agent.runtimes.fake import FakeRuntime
        from hangar.agent.templates_dir import DirTemplates

        runtime_fake = FakeRuntime(settings.data_dir / "fake-sandboxes")
        runtime_fake.root.mkdir(parents=True, exist_ok=True)
        return Agent(
            runtime_fake,
            DirTemplates(settings.data_dir / "templates"),
            settings.data_dir,
            ptys=ptys,
            metrics_interval=settings.metrics_interval,
            ipv6_prefix=settings.ipv6_prefix,
            gpus=gpus,
        )
    from hangar.agent.jail_setup import build_jail

    runtime, templates = build_jail(settings)
    return Agent(
        runtime,
        templates,
        settings.data_dir,
        ptys=ptys,
        metrics_interval=settings.metrics_interval,
        ipv6_prefix=settings.ipv6_prefix,
        gpus=gpus,
        requirements=requirements("jail"),
    )


def agent_server(
    settings: AgentSettings,
    agent: Agent,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> uvicorn.Server:
    """A uvicorn server for the agent's API whose lifespan starts and stops the agent.

    `on_stop` runs first when it stops: uvicorn re-raises the signal that stopped it once
    serving ends, so the lifespan is the last moment code is sure to run.
    """
    app: FastAPI = build_agent_app(
        agent, token=settings.token.get_secret_value() if settings.token else None
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await agent.start()
        try:
            yield
        finally:
            if on_stop is not None:
                await on_stop()
            await agent.stop()

    app.router.lifespan_context = lifespan
    listen = settings.listen or f"unix:{settings.socket_path()}"
    common = {
        "log_config": None,
        "access_log": False,
        "lifespan": "on",
        "ws_max_size": 16 * 1024 * 1024,
    }
    if listen.startswith("unix:"):
        path = Path(listen.removeprefix("unix:"))
        # The socket is the agent's whole authority; uvicorn makes it world-writable, so it
        # lives in a directory only this user may enter.
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        path.unlink(missing_ok=True)
        config = uvicorn.Config(app, uds=str(path), **common)  # type: ignore[arg-type]
    else:
        host, _, port = listen.rpartition(":")
        config = uvicorn.Config(app, host=host or "127.0.0.1", port=int(port), **common)  # type: ignore[arg-type]
    return uvicorn.Server(config)


async def serve_agent(settings: AgentSettings) -> None:
    """Run an agent until interrupted; its sandboxes keep running after it exits.

    With `settings.server` it also joins that control plane over its uplink; a control plane
    that refuses this host for good (EnrollError) stops the agent with that error.
    """
    agent = build_agent(settings)
    if not settings.server:
        await agent_server(settings, agent).serve()
        return
    from hangar.agent.uplink import Uplink

    link = Uplink(settings, build_agent_app(agent), agent.info)
    # Stopping (SIGTERM/SIGINT) closes the uplink as a shutdown: the host is offline at once.
    server = agent_server(settings, agent, on_stop=link.shutdown)
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn's plain flag
        await asyncio.sleep(0.05)  # (started: the lifespan has started the agent)
    if serving.done():
        await serving
        return
    uplink = asyncio.create_task(link.run())
    await asyncio.wait({serving, uplink}, return_when=asyncio.FIRST_COMPLETED)
    if uplink.done():
        server.should_exit = True
        await serving
        uplink.result()  # raises why the uplink stopped
        return
    uplink.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await uplink


def run(settings: AgentSettings) -> None:
    """Blocking entry point."""
    asyncio.run(serve_agent(settings))
