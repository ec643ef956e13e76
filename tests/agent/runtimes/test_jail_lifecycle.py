"""Sandbox lifecycle on the real jail runtime: pause, snapshot, destroy, recover, failures."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hangar.agent.runtimes.base import (
    InvalidState,
    ProcessEvent,
    SandboxNotFound,
    SandboxSpec,
    SandboxState,
    StartFailed,
)
from hangar.agent.runtimes.jail import JailRuntime, fs

from .conftest import MakeSandbox

COUNTER = (
    "import time\ni = 0\nwhile True:\n    print(i, flush=True)\n    i += 1\n    time.sleep(0.02)\n"
)


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def collect(events: AsyncIterator[ProcessEvent], into: asyncio.Queue[int]) -> None:
    """Move counter values from a process's output into a queue."""
    async for event in events:
        for value in event.data.split():
            await into.put(int(value))


async def drain(values: asyncio.Queue[int], quiet: float) -> list[int]:
    """Counter values that arrive until `quiet` seconds pass without one."""
    got: list[int] = []
    while True:
        try:
            got.append(await asyncio.wait_for(values.get(), quiet))
        except TimeoutError:
            return got


def mounted(path: Path) -> bool:
    return any(str(path) in line for line in Path("/proc/mounts").read_text().splitlines())


async def test_pause_freezes_and_resume_continues(
    runtime: JailRuntime, make_sandbox: MakeSandbox
) -> None:
    sid = await make_sandbox()
    proc = await runtime.spawn(sid, ["python3", "-u", "-c", COUNTER])
    values: asyncio.Queue[int] = asyncio.Queue()
    reader = asyncio.create_task(collect(proc.events(), values))
    assert await asyncio.wait_for(values.get(), 10) == 0
    await runtime.pause(sid)
    await runtime.pause(sid)  # idempotent
    assert (await runtime.inspect(sid)).state is SandboxState.PAUSED
    before = await drain(values, 0.3)  # whatever was in flight when it froze
    assert await drain(values, 0.5) == []  # frozen: the counter does not advance
    with pytest.raises(InvalidState):
        await runtime.exec(sid, ["true"])
    with pytest.raises(InvalidState):
        await runtime.write_file(sid, "/tmp/x", chunks_of(b"x"), max_bytes=10)
    with pytest.raises(InvalidState):
        await runtime.open_pty(sid, ["sh"])
    await runtime.resume(sid)
    assert (await runtime.inspect(sid)).state is SandboxState.RUNNING
    after = await asyncio.wait_for(values.get(), 10)
    assert after == (before[-1] + 1 if before else 1)  # same process, picked up where it was
    ps = await runtime.exec(sid, ["ps", "-o", "pid=", "-p", str(proc.pid)])
    assert ps.stdout.strip() == str(proc.pid).encode()
    await proc.kill()
    await asyncio.wait_for(reader, 10)
    await runtime.destroy(sid)


async def test_snapshot_makes_a_usable_rootfs(
    runtime: JailRuntime, make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    sid = await make_sandbox()
    await runtime.write_file(sid, "/home/user/keep.txt", chunks_of(b"kept"), max_bytes=100)
    await runtime.remove(sid, "/home/user/.bashrc")  # deletions (whiteouts) carry over too
    before = (await runtime.usage(sid)).disk_bytes
    assert before > 0
    size = await runtime.snapshot(sid, tmp_path / "snap")
    assert size > 10 * 1024 * 1024
    assert (await runtime.inspect(sid)).state is SandboxState.RUNNING  # thawed again
    clone = await make_sandbox(rootfs=tmp_path / "snap")
    assert (await runtime.exec(clone, ["cat", "/home/user/keep.txt"])).stdout == b"kept"
    assert (await runtime.exec(clone, ["id", "-u"])).stdout == b"1000\n"
    assert (await runtime.exec(clone, ["test", "-e", "/home/user/.bashrc"])).exit_code == 1
    await runtime.destroy(clone)
    await runtime.destroy(sid)


async def test_destroy_cleans_everything(runtime: JailRuntime, make_sandbox: MakeSandbox) -> None:
    sid = await make_sandbox()
    info = await runtime.inspect(sid)
    layout, cgroups = runtime.layout(sid), runtime.cgroup_paths(sid)
    assert info.init_pid
    assert layout.root.is_dir()
    assert mounted(layout.merged)
    assert all(p.is_dir() for p in cgroups)
    await runtime.pause(sid)  # destroying a frozen sandbox must work too
    await runtime.destroy(sid)
    assert not layout.root.exists()
    assert not mounted(layout.root)
    assert not any(p.exists() for p in cgroups)
    assert fs.process_start_time(info.init_pid) is None  # gone (at most a zombie being reaped)
    await runtime.destroy(sid)  # idempotent
    with pytest.raises(SandboxNotFound):
        await runtime.inspect(sid)
    with pytest.raises(SandboxNotFound):
        await runtime.exec(sid, ["true"])


async def test_recover_after_agent_restart(
    runtime: JailRuntime, make_sandbox: MakeSandbox, minimal_rootfs: Path
) -> None:
    # A separate "agent" process creates a sandbox and exits: the sandbox must outlive it.
    script = textwrap.dedent(f"""
        import asyncio
        from pathlib import Path
        from hangar.agent.runtimes.base import SandboxSpec
        from hangar.agent.runtimes.jail import JailRuntime, fs
        rt = JailRuntime(Path({str(runtime.state_root)!r}))
        spec = SandboxSpec("orphan", Path({str(minimal_rootfs)!r}), vcpus=1, memory_mb=128)
        asyncio.run(rt.create(spec))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    live = await make_sandbox()
    dead = await make_sandbox()
    dead_pid = (await runtime.inspect(dead)).init_pid
    assert dead_pid
    os.kill(dead_pid, signal.SIGKILL)
    await asyncio.sleep(0.2)

    restarted = JailRuntime(runtime.state_root)
    found = {info.sandbox_id: info.state for info in await restarted.recover()}
    assert found == {"orphan": SandboxState.RUNNING, live: SandboxState.RUNNING}
    assert (await restarted.exec("orphan", ["echo", "still here"])).stdout == b"still here\n"
    assert (await restarted.exec(live, ["id", "-u"])).stdout == b"1000\n"
    assert not runtime.layout(dead).root.exists()  # the dead one was cleaned up
    for sid in ("orphan", live):
        await restarted.destroy(sid)


async def test_failed_start_cleans_up(
    runtime: JailRuntime, tmp_path: Path, minimal_rootfs: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StartFailed, match="python3"):
        await runtime.create(SandboxSpec("bad-1", empty, vcpus=1, memory_mb=128))
    # Passes validation but cannot run the supervisor: bwrap starts, the supervisor does not.
    broken = tmp_path / "broken"
    (broken / "usr/bin").mkdir(parents=True)
    (broken / "usr/bin/python3").symlink_to("/nowhere")
    with pytest.raises(StartFailed) as failure:
        await runtime.create(SandboxSpec("bad-2", broken, vcpus=1, memory_mb=128))
    assert "bad-2" in str(failure.value)
    for sid in ("bad-1", "bad-2"):
        assert not runtime.layout(sid).root.exists()
        assert not runtime.cgroups.exists(sid)
        with pytest.raises(SandboxNotFound):
            await runtime.inspect(sid)
    with pytest.raises(StartFailed, match="egress"):
        await runtime.create(SandboxSpec("bad-3", minimal_rootfs, 1, 128, egress=True))
    with pytest.raises(StartFailed, match="invalid sandbox id"):
        await runtime.create(SandboxSpec("../x", minimal_rootfs, 1, 128))
