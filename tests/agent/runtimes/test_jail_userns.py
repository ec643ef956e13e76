"""Id ranges, idmapped templates and the seccomp opt-in of the jail runtime."""

from __future__ import annotations

import os
from pathlib import Path

from hangar.agent.runtimes.jail import JailRuntime
from hangar.agent.runtimes.jail.sandbox import Record
from hangar.agent.runtimes.jail.userns import FIRST, SIZE, SlotAllocator, host_accounts_in

from .conftest import MakeSandbox


def _slot_of(runtime: JailRuntime, sandbox_id: str) -> int:
    slot = Record.load(runtime.layout(sandbox_id).state).uid_slot
    assert slot is not None
    return slot


async def test_each_sandbox_has_its_own_range_until_destroyed(
    runtime: JailRuntime, make_sandbox: MakeSandbox
) -> None:
    first, second = await make_sandbox(), await make_sandbox()
    a, b = _slot_of(runtime, first), _slot_of(runtime, second)
    assert a != b
    maps = [(await runtime.exec(s, ["cat", "/proc/self/uid_map"])).stdout for s in (first, second)]
    bases = {int(m.split()[1]) for m in maps}
    assert bases == {FIRST + a * SIZE, FIRST + b * SIZE}
    slot_dir = runtime.slots.slot(a).dir
    assert slot_dir.is_dir()
    assert slot_dir.stat().st_uid == FIRST + a * SIZE  # reachable by that range's root only
    assert slot_dir.stat().st_mode & 0o777 == 0o700
    await runtime.destroy(first)
    assert not slot_dir.exists()  # freed once nothing of the sandbox is left
    await runtime.destroy(second)


async def test_root_and_home_keep_in_sandbox_owners(
    runtime: JailRuntime, make_sandbox: MakeSandbox
) -> None:
    sid = await make_sandbox()
    owners = await runtime.exec(sid, ["stat", "-c", "%u:%g %n", "/", "/etc/passwd", "/home/user"])
    assert owners.stdout.decode().split("\n")[:3] == [
        "0:0 /",
        "0:0 /etc/passwd",
        "1000:1000 /home/user",
    ]
    await runtime.destroy(sid)


async def test_snapshot_carries_no_host_ids(
    runtime: JailRuntime, make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    sid = await make_sandbox()
    await runtime.exec(sid, ["sh", "-c", "echo saved > /home/user/kept; mkdir -p /home/user/d"])
    await runtime.snapshot(sid, tmp_path / "snap")
    snap = tmp_path / "snap"
    assert (snap / "home/user/kept").stat().st_uid == 1000
    assert (snap / "home/user/d").stat().st_gid == 1000
    assert snap.stat().st_uid == 0
    assert (snap / "etc/passwd").stat().st_uid == 0
    high = [p for p in snap.rglob("*") if p.lstat().st_uid >= SIZE or p.lstat().st_gid >= SIZE]
    assert high == []
    # A sandbox started from the snapshot owns (and may change) the files it saved.
    clone = await make_sandbox(rootfs=snap)
    res = await runtime.exec(clone, ["sh", "-c", "echo more >> /home/user/kept && cat ~/kept"])
    assert res.stdout == b"saved\nmore\n"
    await runtime.destroy(clone)
    await runtime.destroy(sid)


async def test_nested_user_namespaces_only_when_the_template_allows(
    runtime: JailRuntime, make_sandbox: MakeSandbox
) -> None:
    plain, allowed = await make_sandbox(), await make_sandbox(nested_userns=True)
    refused = await runtime.exec(plain, ["unshare", "--user", "true"])
    assert refused.exit_code != 0
    assert b"Operation not permitted" in refused.stderr
    ok = await runtime.exec(allowed, ["unshare", "--user", "--map-root-user", "id", "-u"])
    assert (ok.exit_code, ok.stdout) == (0, b"0\n")
    # Even allowed, the keyring stays closed.
    keys = await runtime.exec(allowed, ["python3", "-c", KEYCTL])
    assert keys.stdout == b"-1 1\n"
    await runtime.destroy(plain)
    await runtime.destroy(allowed)


KEYCTL = (
    "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    "print(libc.syscall(250, 0, -4, 0, 0, 0), ctypes.get_errno())\n"
)


async def test_recover_frees_ranges_a_crash_left_taken(tmp_path: Path) -> None:
    state_root = tmp_path / "state"
    state_root.mkdir()
    slots = SlotAllocator()
    orphan = slots.allocate(str(state_root / "never-started"))
    other_agent = slots.allocate(str(tmp_path / "elsewhere" / "sandbox"))
    try:
        await JailRuntime(state_root, slots=slots).recover()
        assert not orphan.dir.exists()
        assert other_agent.dir.exists()  # another agent's slot is left alone
    finally:
        slots.release(other_agent)


def test_ranges_never_hold_host_accounts() -> None:
    assert "user root" in host_accounts_in(0, 10)
    assert host_accounts_in(FIRST, FIRST + 4096 * SIZE - 1) == []
    assert os.stat("/").st_uid == 0
