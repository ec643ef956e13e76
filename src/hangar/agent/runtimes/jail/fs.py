"""Host-side filesystem plumbing: the copy-on-write overlay, sizes and tree copies."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import subprocess
from pathlib import Path

MS_NOSUID = 0x2
MS_NODEV = 0x4
MNT_DETACH = 0x2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class MountError(OSError):
    """A mount or unmount failed."""


MS_BIND = 0x1000


def _mount(
    source: bytes, target: Path, fstype: bytes | None, flags: int, data: bytes | None
) -> None:
    if _libc.mount(source, os.fsencode(target), fstype, flags, data) != 0:
        err = ctypes.get_errno()
        raise MountError(
            err, f"mount {source.decode(errors='replace')} on {target}: {os.strerror(err)}"
        )


def mount_overlay_at(base: Path, *, lower: Path, upper: Path, work: Path, merged: Path) -> None:
    """Mount an overlay whose options name its layers relative to `base`.

    The kernel shows the options as given in every `mountinfo`, the sandbox's own included,
    so relative names keep the host's directory layout out of it. `mount` runs in a child
    with `base` as its working directory: a chdir in this threaded process would race.
    """
    layers = {"lowerdir": lower, "upperdir": upper, "workdir": work}
    options = []
    for key, path in layers.items():
        rel = os.path.relpath(path, base)
        if any(c in rel for c in ",:\\") or rel.startswith(".."):
            raise MountError(errno.EINVAL, f"unsupported overlay layer path {path}")
        options.append(f"{key}={rel}")
    proc = subprocess.run(  # noqa: S603 - argv list, no shell
        ["mount", "-t", "overlay", "overlay", "-o", ",".join([*options, "nosuid", "nodev"]),  # noqa: S607
         str(merged)],
        cwd=base,
        capture_output=True,
        check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip()
        raise MountError(errno.EIO, f"mount overlay on {merged}: {detail}")


def mount_tmpfs(target: Path, *, size: int, mode: int, owner: int) -> None:
    """A small tmpfs owned by host uid/gid `owner`."""
    data = f"size={size},mode={mode:o},uid={owner},gid={owner}".encode()
    _mount(b"tmpfs", target, b"tmpfs", MS_NOSUID | MS_NODEV, data)


def bind(source: Path, target: Path) -> None:
    """Bind-mount `source` on `target` (not recursively)."""
    _mount(os.fsencode(source), target, None, MS_BIND, None)


def is_mounted(path: Path) -> bool:
    """Whether `path` is a mount point, from mountinfo.

    `os.path.ismount` compares devices, so it misses a bind of a directory of the same
    filesystem (an idmapped template bind is one): trusting it could let a cleanup recurse
    into a live mount.
    """
    target = os.path.abspath(path)
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            point = line.split(b" ", 5)[4]
            if _unescape(point) == target:
                return True
    return False


def _unescape(field: bytes) -> str:
    r"""Undo mountinfo's octal escapes (`\040` for a space and the like)."""
    if b"\\" not in field:
        return os.fsdecode(field)
    out, i = bytearray(), 0
    while i < len(field):
        if field[i : i + 1] == b"\\" and field[i + 1 : i + 4].isdigit():
            out.append(int(field[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return os.fsdecode(bytes(out))


def unmount(path: Path) -> None:
    """Unmount `path` if it is a mount point, lazily if it is still busy."""
    while is_mounted(path):  # stacked mounts come off one by one
        if _libc.umount2(os.fsencode(path), 0) == 0:
            continue
        err = ctypes.get_errno()
        if err == errno.EBUSY and _libc.umount2(os.fsencode(path), MNT_DETACH) == 0:
            continue
        if err == errno.EINVAL:  # raced with another unmount
            return
        raise MountError(err, f"umount {path}: {os.strerror(err)}")


def allocated_bytes(root: Path) -> int:
    """Bytes allocated on disk under `root` (hard links counted once, symlinks not followed)."""
    total, seen = 0, set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue  # deleted while we walk: the sandbox is alive
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total + os.lstat(root).st_blocks * 512


def copy_tree(source: Path, dest: Path) -> None:
    """Copy a root filesystem keeping owners, modes, links, xattrs and hard links."""
    if dest.exists():
        raise FileExistsError(errno.EEXIST, f"{dest} already exists")
    tmp = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        # cp -a is the one tool that preserves everything a rootfs needs; argv, no shell.
        proc = subprocess.run(  # noqa: S603
            ["cp", "-a", "--reflink=auto", "--", str(source), str(tmp)],  # noqa: S607
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise OSError(f"copying {source} failed: {proc.stderr.decode(errors='replace')}")
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def process_start_time(pid: int) -> int | None:
    """The start time (clock ticks since boot) of a live process, to tell pid reuse apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie is dead for our purposes
        return None
    return int(fields[19])
