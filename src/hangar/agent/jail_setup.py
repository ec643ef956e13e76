"""Wire the jail runtime to the template store for one agent."""

from __future__ import annotations

import asyncio
import builtins
import threading
from collections.abc import Callable
from pathlib import Path

from hangar.agent.runtimes.base import PathError
from hangar.agent.runtimes.jail import JailRuntime
from hangar.agent.service import TemplateMissing
from hangar.agent.settings import AgentSettings
from hangar.agent.templates import (
    TemplateError,
    TemplateNotFound,
    TemplateStore,
    default_cache_dir,
)
from hangar.agentproto.models import Template, TemplateBuild


async def _in_daemon_thread(fn: Callable[[str], Path], arg: str) -> Path:
    """Run a blocking build off the loop in a daemon thread.

    `asyncio.to_thread` threads are joined at exit, so Ctrl-C during a first-start
    debootstrap would wait minutes; a daemon thread dies with the process instead (the
    store's next build starts from a fresh staging directory).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Path] = loop.create_future()

    def work() -> None:
        try:
            result = fn(arg)
        except BaseException as exc:  # handed to the awaiting coroutine
            loop.call_soon_threadsafe(_settle, future, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    threading.Thread(target=work, name=f"template-build:{arg}", daemon=True).start()
    return await future


def _settle(future: asyncio.Future[Path], result: Path | None, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert result is not None
        future.set_result(result)


class StoreTemplates:
    """The agent's view of a TemplateStore: async builds, cached sizes, agent errors."""

    def __init__(self, store: TemplateStore) -> None:
        self.store = store
        self._sizes: dict[tuple[str, float], int] = {}
        self._build_lock = asyncio.Lock()

    async def ensure(self, name: str) -> Path:
        """The rootfs, building a base template (minutes, once) off the event loop."""
        try:
            async with self._build_lock:
                return await _in_daemon_thread(self.store.ensure, name)
        except TemplateNotFound as exc:
            raise TemplateMissing(f"no template named {name}") from exc
        except ValueError as exc:  # invalid name
            raise TemplateMissing(str(exc)) from exc
        except TemplateError as exc:
            raise PathError(str(exc)) from exc

    def building(self) -> builtins.list[TemplateBuild]:
        """Base templates being built here now (by this agent or a `hangar template build`)."""
        return [
            TemplateBuild(template=name, started_at=started, step=step)
            for name, started, step in self.store.building()
        ]

    def allows_nested_userns(self, name: str) -> bool:
        """The template's own opt-in (`hangar template import --nested-userns`)."""
        try:
            return self.store.info(name).nested_userns
        except (TemplateNotFound, ValueError):
            return False

    def snapshot_dest(self, name: str) -> Path:
        """Where the runtime writes a snapshot."""
        return self.store.snapshot_dest(name)

    def register_snapshot(self, name: str) -> None:
        """Record a written snapshot."""
        self.store.register_snapshot(name)

    def list(self) -> list[Template]:
        """Templates on this host, with sizes computed once per template version."""
        out = []
        for info in self.store.list():
            key = (info.name, info.created_at)
            if key not in self._sizes:
                self._sizes[key] = self.store.size_bytes(info.name)
            out.append(
                Template(
                    name=info.name,
                    type=info.type.value,
                    size_bytes=self._sizes[key],
                    created_at=info.created_at,
                )
            )
        return out

    def delete(self, name: str) -> None:
        """Remove a template; idempotent."""
        try:
            self.store.delete(name)
        except TemplateNotFound:
            return


def build_jail(settings: AgentSettings) -> tuple[JailRuntime, StoreTemplates]:
    """The jail runtime and its templates, under the agent's data directory."""
    store = TemplateStore(
        settings.data_dir / "templates",
        mirror=settings.debian_mirror,
        cache_dir=settings.template_cache or default_cache_dir(),
    )
    return JailRuntime(settings.data_dir / "sandboxes"), store_templates(store)


def store_templates(store: TemplateStore) -> StoreTemplates:
    """Wrap a store."""
    return StoreTemplates(store)
