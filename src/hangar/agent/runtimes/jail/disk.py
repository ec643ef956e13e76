"""A size-limited writable layer: a sparse ext4 image, loop-mounted in the host namespace.

The overlay's upper and work directories live on it, so writes past its size fail with
ENOSPC inside the sandbox. It is mounted with `-o loop`, which sets autoclear: the loop
device detaches itself once the last mount (the overlay's reference included) is gone.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hangar.agent.runtimes.jail import fs

MIN_MB = 64
MAX_MB = 16 * 1024 * 1024  # 16 TiB: ext4 with 4 KiB blocks handles far more; this is a sanity bound


def _run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, check=False)  # noqa: S603 - argv list
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip() or f"exit {proc.returncode}"
        raise OSError(f"{argv[0]}: {detail}")
    return proc.stdout.decode(errors="replace")


def create(image: Path, mountpoint: Path, size_mb: int) -> None:
    """Make a sparse ext4 image of `size_mb` MiB and mount it on `mountpoint`."""
    if not MIN_MB <= size_mb <= MAX_MB:
        raise ValueError(f"disk_mb must be in {MIN_MB}..{MAX_MB}")
    fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, size_mb * 1024 * 1024)  # sparse: costs nothing until written
    finally:
        os.close(fd)
    # No reserved blocks (the sandbox user gets the whole size); lazy init and no discard
    # keep mkfs fast and the image sparse even for large sizes.
    options = "lazy_itable_init=1,lazy_journal_init=1,nodiscard"
    _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E", options, str(image)])
    mountpoint.mkdir(exist_ok=True)
    _run(
        [
            "mount",
            "-t",
            "ext4",
            "-o",
            "loop,nosuid,nodev,noinit_itable",
            str(image),
            str(mountpoint),
        ]
    )


def remove(image: Path, mountpoint: Path) -> None:
    """Unmount the layer and detach any loop device still backed by the image."""
    fs.unmount(mountpoint)
    if not image.exists():
        return
    for line in _run(["losetup", "-j", str(image)]).splitlines():
        device = line.split(":", 1)[0]
        if device.startswith("/dev/loop"):
            try:
                _run(["losetup", "-d", device])
            except OSError:
                # autoclear may have beaten us to it; anything else still holding it is real
                if str(image) in _run(["losetup", "-j", str(image)]):
                    raise
