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


def mount_overlay(lower: Path, upper: Path, work: Path, merged: Path) -> None:
    """Mount an overlay with `lower` read-only and writes going to `upper`."""
    for path in (lower, upper, work):
        if any(c in str(path) for c in ",:\\"):  # would be misparsed as overlay options
            raise MountError(errno.EINVAL, f"unsupported character in overlay path {path}")
    options = f"lowerdir={lower},upperdir={upper},workdir={work}".encode()
    flags = MS_NOSUID | MS_NODEV  # setuid bits and device nodes never work in sandboxes
    if _libc.mount(b"overlay", os.fsencode(merged), b"overlay", flags, options) != 0:
        err = ctypes.get_errno()
        raise MountError(err, f"mount overlay on {merged}: {os.strerror(err)}")


def unmount(path: Path) -> None:
    """Unmount `path` if it is a mount point, lazily if it is still busy."""
    if not os.path.ismount(path):
        return
    if _libc.umount2(os.fsencode(path), 0) == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EBUSY and _libc.umount2(os.fsencode(path), MNT_DETACH) == 0:
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
