"""Fixtures for the jail runtime: the cached `minimal` template and a runtime per module.

The template is built once with debootstrap (about a minute) into HANGAR_TEMPLATE_CACHE
(default ~/.cache/hangar/templates) and reused by later runs.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from hangar.agent.runtimes.base import SandboxSpec
from hangar.agent.runtimes.jail import JailRuntime, fs
from hangar.agent.templates import TemplateStore, default_cache_dir
from support.jail_agent import jail_unavailable


@pytest.fixture(scope="session")
def minimal_rootfs() -> Path:
    """The `minimal` Debian rootfs, built on first use and cached across runs."""
    reason = jail_unavailable()
    if reason:
        pytest.skip(reason)
    store = TemplateStore(default_cache_dir())
    if not (store.root / "minimal" / "meta.json").exists() and not shutil.which("debootstrap"):
        pytest.skip("debootstrap is not installed and no cached minimal template exists")
    return store.ensure("minimal")


async def reap_stale(base: Path) -> None:
    """Destroy sandboxes left by earlier test sessions that were killed before teardown.

    Sandboxes outlive the process that made them (by design), so a killed pytest leaks them.
    Each runtime fixture records its pytest's pid; sandboxes of dead sessions are destroyed.
    """
    for line in Path("/proc/mounts").read_text().splitlines():
        merged = Path(line.split()[1])
        state_root = merged.parent.parent
        owner = state_root.parent / "owner.pid"
        if merged.name != "merged" or not merged.is_relative_to(base) or not owner.exists():
            continue
        if fs.process_start_time(int(owner.read_text())) is None:
            await JailRuntime(state_root).destroy(merged.parent.name)


@pytest_asyncio.fixture(scope="module")
async def runtime(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[JailRuntime]:
    """A jail runtime with a fresh state root; destroys whatever the module left behind."""
    reason = jail_unavailable()
    if reason:
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("jail")
    await reap_stale(home.parent.parent)
    (home / "owner.pid").write_text(str(os.getpid()))
    rt = JailRuntime(home / "state")
    yield rt
    for path in rt.state_root.iterdir():
        await rt.destroy(path.name)


MakeSandbox = Callable[..., Coroutine[Any, Any, str]]


@pytest_asyncio.fixture(scope="module")
async def make_sandbox(runtime: JailRuntime, minimal_rootfs: Path) -> MakeSandbox:
    """Create a sandbox from the minimal template; returns its id."""

    async def make(**overrides: Any) -> str:
        spec: dict[str, Any] = {
            "sandbox_id": f"t-{uuid.uuid4().hex[:10]}",
            "rootfs": minimal_rootfs,
            "vcpus": 1,
            "memory_mb": 256,
            **overrides,
        }
        await runtime.create(SandboxSpec(**spec))
        return str(spec["sandbox_id"])

    return make


@pytest_asyncio.fixture(scope="module")
async def sandbox(make_sandbox: MakeSandbox) -> str:
    """One shared sandbox for tests that leave it as they found it."""
    return await make_sandbox(hostname="box-1", env={"GREETING": "hi"})
