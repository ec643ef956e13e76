"""A size-limited writable layer: ENOSPC inside the sandbox, usage, snapshots, cleanup."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hangar.agent.runtimes.base import StartFailed
from hangar.agent.runtimes.jail import JailRuntime

from .conftest import MakeSandbox


def loops_of(image: Path) -> str:
    return subprocess.run(
        ["losetup", "-j", str(image)], capture_output=True, text=True, check=True
    ).stdout


async def test_writes_past_disk_mb_fail_inside(
    runtime: JailRuntime, make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    sid = await make_sandbox(disk_mb=64)
    layout = runtime.layout(sid)
    assert loops_of(layout.image)  # a loop device backs the layer
    small = await runtime.exec(sid, ["sh", "-c", "head -c 8M /dev/urandom > ~/small"])
    assert small.exit_code == 0, small.stderr
    big = await runtime.exec(
        sid, ["dd", "if=/dev/zero", "of=/home/user/big", "bs=1M", "count=128"], timeout=60
    )
    assert big.exit_code != 0
    assert b"No space left on device" in big.stderr
    grow = await runtime.exec(sid, ["fallocate", "-l", "128M", "/home/user/more"])
    assert grow.exit_code != 0
    assert b"No space left" in grow.stderr
    usage = await runtime.usage(sid)
    assert 40 * 2**20 < usage.disk_bytes <= 64 * 2**20
    # freeing space makes writes work again: it is a real filesystem, not a counter
    freed = await runtime.exec(sid, ["sh", "-c", "rm ~/big && echo ok > ~/after"])
    assert freed.exit_code == 0, freed.stderr
    # snapshots copy the merged tree, files on the limited layer included
    dest = tmp_path / "snap"
    await runtime.snapshot(sid, dest)
    assert (dest / "home/user/small").stat().st_size == 8 * 2**20
    assert (dest / "home/user/after").read_text() == "ok\n"
    await runtime.destroy(sid)
    assert not layout.root.exists()
    assert str(layout.root) not in Path("/proc/mounts").read_text()
    assert (
        str(layout.image)
        not in subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True).stdout
    )


async def test_unlimited_sandbox_has_no_image(
    runtime: JailRuntime, make_sandbox: MakeSandbox
) -> None:
    sid = await make_sandbox()
    layout = runtime.layout(sid)
    assert not layout.image.exists()
    assert layout.upper == layout.root / "upper"
    await runtime.destroy(sid)


async def test_too_small_disk_is_refused(runtime: JailRuntime, make_sandbox: MakeSandbox) -> None:
    with pytest.raises(StartFailed):
        await make_sandbox(sandbox_id="t-tiny-disk", disk_mb=8)
    assert not runtime.layout("t-tiny-disk").root.exists()
